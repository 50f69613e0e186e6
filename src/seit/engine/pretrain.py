"""`seit pretrain`: SeiT++'s masked token modeling (MTM) on token ids, on the shared run runtime.

The recipe is SeiT++'s ``main_mtm_pretrain.py`` / ``engine_mtm.py``: per optimizer step a masking ratio from a
truncated normal, the loss over the codebook on masked patches, AdamW with betas (0.9, 0.95) and no weight
decay on biases and norms, lr = ``--blr`` x effective batch / 256 unless ``--lr`` is given, a per-step
linear warm-up then half-cycle cosine, ``--accum-iter`` micro-batches per step. Each sample is embedded,
augmented as `seit train` does it (RRC, Token-EDA, Emb-Noise, ColorAdapt; no flip or mixing) and quantised
back to the nearest code by cosine similarity, which the model then reads (SeiT++'s ``convert_to_codes``).
With ``--tokenadapt`` half of each batch instead goes through TokenAdapt's feature space
(:func:`seit.augment.tokenadapt.tokenadapt_augment`).

Reproducibility and resume are `seit train`'s: every draw of a step comes from (seed, step, rank), the data
position is the samples the epoch has consumed, so an interrupted and resumed run repeats the losses of the
uninterrupted one. ``OUTPUT/last.pt`` (kind ``seit.pretrain``) holds the MTM model, optimizer and position;
`seit train --finetune OUTPUT/last.pt` starts a token ViT from its encoder
(:func:`seit.models.finetune.finetune_from`; the format: docs/pretrain-format.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from seit import runtime
from seit.augment.tokenadapt import GeometryConfig, tokenadapt_augment
from seit.engine.config import OptimConfig, RunConfig, TrainConfig
from seit.engine.pipeline import TokenPipeline
from seit.engine.pretrain_config import PretrainConfig
from seit.engine.train import (
    Position,
    TrainingError,
    _autocast,
    _check_resumable,
    optimizer_step,
    restore_run_state,
    run_state,
    seed_everything,
    step_seed,
)
from seit.errors import ConfigError
from seit.runtime.metrics import MetricsLogger
from seit.utils import dist as seit_dist
from seit.utils.serialization import CheckpointError, atomic_torch_save, safe_torch_load

log = logging.getLogger(__name__)

KIND = "seit.pretrain"


@dataclass
class PretrainResult:
    output: Path
    global_step: int
    epochs_done: int
    preempted: bool


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Pre-train an MTM model as ``cfg`` says; returns where the run is and whether a signal stopped it."""
    from seit.models import MTM_MODELS

    if cfg.model.model not in MTM_MODELS:
        raise ConfigError(f"--model {cfg.model.model}: not an MTM model; one of {', '.join(MTM_MODELS)}")
    r = cfg.run
    seit_dist.resolve_device(r.device)
    with runtime.start(r.output, device=r.device, resume=r.resume, restart=r.restart) as run:
        return Pretrainer(cfg, run).fit()


def warmup_cosine(epoch: float, lr: float, min_lr: float, warmup: float, epochs: int) -> float:
    """SeiT++'s (MAE's) per-step schedule at a fractional ``epoch``: linear from 0, then half-cycle cosine."""
    if epoch < warmup:
        return lr * epoch / warmup
    progress = (epoch - warmup) / max(epochs - warmup, 1e-12)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def nearest_codes(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """[B, D, m, m] embeddings -> [B, m, m] ids of the most cosine-similar code (SeiT++'s ``convert_to_codes``)."""
    x = F.normalize(vectors.permute(0, 2, 3, 1).float(), dim=-1)
    return (x @ F.normalize(codebook, dim=-1).t()).argmax(-1)


class Pretrainer:
    """The MTM loop; the run (process group, output, signals) comes from :mod:`seit.runtime`."""

    def __init__(self, cfg: PretrainConfig, run: runtime.Run) -> None:
        self.cfg, self.run, self.info, self.out = cfg, run, run.info, run.output
        self.device = seit_dist.resolve_device(cfg.run.device)
        if self.device.type == "cuda" and self.info.enabled:
            self.device = torch.device("cuda", self.info.local_rank)
        seed_everything(cfg.run.seed)
        o = cfg.optim
        view = TrainConfig(  # `seit train`'s data path reads these sections
            data=cfg.data_config(),
            augment=cfg.augment_config(),
            optim=OptimConfig(batch_size=o.batch_size),
            run=RunConfig(output=cfg.run.output, seed=cfg.run.seed, device=cfg.run.device),
        )
        self.pipe = TokenPipeline(view, self.info, self.device, labelled=False)  # self-supervised: no labels read
        self.codebook = self.pipe.codebook.to(self.device)
        self.tokenadapt = self._load_tokenadapt()
        self.model = self._create_model()
        self.batch_step = o.batch_size * o.accum_iter * self.info.world_size  # samples per optimizer step
        self.lr = o.lr if o.lr is not None else o.blr * self.batch_step / 256
        from timm.optim import param_groups_weight_decay

        groups = param_groups_weight_decay(self.model, o.weight_decay)
        self.optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=(0.9, 0.95))
        self.autocast, self.scaler = _autocast(self.device, cfg.run.amp)
        self.at = Position()
        resume_from = runtime.resume_checkpoint(cfg.run.resume, self.out / "last.pt")
        if resume_from is not None:
            self._load(resume_from)
        self.train_model = seit_dist.wrap_ddp(torch.compile(self.model) if cfg.run.compile else self.model, self.device)
        resume_step = self.at.step if cfg.run.resume is not None else None
        self.logger = MetricsLogger(
            self.out, enabled=self.info.is_main, tensorboard=cfg.run.tensorboard, resume_step=resume_step
        )
        if self.info.is_main and o.warmup_epochs > o.epochs:
            log.warning(
                "--warmup-epochs %g exceeds --epochs %d: the lr only ramps up, to %.3g at the end (SeiT++'s default "
                "warm-up is 40 epochs of 400)",
                o.warmup_epochs, o.epochs, self.lr * o.epochs / o.warmup_epochs,
            )  # fmt: skip
        if self.info.is_main:
            log.info(
                "MTM: %s on %dx%d crops, lr %.3g (effective batch %d), masking %.2f..%.2f (mean %.2f)",
                cfg.model.model, self.pipe.grid_size, self.pipe.grid_size, self.lr, self.batch_step,
                cfg.model.mask_ratio_min, cfg.model.mask_ratio_max, cfg.model.mask_ratio_mu,
            )  # fmt: skip

    def _create_model(self) -> torch.nn.Module:
        import timm

        from seit.models import MaskRatio

        m = self.cfg.model
        ratio = MaskRatio(m.mask_ratio_min, m.mask_ratio_max, m.mask_ratio_mu, m.mask_ratio_std)
        model = timm.create_model(
            m.model,
            img_size=self.pipe.grid_size,
            codebook_size=int(self.codebook.shape[0]),
            mask_ratio=ratio,
            smoothing=m.smoothing,
            bce_loss=m.bce_loss,
            **m.size_overrides(),
        )
        return model.to(self.device)

    def _load_tokenadapt(self):
        path = self.cfg.model.tokenadapt
        if path is None:
            return None
        from seit.tokenadapt import load_tokenadapt

        pair = load_tokenadapt(path).to(self.device).requires_grad_(False)
        c, grid = pair.config, self.pipe.train_grid
        want = (int(self.codebook.shape[1]), int(self.codebook.shape[0]), grid[0], grid[1], self.pipe.grid_size)
        have = (c.code_dim, c.codebook_size, c.grid, c.grid, c.crop)
        if want != have:
            raise TrainingError(
                f"--tokenadapt {path}: made for {c.codebook_size} codes of {c.code_dim} dims, {c.grid}x{c.grid} grids "
                f"and {c.crop}x{c.crop} crops; this data has {want[1]} codes of {want[0]} dims, {grid[0]}x{grid[1]} "
                f"grids and {want[4]}x{want[4]} crops: train a pair for it (`seit tokenadapt train`)"
            )
        return pair

    def _load(self, path: Path) -> None:
        try:
            ckpt = safe_torch_load(path)
        except CheckpointError as e:
            raise TrainingError(f"{e}; cannot resume from it: --resume PATH of another, or --restart") from None
        _check_resumable(ckpt, self.cfg, path, self.info.world_size, kind=KIND)
        self.at = restore_run_state(ckpt, self.model, self.optimizer, self.scaler)
        if self.info.is_main:
            log.info("resumed %s at epoch %d, sample %d, step %d", path, *vars(self.at).values())

    def checkpoint(self) -> None:
        """``OUTPUT/last.pt``, atomically (main rank)."""
        if not self.info.is_main:
            return
        state = run_state(self.model, self.optimizer, self.scaler, self.at, self.info.world_size, self.cfg, KIND)
        state["mtm"] = {
            "model": self.cfg.model.model,
            "img_size": self.pipe.grid_size,
            **self.cfg.model.size_overrides(),
        }
        atomic_torch_save(state, self.out / "last.pt")

    def inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """One micro-batch of ids -> the augmented ids the model reads.

        With a TokenAdapt pair the second half gets TokenAdapt's geometric transforms (SeiT++'s distribution, the
        crop area of ``--rrc-scale``) instead, drawn from this step's own CPU generator; it skips Token-EDA,
        ColorAdapt and Emb-Noise (SeiT++ colours the whole batch before splitting it)."""
        if self.tokenadapt is None:
            return nearest_codes(self.pipe.train_inputs(ids), self.codebook)
        half = ids.shape[0] // 2
        plain = nearest_codes(self.pipe.train_inputs(ids[:half]), self.codebook)
        geometry = GeometryConfig(rrc_scale=self.cfg.augment.rrc_scale)
        adapted = tokenadapt_augment(
            ids[half:].to(self.device), self.tokenadapt, self.geometry, codebook=self.codebook, geometry=geometry
        )
        return torch.cat([plain, adapted])

    def train_step(self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """One optimizer step over ``--accum-iter`` micro-batches; every draw seeded from (seed, step), the masks
        and TokenAdapt's transforms also from the rank (the pipeline draws for the global batch, each rank keeps
        its rows)."""
        seed = step_seed(self.cfg.run.seed, self.at.step)
        seed_everything(seed)
        self.pipe.reseed(seed)
        rank = self.info.rank
        masks = torch.Generator().manual_seed(step_seed(seed, 2 * rank))
        self.geometry = torch.Generator().manual_seed(step_seed(seed, 2 * rank + 1))  # TokenAdapt's transforms
        o = self.cfg.optim
        lr = warmup_cosine(
            self.at.epoch + self.at.samples / self.pipe.num_train, self.lr, o.min_lr, o.warmup_epochs, o.epochs
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for i, (ids, _labels) in enumerate(micro_batches):
            x = self.inputs(ids)
            sync = i == len(micro_batches) - 1 or not hasattr(self.train_model, "no_sync")
            with self.autocast, contextlib.nullcontext() if sync else self.train_model.no_sync():
                loss = self.train_model(x, generator=masks)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"MTM loss is {loss.item()} at step {self.at.step} (lr {lr:.3g}): training diverged; "
                        "start again with a lower --blr or --clip-grad 3.0"
                    )
                scaled = loss / len(micro_batches)
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total += loss.item()
        optimizer_step(self.optimizer, self.scaler, self.model.parameters(), self.cfg.optim.clip_grad)
        self.at.step += 1
        self.at.samples += self.batch_step
        return total / len(micro_batches)

    def steps_per_epoch(self, position: int) -> int:
        return (self.pipe.num_train - position) // self.batch_step

    def reached_max_steps(self) -> bool:
        return self.cfg.run.max_steps is not None and self.at.step >= self.cfg.run.max_steps

    def train_epoch(self, bar: runtime.RunProgress) -> bool:
        """Steps to the end of this epoch (or --max-steps); True when a stop signal ended it (checkpoint saved)."""
        self.model.train()
        steps = self.steps_per_epoch(self.at.samples)
        bar.start_epoch(self.at.epoch, steps)
        loader = iter(self.pipe.train_loader(self.at.epoch, self.at.samples))
        t0 = time.perf_counter()
        for done in range(1, steps + 1):
            loss = self.train_step([next(loader) for _ in range(self.cfg.optim.accum_iter)])
            stopping = self.run.stop.agreed(self.device)
            at = self.at.step
            if at % self.cfg.run.log_every == 0 or at == 1 or done == steps or self.reached_max_steps() or stopping:
                lr = self.optimizer.param_groups[0]["lr"]
                rate = done * self.batch_step / max(time.perf_counter() - t0, 1e-9)
                self.logger.log("train", at, {"loss": loss, "lr": lr, "epoch": self.at.epoch, "samples_per_s": rate})
            bar.step(loss=f"{loss:.4f}")
            if stopping:
                self.checkpoint()
                return True
            if self.cfg.run.ckpt_every and at % self.cfg.run.ckpt_every == 0:
                self.checkpoint()
            if self.reached_max_steps():
                break
        return False

    def fit(self) -> PretrainResult:
        cfg = self.cfg
        per_epoch = self.steps_per_epoch(0)
        if per_epoch == 0:
            raise TrainingError(
                f"the training data has {self.pipe.num_train} samples, fewer than one optimizer step's "
                f"{self.batch_step} (--batch-size x --accum-iter x processes): lower --batch-size or --accum-iter"
            )
        planned = per_epoch * cfg.optim.epochs
        self.run.announce("seit pretrain")
        bar = runtime.RunProgress(min(planned, cfg.run.max_steps or planned), self.at.step, cfg.optim.epochs)
        preempted = False
        while self.at.epoch < cfg.optim.epochs and not self.reached_max_steps():
            preempted = self.train_epoch(bar)
            if preempted:
                break
            if self.steps_per_epoch(self.at.samples) == 0:
                self.at = Position(self.at.epoch + 1, 0, self.at.step)
            self.checkpoint()
        bar.close()
        self.logger.close()
        return PretrainResult(self.out, self.at.step, self.at.epoch, preempted)
