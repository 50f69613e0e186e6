"""``seit tokenadapt train``: learn a TokenAdapt pair so that transforms in its converted space mean what
the same transforms of the image mean to the tokenizer.

SeiT++ ships a trained ``tokenadapt.ckpt`` but no code that trains it. The objective here, per step, for
images x, their codes c(x) (the frozen tokenizer) and one random transform T per image (flip, rotation,
translation, shear, resized crop: :class:`GeometryConfig`, SeiT++'s distribution by default):

    loss = CE(reverse(T(convert(c(x)))), centre(c(T x)))
         + recon_weight * CE(reverse(centre(convert(c(x)))), centre(c(x)))

- **Transformed term.** This is exactly how pre-training uses the pair (convert, transform, invert), so the
  pair is trained for what it is used for: the codes it returns should be the codes the tokenizer gives the
  transformed image. T is one affine map in normalised coordinates, applied by ``grid_sample`` to the
  converted map and to the image (:mod:`seit.augment.tokenadapt`); the tokenizer only takes whole images,
  so the image transform is T extended to the whole g x g grid, and the target is the centred m x m
  tokens of its codes (:func:`~seit.augment.tokenadapt.crop_window`), which the crop output covers exactly.
- **Reconstruction term.** Without a transform the pair must give the input codes back. Half of SeiT++'s
  samples see no affine operation and the crop keeps most of the map, so the transformed term alone
  already asks for much of this; the explicit term anchors the converted space to hold every code (a pair
  that learned only "typical codes of transformed images" would blur what pre-training sees untransformed)
  and gives the identity path its own figure (``recon_agree``).

Cross-entropy over the codebook, not a regression on code vectors: the reverse map outputs codebook
logits and pre-training reads its argmax, so the agreement of ids is what matters. Targets come from the
frozen tokenizer on the fly (two encodes per step), so nothing is precomputed and any image folder works.
Outputs in ``--output``: ``checkpoint.pt`` (resumable, also on SIGINT/SIGTERM/SIGUSR1), ``metrics.jsonl``,
``tb/``, and at the end ``tokenadapt.safetensors`` (:func:`seit.tokenadapt.load_tokenadapt`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from seit import runtime
from seit.augment.tokenadapt import crop_window, sample_geometry, warp
from seit.config import from_dict, to_dict
from seit.images import ImageDataset, list_images
from seit.models.tokenadapt import TokenAdapt, TokenAdaptConfig
from seit.runtime.metrics import MetricsLogger
from seit.store import StepBatchSampler
from seit.tokenadapt.checkpoint import TRAIN_FORMAT, save_tokenadapt
from seit.tokenadapt.config import TokenAdaptTrainConfig
from seit.tokenizer.checkpoint import load_tokenizer
from seit.tokenizer.encode import cpu_threads, default_workers
from seit.tokenizer.model import Tokenizer
from seit.tokenizer.train import TrainError, _SkipUnreadable, _stack_good, lr_at
from seit.utils import dist as seit_dist
from seit.utils.serialization import atomic_torch_save, safe_torch_load

log = logging.getLogger(__name__)


@dataclass
class TokenAdaptResult:
    step: int
    finished: bool  # False when a signal stopped the run (checkpoint saved; rerun with --resume auto)
    path: Path | None  # OUT/tokenadapt.safetensors when finished
    last: dict[str, float]
    checkpoint: Path


def default_crop(grid: int) -> int:
    """SeiT++'s crop grid relative to its token grid: 28 of 32."""
    return max(1, round(grid * 7 / 8))


def pair_config(cfg: TokenAdaptTrainConfig, tokenizer: Tokenizer) -> TokenAdaptConfig:
    """The pair's sizes: grid and codebook from the tokenizer, widths from the flags."""
    grid = tokenizer.grid_shape[0]
    crop = cfg.crop or default_crop(grid)
    if crop > grid:
        raise TrainError(f"--crop {crop} is larger than the tokenizer's {grid}x{grid} grid; give at most {grid}")
    tok = tokenizer.config
    return TokenAdaptConfig(tok.code_dim, tok.codebook_size, grid, crop, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim)


class PairTargets:
    """What one step compares: the pair's logits for transformed and untransformed maps, and the tokenizer's codes.

    Shared by training and :func:`agreement` so the figures measure what the loss optimises.
    """

    def __init__(self, tokenizer: Tokenizer, codebook: torch.Tensor, config: TokenAdaptConfig) -> None:
        self.tokenizer, self.codebook, self.config = tokenizer, codebook, config
        self.offset = (config.grid - config.crop) // 2
        self.window_inverse = torch.linalg.inv(crop_window(config.grid, config.crop))

    def centre(self, grid: torch.Tensor, cells: int = 1) -> torch.Tensor:
        """The centred crop x crop tokens (``cells`` per token side) of [..., g*cells, g*cells]."""
        lo, side = self.offset * cells, self.config.crop * cells
        return grid[..., lo : lo + side, lo : lo + side]

    @torch.no_grad()
    def codes(self, x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of the images and of the images under ``theta`` extended to the whole grid: [B, g, g] each."""
        whole = torch.cat([theta, theta.new_tensor([[[0.0, 0.0, 1.0]]]).expand(len(theta), 1, 3)], 1)
        x_t = warp(x, (whole @ self.window_inverse)[:, :2], x.shape[-1])
        ids = self.tokenizer.encode(torch.cat([x, x_t]))
        return ids[: len(x)], ids[len(x) :]

    def logits(self, model: TokenAdapt, ids: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair's codebook logits [B, m*m, K] of the transformed map and of the untransformed centre."""
        features = model.convert(self.codebook[ids].permute(0, 3, 1, 2))
        transformed = model.reverse_logits(warp(features, theta, self.config.crop * self.config.scale))
        return transformed, model.reverse_logits(self.centre(features, self.config.scale))


def train_tokenadapt(cfg: TokenAdaptTrainConfig) -> TokenAdaptResult:
    """Run (or resume) ``seit tokenadapt train`` as ``cfg`` describes; returns where it stopped."""
    seit_dist.resolve_device(cfg.device)  # a bad --device is refused before touching --output
    with runtime.start(cfg.out, device=cfg.device, resume=cfg.resume, restart=cfg.restart) as run:
        return TokenAdaptTrainer(cfg, run).fit()


class TokenAdaptTrainer:
    """One process; the run (output folder, resume, signals) comes from :mod:`seit.runtime`."""

    def __init__(self, cfg: TokenAdaptTrainConfig, run: runtime.Run) -> None:
        if run.info.world_size > 1:
            raise TrainError("seit tokenadapt train runs in one process; start it without torchrun")
        self.cfg, self.run, self.out = cfg, run, run.output
        self.device = seit_dist.resolve_device(cfg.device)
        self.tokenizer = load_tokenizer(cfg.tokenizer, device=self.device)
        self.tokenizer.requires_grad_(False)
        self.samples = list_images(cfg.images).samples
        self.pair_cfg = pair_config(cfg, self.tokenizer)
        codebook = self.tokenizer.classifier_codebook().float().to(self.device)
        self.targets = PairTargets(self.tokenizer, codebook, self.pair_cfg)
        torch.manual_seed(cfg.seed)
        self.model = TokenAdapt(self.pair_cfg).to(self.device).train()
        decay = [p for p in self.model.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))
        self.rng = torch.Generator().manual_seed(cfg.seed + 1)  # the transforms
        self.step = 0
        self.checkpoint_path = self.out / "checkpoint.pt"
        resume_from = runtime.resume_checkpoint(cfg.resume, self.checkpoint_path)
        if resume_from is not None:
            self._load(resume_from)
        resume_step = self.step if cfg.resume is not None else None
        self.logger = MetricsLogger(self.out, tensorboard=cfg.tensorboard, resume_step=resume_step)

    def _load(self, path: Path) -> None:
        state = safe_torch_load(path)
        if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT:
            raise TrainError(f"{path}: not a seit tokenadapt train checkpoint; resume from the run's checkpoint.pt")
        saved = from_dict(TokenAdaptConfig, state["config"])
        if saved != self.pair_cfg:
            raise TrainError(f"{path} was trained with {saved}, not {self.pair_cfg}; give the same sizes to resume")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        self.step = int(state["step"])
        log.info("resumed %s at step %d", path, self.step)

    def checkpoint(self) -> None:
        state = {
            "format": TRAIN_FORMAT,
            "config": to_dict(self.pair_cfg),
            "train": to_dict(self.cfg),
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": self.rng.get_state(),
        }
        atomic_torch_save(state, self.checkpoint_path)

    def train_step(self, images: torch.Tensor) -> dict[str, float]:
        """One optimizer step on uint8 images [B, 3, S, S]."""
        cfg = self.cfg
        for group in self.opt.param_groups:
            group["lr"] = lr_at(cfg, self.step)
        x = images.to(self.device).float().div_(255)
        theta = sample_geometry(len(x), self.pair_cfg.grid * self.pair_cfg.scale, cfg.geometry, self.rng)
        ids, ids_t = self.targets.codes(x, theta)
        transformed, plain = self.targets.logits(self.model, ids, theta)
        want_t, want = self.targets.centre(ids_t).flatten(1), self.targets.centre(ids).flatten(1)
        ce_t = F.cross_entropy(transformed.flatten(0, 1), want_t.flatten())
        ce = F.cross_entropy(plain.flatten(0, 1), want.flatten())
        loss = ce_t + cfg.recon_weight * ce
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {
            "loss": loss.item(),
            "transformed_ce": ce_t.item(),
            "recon_ce": ce.item(),
            "transformed_agree": (transformed.argmax(-1) == want_t).double().mean().item(),
            "recon_agree": (plain.argmax(-1) == want).double().mean().item(),
            "lr": lr_at(cfg, self.step - 1),
        }

    def _loader(self, workers: int) -> DataLoader:
        cfg = self.cfg
        batches = StepBatchSampler(len(self.samples), cfg.batch_size, start=self.step, stop=cfg.steps, seed=cfg.seed)
        return DataLoader(
            ImageDataset(self.samples, self.tokenizer.config.image_size, cfg.resize),
            batch_sampler=batches,
            num_workers=workers,
            collate_fn=_stack_good,
            worker_init_fn=runtime.ignore_stop_signals,
        )

    def fit(self) -> TokenAdaptResult:
        """Steps up to --steps (or a stop signal); then ``tokenadapt.safetensors``."""
        cfg = self.cfg
        workers = default_workers() if cfg.num_workers is None else cfg.num_workers
        usable = _SkipUnreadable(self.samples, cfg.images, report=True)
        last: dict[str, float] = {}
        stopped = False
        self.run.announce("seit tokenadapt train")
        bar = runtime.RunProgress(cfg.steps, self.step, epochs=1)
        bar.start_epoch(0, cfg.steps - self.step)
        seen, tick = 0, time.perf_counter()
        with cpu_threads(self.device, workers):
            for images, bad in self._loader(workers):
                batch = usable.usable(images, bad)
                figures = self.train_step(batch)
                seen += len(batch)
                stopped = self.run.stop.agreed(self.device) and self.step < cfg.steps
                if self.step % cfg.log_every == 0 or self.step in (1, cfg.steps) or stopped:
                    now = time.perf_counter()
                    last = {**figures, "images_per_s": seen / max(now - tick, 1e-9)}
                    self.logger.log("train", self.step, last)
                    seen, tick = 0, now
                bar.step(**{k: f"{figures[k]:.4g}" for k in ("loss", "transformed_agree")})
                if self.step % cfg.save_every == 0 or self.step == cfg.steps or stopped:
                    self.checkpoint()
                if stopped:
                    break
        bar.close()
        self.logger.close()
        path = None if stopped else save_tokenadapt(self.model, self.out / "tokenadapt.safetensors")
        return TokenAdaptResult(self.step, not stopped, path, last, self.checkpoint_path)
