"""Training a ViT-VQGAN tokenizer on a folder of images (one process, or many with torchrun).

Losses: L2 (+ optional L1) reconstruction, the reference's codebook/commitment loss on L2-normalised
codes, an optional LPIPS-style perceptual loss (user-supplied VGG16 weights) and an optional PatchGAN
hinge loss with an adaptive weight from ``--disc-start``. Codes unused for ``--dead-code-steps`` steps
are restarted from the current encoder outputs so the codebook does not collapse. With
``--codebook-ema`` the codes follow moving averages of their encoder outputs instead of a gradient.

Outputs in ``--output``: ``checkpoint.pt`` (everything to resume, written atomically every
``--save-every`` steps and on SIGTERM/SIGINT), ``log.jsonl`` (one JSON object per logged step and per
evaluation), ``samples/step_NNNNNNN.png`` (originals over reconstructions at each evaluation), and at
the end ``tokenizer.safetensors`` (weights + config) that :func:`seit.tokenizer.load_tokenizer` reads.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from seit import runtime
from seit.config import from_dict, to_dict
from seit.images import ImageDataset, ImageSkipped, list_images, load_image
from seit.interop.enhancing import config_from_yaml
from seit.runtime.metrics import MetricsLogger
from seit.store.sampler import StepBatchSampler
from seit.tokenizer.amp import autocast
from seit.tokenizer.checkpoint import TRAIN_FORMAT, save_tokenizer
from seit.tokenizer.config import TokenizerConfig, TokenizerError, TrainConfig, preset
from seit.tokenizer.encode import cpu_threads, default_workers
from seit.tokenizer.losses import (
    PatchDiscriminator,
    PerceptualLoss,
    adaptive_weight,
    generator_loss,
    hinge_d_loss,
)
from seit.tokenizer.metrics import CodeUsage, psnr, ssim
from seit.tokenizer.model import Tokenizer
from seit.tokenizer.render import to_uint8, write_comparison
from seit.utils import dist as seit_dist
from seit.utils.serialization import atomic_torch_save, safe_torch_load

log = logging.getLogger(__name__)


class TrainError(TokenizerError):
    """A training run that cannot start or continue as asked."""


@dataclass
class TrainResult:
    step: int
    finished: bool  # False when a signal stopped the run (checkpoint saved; rerun with --resume auto)
    tokenizer_path: Path | None
    last: dict[str, float]
    checkpoint: Path | None = None  # OUT/checkpoint.pt

    @property
    def preempted(self) -> bool:
        """The name ``seit train``'s result uses."""
        return not self.finished


def tokenizer_config(cfg: TrainConfig) -> TokenizerConfig:
    base = config_from_yaml(cfg.config) if cfg.config else preset(cfg.preset)
    sizes = {"image_size": cfg.image_size, "codebook_size": cfg.codebook_size, "code_dim": cfg.code_dim}
    changes = {k: v for k, v in sizes.items() if v}
    return base.replace(**changes) if changes else base


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress_ = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress_))


def param_groups(model: Tokenizer, weight_decay: float) -> list[dict[str, Any]]:
    """Decay weight matrices and kernels; not biases, norms or the codebook (as the reference)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not name.startswith("quantizer.") else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class DeadCodes:
    """When each code was last chosen (on any rank); codes idle for ``patience`` steps get restarted.

    A restarted code takes a random latent of the current batch (rank 0's, broadcast), so it lands
    where the encoder's outputs are, and its optimizer moments are cleared.
    """

    def __init__(self, codebook_size: int, patience: int) -> None:
        self.patience = patience
        self.last_seen = torch.zeros(codebook_size, dtype=torch.long)
        self.last_reset = torch.zeros(codebook_size, dtype=torch.long)
        self.restarted = 0

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {"last_seen": self.last_seen, "last_reset": self.last_reset, "restarted": self.restarted}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        self.last_seen, self.last_reset = state["last_seen"].clone(), state["last_reset"].clone()
        self.restarted = int(state["restarted"])

    def active_fraction(self, step: int) -> float:
        """Codes chosen within the last ``patience`` steps (restarts do not count)."""
        return float((step - self.last_seen < max(self.patience, 1)).double().mean())

    @torch.no_grad()
    def update(self, ids: torch.Tensor, latents: torch.Tensor, step: int, model: Tokenizer, opt, rng) -> torch.Tensor:
        """Note the codes ``ids`` use; restart the idle ones. Returns the indices of the restarted codes."""
        weight = model.quantizer.embedding.weight
        counts = torch.bincount(ids.flatten(), minlength=len(self.last_seen))
        used = seit_dist.all_reduce(counts.clamp_(max=1).to(torch.int32), op="max").bool()
        self.last_seen[used.cpu()] = step
        if self.patience <= 0:
            return torch.zeros(0, dtype=torch.long, device=weight.device)
        dead = torch.nonzero(step - torch.maximum(self.last_seen, self.last_reset) >= self.patience).flatten()
        if not len(dead):
            return dead.to(weight.device)
        pool = latents.reshape(-1, latents.shape[-1])
        picks = torch.randint(len(pool), (len(dead),), generator=rng).to(pool.device)
        rows = pool[picks].to(weight.dtype)
        if seit_dist.is_distributed():
            dist.broadcast(rows, src=0)  # every rank takes rank 0's rows
        index = dead.to(weight.device)
        weight[index] = rows
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in opt.state.get(weight, {}):
                opt.state[weight][moment][index] = 0
        self.last_reset[dead] = step
        self.restarted += len(dead)
        return index


# Laplace smoothing of the EMA cluster sizes (VQ-VAE-2; lucidrains' vector-quantize-pytorch uses the same).
EMA_EPSILON = 1e-5


class CodebookEMA:
    """``--codebook-ema``: each code is the moving average of the encoder outputs assigned to it (VQ-VAE-2).

    The tokenizer compares and decodes unit vectors, so the averages are of L2-normalised latents: per code an
    EMA of its cluster size and of the sum of its assigned latents, the row being their ratio (sizes
    Laplace-smoothed so a code chosen rarely keeps a finite row). The statistics are the global batch's
    (summed over ranks), so every rank computes the same rows. They are training state: checkpoint.pt holds
    them, tokenizer.safetensors only the rows.
    """

    def __init__(self, weight: torch.Tensor, decay: float) -> None:
        self.decay = decay
        self.cluster_size = torch.zeros(len(weight), device=weight.device)
        self.embed_sum = torch.zeros(weight.shape, device=weight.device)
        self.reset(torch.arange(len(weight), device=weight.device), weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"cluster_size": self.cluster_size, "embed_sum": self.embed_sum}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.cluster_size.copy_(state["cluster_size"])
        self.embed_sum.copy_(state["embed_sum"])

    @torch.no_grad()
    def reset(self, index: torch.Tensor, weight: torch.Tensor) -> None:
        """Codes ``index`` start over as one observation at their row's direction (at the start, on a restart)."""
        self.embed_sum[index] = F.normalize(weight[index].float(), dim=-1)
        self.cluster_size[index] = 1.0

    @torch.no_grad()
    def update(self, ids: torch.Tensor, latents: torch.Tensor, weight: torch.Tensor) -> None:
        """Fold in one step's assignments ``ids`` [...] of ``latents`` [..., D] and rewrite ``weight`` [K, D]."""
        z = F.normalize(latents.detach().reshape(-1, latents.shape[-1]).float(), dim=-1)
        stats = torch.zeros(len(weight), 1 + z.shape[1], device=z.device)  # per code: count, sum of latents
        stats.index_add_(0, ids.flatten().to(z.device), torch.cat([torch.ones_like(z[:, :1]), z], dim=1))
        seit_dist.all_reduce(stats)
        self.cluster_size.mul_(self.decay).add_(stats[:, 0], alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(stats[:, 1:], alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + EMA_EPSILON) / (total + len(weight) * EMA_EPSILON) * total
        weight.copy_(self.embed_sum / smoothed.unsqueeze(1))


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a training job as ``cfg`` describes; returns where it stopped."""
    seit_dist.resolve_device(cfg.device)  # a bad --device is refused before touching --output
    with runtime.start(cfg.out, device=cfg.device, resume=cfg.resume, restart=cfg.restart) as run:
        return TokenizerTrainer(cfg, run).fit()


class TokenizerTrainer:
    """The ViT-VQGAN's losses and step; the run (process group, output, signals) comes from :mod:`seit.runtime`."""

    def __init__(self, cfg: TrainConfig, run: runtime.Run) -> None:
        self.cfg, self.run, self.info, self.out = cfg, run, run.info, run.output
        self.device = seit_dist.resolve_device(cfg.device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.info.local_rank)
        self.samples = list_images(cfg.images).samples
        self.tok_cfg = tokenizer_config(cfg)
        torch.manual_seed(cfg.seed)
        # With --codebook-ema no gradient reaches the codebook: only the commitment term of the VQ loss is left.
        self.model = Tokenizer(self.tok_cfg, beta=0.0 if cfg.codebook_ema else cfg.beta).to(self.device)
        codebook = self.model.quantizer.embedding.weight
        self.ema = None
        if cfg.codebook_ema:
            self.ema = CodebookEMA(codebook.requires_grad_(False), cfg.codebook_ema)
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.99))
        self.disc = self.disc_opt = self.perceptual = None
        if cfg.disc_start is not None:
            self.disc = PatchDiscriminator(cfg.disc_layers).to(self.device)
            self.disc_opt = torch.optim.AdamW(
                self.disc.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay
            )
        if cfg.perceptual_weights:
            self.perceptual = PerceptualLoss.from_files(cfg.perceptual_weights, cfg.lpips_weights).to(self.device)
        self.rng = torch.Generator().manual_seed(cfg.seed + 1)
        self.codes = DeadCodes(self.tok_cfg.codebook_size, cfg.dead_code_steps)
        self.step = 0
        self.checkpoint_path = self.out / "checkpoint.pt"
        resume_from = runtime.resume_checkpoint(cfg.resume, self.checkpoint_path)
        if resume_from is not None:
            self._load(resume_from)
        self.net, self.d_net = seit_dist.wrap_ddp(self.model, self.device), seit_dist.wrap_ddp(self.disc, self.device)
        resume_step = self.step if cfg.resume is not None else None
        self.logger = MetricsLogger(
            self.out, enabled=self.info.is_main, tensorboard=cfg.tensorboard, resume_step=resume_step
        )

    def _load(self, path: Path) -> None:
        state = safe_torch_load(path)
        saved = from_dict(TokenizerConfig, state["config"])
        if saved != self.tok_cfg:
            raise TrainError(
                f"{path} was trained with {saved}, not {self.tok_cfg}; give the same model options when resuming"
            )
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.disc is not None and "disc" in state:
            self.disc.load_state_dict(state["disc"])
            self.disc_opt.load_state_dict(state["disc_optimizer"])
        self.rng.set_state(state["rng"])
        self.codes.load_state_dict(state["codes"])
        if ("codebook_ema" in state) != (self.ema is not None):
            was = "with" if "codebook_ema" in state else "without"
            raise TrainError(
                f"{path} was trained {was} --codebook-ema; resume it {was} that flag or start over with --restart"
            )
        if self.ema is not None:
            self.ema.load_state_dict(state["codebook_ema"])
        self.step = int(state["step"])
        if self.info.is_main:
            log.info("resumed %s at step %d", path, self.step)

    def checkpoint(self) -> None:
        """``OUT/checkpoint.pt``, atomically (main rank); every rank waits for it."""
        if self.info.is_main:
            state = {
                "format": TRAIN_FORMAT,
                "config": to_dict(self.model.config),
                "train": to_dict(self.cfg),
                "step": self.step,
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "rng": self.rng.get_state(),
                "codes": self.codes.state_dict(),
            }
            if self.disc is not None:
                state.update(disc=self.disc.state_dict(), disc_optimizer=self.disc_opt.state_dict())
            if self.ema is not None:
                state["codebook_ema"] = self.ema.state_dict()
            atomic_torch_save(state, self.checkpoint_path)
        seit_dist.barrier()

    def _loader(self, workers: int) -> DataLoader:
        cfg, info = self.cfg, self.info
        batches = StepBatchSampler(
            len(self.samples), cfg.batch_size, start=self.step, stop=cfg.steps, seed=cfg.seed, rank=info.rank,
            world_size=info.world_size,
        )  # fmt: skip
        return DataLoader(
            ImageDataset(self.samples, self.tok_cfg.image_size, cfg.resize),
            batch_sampler=batches,
            num_workers=workers,
            collate_fn=_stack_good,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=runtime.ignore_stop_signals,
        )

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> [0, 1] floats on the device, flipped at random (--hflip)."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if self.cfg.hflip:
            flip = torch.rand(len(x), generator=self.rng) < 0.5
            x = torch.where(flip.to(self.device).view(-1, 1, 1, 1), x.flip(-1), x)
        return x

    def _set_lr(self) -> None:
        for optimizer in (self.opt, self.disc_opt):
            for group in optimizer.param_groups if optimizer is not None else ():
                group["lr"] = lr_at(self.cfg, self.step)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimizer step (and one discriminator step once the GAN is on); metrics stay on the device."""
        cfg, precision = self.cfg, self.cfg.precision
        self._set_lr()
        with autocast(self.device, precision):
            out = self.net(x)
        rec = out.reconstructions.float()
        l2, l1 = F.mse_loss(rec, x), (rec - x).abs().mean()
        nll = cfg.l2_weight * l2 + cfg.l1_weight * l1
        metrics: dict[str, torch.Tensor] = {"l2": l2.detach(), "l1": l1.detach(), "vq": out.vq_loss.detach()}
        if self.perceptual is not None:
            with autocast(self.device, precision):
                p_loss = self.perceptual(rec, x)
            nll = nll + cfg.perceptual_weight * p_loss
            metrics["perceptual"] = p_loss.detach()
        loss = nll + cfg.codebook_weight * out.vq_loss
        gan_on = self.d_net is not None and self.step >= cfg.disc_start
        if gan_on:
            loss = loss + self._generator_term(rec, nll, metrics)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        if gan_on:
            metrics["d_loss"] = self._discriminator_step(x, rec)
        metrics.update(loss=loss.detach(), **self._code_figures(out.ids, rec, x))
        self.step += 1
        codebook = self.model.quantizer.embedding.weight
        if self.ema is not None:
            self.ema.update(out.ids, out.latents, codebook)
        restarted = self.codes.update(out.ids, out.latents, self.step, self.model, self.opt, self.rng)
        if self.ema is not None:
            self.ema.reset(restarted, codebook)
        return metrics

    def _generator_term(self, rec: torch.Tensor, nll: torch.Tensor, metrics: dict) -> torch.Tensor:
        # The discriminator's gradients from this pass are discarded: no need to all-reduce them.
        d_net = self.d_net
        no_sync = d_net.no_sync() if isinstance(d_net, DistributedDataParallel) else contextlib.nullcontext()
        with autocast(self.device, self.cfg.precision), no_sync:
            g_loss = generator_loss(d_net(rec).float())
        d_weight = self.cfg.adversarial_weight * adaptive_weight(nll, g_loss, self.model.decoder.last_layer)
        metrics.update(g_loss=g_loss.detach(), d_weight=d_weight)
        return d_weight * g_loss

    def _discriminator_step(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.cfg.precision):
            d_loss = hinge_d_loss(self.d_net(x).float(), self.d_net(rec.detach()).float())
        self.disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.disc_opt.step()
        return d_loss.detach()

    def _code_figures(self, ids: torch.Tensor, rec: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        counts = torch.bincount(ids.flatten(), minlength=self.model.codebook_size)
        p = counts.double() / counts.sum()
        return {
            "psnr": psnr(rec.detach().clamp(0, 1), x).mean(),
            "usage": (counts > 0).double().mean(),
            "perplexity": torch.special.entr(p).sum().exp(),
        }

    def _log_due(self, stopping: bool) -> bool:
        """Every --log-every steps, and the first and last step of the run, however short."""
        return self.step % self.cfg.log_every == 0 or self.step in (1, self.cfg.steps) or stopping

    def _log_train(self, metrics: dict[str, torch.Tensor], images_per_s: float) -> dict[str, float]:
        figures = seit_dist.mean_over_ranks(metrics, self.device)
        figures.update(
            lr=lr_at(self.cfg, self.step - 1),
            codes_active=self.codes.active_fraction(self.step),
            codes_restarted=float(self.codes.restarted),
            images_per_s=images_per_s,
        )
        self.logger.log("train", self.step, figures)
        return figures

    def fit(self) -> TrainResult:
        """Steps up to --steps (or a stop signal); then ``tokenizer.safetensors``."""
        cfg = self.cfg
        eval_batch = _eval_batch(cfg, self.tok_cfg, self.samples) if self.info.is_main else None
        workers = default_workers() if cfg.num_workers is None else cfg.num_workers
        batches = _SkipUnreadable(self.samples, cfg.images, report=self.info.is_main)
        last: dict[str, float] = {}
        stopped = False
        seen, tick = 0, time.perf_counter()
        self.run.announce("seit tokenizer train")
        bar = runtime.RunProgress(cfg.steps, self.step, epochs=1)
        bar.start_epoch(0, cfg.steps - self.step)
        with cpu_threads(self.device, workers):
            for images, bad in self._loader(workers):
                x = self._inputs(batches.usable(images, bad))
                metrics = self.train_step(x)
                seen += len(x)
                stopped = self.run.stop.agreed(self.device) and self.step < cfg.steps
                if self._log_due(stopped):
                    now = time.perf_counter()
                    last = self._log_train(metrics, seen * self.info.world_size / max(now - tick, 1e-9))
                    seen, tick = 0, now
                bar.step(**{k: f"{last[k]:.4g}" for k in ("loss", "psnr", "usage") if k in last})
                if eval_batch is not None and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                    self.logger.log("eval", self.step, _evaluate(self.model, eval_batch, self.out, self.step, cfg))
                if self.step % cfg.save_every == 0 or self.step == cfg.steps or stopped:
                    self.checkpoint()
                if stopped:
                    break
        bar.close()
        self.logger.close()
        path = (
            save_tokenizer(self.model, self.out / "tokenizer.safetensors")
            if not stopped and self.info.is_main
            else None
        )
        seit_dist.barrier()
        return TrainResult(self.step, not stopped, path, last, self.checkpoint_path)


class _SkipUnreadable:
    """Names each unreadable image once; a batch with none readable repeats the previous batch."""

    def __init__(self, samples: list, images: str, report: bool) -> None:
        self.samples, self.images, self.report = samples, images, report
        self.reported: set[int] = set()
        self.previous: torch.Tensor | None = None

    def usable(self, images: torch.Tensor | None, bad: list[tuple[int, str]]) -> torch.Tensor:
        for i, reason in bad:
            if i not in self.reported and self.report:
                log.warning("skipping %s: %s", self.samples[i].key, reason)
            self.reported.add(i)
        if images is None:
            if self.previous is None:
                raise TrainError(f"{self.images}: the first batch has no readable image; see the messages above")
            images = self.previous
        self.previous = images
        return images


def _stack_good(items: list) -> tuple[torch.Tensor | None, list[tuple[int, str]]]:
    good = [torch.from_numpy(image) for _, image, _, _ in items if image is not None]
    bad = [(i, reason) for i, image, _, reason in items if image is None]
    return (torch.stack(good) if good else None), bad


def _eval_batch(cfg: TrainConfig, tok_cfg: TokenizerConfig, samples) -> torch.Tensor:
    """The fixed evaluation images (uint8) from --val-images or the training images, spread over the list."""
    pool = list_images(cfg.val_images).samples if cfg.val_images else samples
    stride = max(1, len(pool) // max(cfg.eval_images, 1))
    images = []
    for s in pool[::stride] + [s for i, s in enumerate(pool) if i % stride]:  # spread first, the rest if some fail
        if len(images) == cfg.eval_images:
            break
        with contextlib.suppress(ImageSkipped):
            images.append(load_image(s.path, tok_cfg.image_size, cfg.resize).transpose(2, 0, 1))
    if not images:
        raise TrainError(f"{cfg.val_images or cfg.images}: no readable image for the evaluation batch")
    return torch.from_numpy(np.stack(images))


@torch.no_grad()
def _evaluate(model: Tokenizer, images: torch.Tensor, out: Path, step: int, cfg: TrainConfig) -> dict:
    model.eval()
    device = next(model.parameters()).device
    x = images.to(device).float().div_(255)
    with autocast(device, cfg.precision):
        result = model(x)
    model.train()
    rec = result.reconstructions.float().clamp(0, 1)
    usage = CodeUsage(model.codebook_size)
    usage.update(result.ids)
    write_comparison(out / "samples" / f"step_{step:07d}.png", to_uint8(x), to_uint8(rec))
    return {
        "psnr": float(psnr(rec, x).mean()),
        "ssim": float(ssim(rec, x).mean()),
        "usage": usage.usage,
        "perplexity": usage.perplexity,
    }
