"""`seit train`: the DeiT recipe on token ids (or pixels, for the baseline), one loop for 1..N processes.

Reproducibility and elastic resume come from two choices:
- every random draw of a step (augmentation, Mixup/CutMix, drop-path) is seeded from (seed, step), alike on
  every rank, and made for the whole global batch, of which each rank keeps its rows; so no RNG state has to
  be checkpointed and a resumed run draws exactly what the uninterrupted run drew, on any number of processes;
- the data position is the number of samples the epoch has consumed, and the epoch's global order depends
  only on (seed, epoch), so a run resumes mid-epoch, also on a different number of processes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seit import runtime
from seit.config import to_dict
from seit.engine.config import TrainConfig
from seit.engine.evaluate import EvalResult, evaluate
from seit.engine.pipeline import build_pipeline
from seit.errors import SeitError
from seit.models.checkpoint import BEST_FILE, EMA_FILE, MODEL_FILE, classifier_entry, save_classifier, write_best
from seit.runtime.metrics import MetricsLogger, read_metrics
from seit.utils import dist as seit_dist
from seit.utils.serialization import CheckpointError, atomic_torch_save, safe_torch_load

log = logging.getLogger(__name__)


class TrainingError(SeitError):
    """Training cannot continue (diverged, mismatched checkpoint, ...); the message says what to change."""


@dataclass
class TrainResult:
    output: Path
    global_step: int
    epochs_done: int
    preempted: bool
    final_eval: EvalResult | None
    final_eval_ema: EvalResult | None
    best: Path | None = None  # the classifier file best.json names (main process, not preempted)
    best_top1: float | None = None  # its validation top-1 at the last step, when evaluated there


def step_seed(seed: int, step: int) -> int:
    """A well-mixed 63-bit seed for one (seed, step): the same on every rank (each keeps its rows of the draws)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)


def _autocast(device: torch.device, amp: str):
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    if amp == "none":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    return torch.autocast(device.type, dtype=dtype), scaler


def _scaled_lr(cfg: TrainConfig, world_size: int) -> float:
    if cfg.optim.unscale_lr:
        return cfg.optim.lr
    return cfg.optim.lr * cfg.optim.batch_size * world_size / 512.0


def train(cfg: TrainConfig) -> TrainResult:
    """Train a classifier as ``cfg`` says; returns where the artefacts are and the final evaluation."""
    from seit.models import check_model_args

    check_model_args(cfg.model.model, cfg.model.embed_dim, cfg.model.num_heads)  # before touching --output
    seit_dist.resolve_device(cfg.run.device)
    r = cfg.run
    with runtime.start(r.output, device=r.device, resume=r.resume, restart=r.restart) as run:
        return Trainer(cfg, run).fit()


@dataclass
class Position:
    """Where a run is: the epoch, the samples that epoch has consumed, and the optimizer steps so far."""

    epoch: int = 0
    samples: int = 0
    step: int = 0


def run_state(model, optimizer, scaler, at: Position, world_size: int, cfg: Any, kind: str) -> dict[str, Any]:
    """What every resumable training checkpoint holds (`seit train`'s and `seit pretrain`'s ``last.pt``)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": at.epoch,
        "position": at.samples,
        "global_step": at.step,
        "world_size": world_size,
        "config": to_dict(cfg),
        "kind": kind,
    }


def restore_run_state(ckpt: dict[str, Any], model, optimizer, scaler) -> Position:
    """Load :func:`run_state`'s weights and optimizer state back; returns the position to continue from."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return Position(ckpt["epoch"], ckpt["position"], ckpt["global_step"])


def optimizer_step(optimizer, scaler, parameters, clip: float | None) -> None:
    """Apply the accumulated gradients: unscale (fp16), clip the norm to ``clip`` if set, step."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if clip:
        torch.nn.utils.clip_grad_norm_(parameters, clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


class Trainer:
    """The DeiT recipe; the run (process group, output, signals) comes from :mod:`seit.runtime`."""

    def __init__(self, cfg: TrainConfig, run: runtime.Run) -> None:
        import timm
        from timm.loss import SoftTargetCrossEntropy
        from timm.utils import ModelEmaV3

        self.cfg, self.run, self.info, self.out = cfg, run, run.info, run.output
        self.device = seit_dist.resolve_device(cfg.run.device)
        if self.device.type == "cuda" and self.info.enabled:
            self.device = torch.device("cuda", self.info.local_rank)
        seed_everything(cfg.run.seed)
        self.pipe = build_pipeline(cfg, self.info, self.device)
        self.model = self._create_model(timm)
        self.ema = ModelEmaV3(self.model, decay=cfg.optim.model_ema_decay) if cfg.optim.model_ema else None
        self.optimizer, self.scheduler = self._create_optimizer()
        self.autocast, self.scaler = _autocast(self.device, cfg.run.amp)
        self.criterion = SoftTargetCrossEntropy()
        self.batch_global = cfg.optim.batch_size * self.info.world_size
        self.at = Position()
        resume_from = runtime.resume_checkpoint(cfg.run.resume, self.out / "last.pt")
        if resume_from is not None:
            self._load(resume_from)
        self.train_model = self._wrap(self.model)
        # a resumed (or resume-requested) run drops what an interrupted run logged after its checkpoint
        resume_step = self.at.step if cfg.run.resume is not None else None
        self.logger = MetricsLogger(
            self.out, enabled=self.info.is_main, tensorboard=cfg.run.tensorboard, resume_step=resume_step
        )
        self.final_eval: EvalResult | None = None
        self.final_eval_ema: EvalResult | None = None

    def _create_model(self, timm) -> torch.nn.Module:
        model = self.pipe.create_model(timm)
        if self.cfg.model.finetune:
            from seit.models import finetune_from

            loaded = finetune_from(model, self.cfg.model.finetune, self.pipe.class_names)
            if self.info.is_main:
                log.info("fine-tuning from %s: %s", self.cfg.model.finetune, loaded.summary())
        return model.to(self.device)

    def _create_optimizer(self):
        from timm.optim import create_optimizer_v2
        from timm.scheduler import CosineLRScheduler

        from seit.engine.layer_decay import layer_decay_param_groups

        o = self.cfg.optim
        lr = _scaled_lr(self.cfg, self.info.world_size)
        params = self.model
        if o.layer_decay is not None:
            params = layer_decay_param_groups(self.model, o.weight_decay, o.layer_decay)
        optimizer = create_optimizer_v2(params, o.opt, lr=lr, weight_decay=o.weight_decay)
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=o.epochs,
            lr_min=o.min_lr,
            warmup_t=o.warmup_epochs,
            warmup_lr_init=o.warmup_lr,
            t_in_epochs=True,
        )
        return optimizer, scheduler

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the steps run through: compiled and/or DDP; ``self.model`` stays the plain one."""
        return seit_dist.wrap_ddp(torch.compile(model) if self.cfg.run.compile else model, self.device)

    def _load(self, path: Path) -> None:
        try:
            ckpt = safe_torch_load(path)
        except CheckpointError as e:
            raise TrainingError(
                f"{e}; cannot resume from it. Resume from another checkpoint (--resume PATH), or start over with "
                "--restart"
            ) from None
        _check_resumable(ckpt, self.cfg, path, self.info.world_size)
        self.at = restore_run_state(ckpt, self.model, self.optimizer, self.scaler)
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
        if self.info.is_main:
            log.info("resumed %s at epoch %d, sample %d, step %d", path, *vars(self.at).values())

    def checkpoint(self) -> None:
        """``OUTPUT/last.pt``, atomically (main rank)."""
        if not self.info.is_main:
            return
        pipe = self.pipe
        state = run_state(
            self.model, self.optimizer, self.scaler, self.at, self.info.world_size, self.cfg, "seit.train"
        )
        state["ema"] = self.ema.module.state_dict() if self.ema is not None else None
        state["classifier"] = classifier_entry(pipe.meta(self.cfg), pipe.codebook_for_artifact())  # load_classifier
        atomic_torch_save(state, self.out / "last.pt")

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimizer step; every random draw in it is seeded from (seed, step), see ``self.pipe.part``."""
        seed = step_seed(self.cfg.run.seed, self.at.step)
        seed_everything(seed)
        self.pipe.reseed(seed)
        self.scheduler.step(self.at.epoch + self.at.samples / self.pipe.num_train)
        x, targets = self.pipe.train_batch(inputs, labels)
        with self.autocast:
            logits = self.train_model(x)
        loss = self.criterion(logits.float(), targets)
        if not torch.isfinite(loss):
            where = f"at epoch {self.at.epoch}, step {self.at.step} (lr {self.optimizer.param_groups[0]['lr']:.3g})"
            raise TrainingError(_non_finite_loss(loss.item(), where, x, self.model, self.out / "last.pt"))
        self._backward_and_step(loss)
        if self.ema is not None:
            self.ema.update(self.model, step=self.at.step)
        self.at.step += 1
        self.at.samples += self.batch_global
        return loss

    def _backward_and_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        optimizer_step(self.optimizer, self.scaler, self.model.parameters(), self.cfg.optim.clip_grad)

    def epoch_ends(self) -> bool:
        """Whether the epoch has no full global batch left (the loader drops the rest)."""
        return self.at.samples + self.batch_global > self.pipe.num_train

    def reached_max_steps(self) -> bool:
        return self.cfg.run.max_steps is not None and self.at.step >= self.cfg.run.max_steps

    def _log_due(self) -> bool:
        """Every --log-every steps, and the first and last step of an epoch or a run, however short."""
        at = self.at.step
        return at % self.cfg.run.log_every == 0 or at == 1 or self.epoch_ends() or self.reached_max_steps()

    def _log_step(self, loss: torch.Tensor, rate: float) -> dict[str, float]:
        values = seit_dist.mean_over_ranks({"loss": loss}, self.device)  # every rank's loss, not rank 0's
        values.update(lr=self.optimizer.param_groups[0]["lr"], epoch=self.at.epoch)
        self.logger.log("train", self.at.step, {**values, "samples_per_s": rate})
        return values

    def train_epoch(self, bar: runtime.RunProgress) -> bool:
        """Steps to the end of this epoch (or --max-steps); True when a stop signal ended it (checkpoint saved)."""
        self.model.train()
        bar.start_epoch(self.at.epoch, self.pipe.steps_per_epoch(self.at.samples))
        t0, seen, shown = time.perf_counter(), 0, {}
        for inputs, labels in self.pipe.train_loader(self.at.epoch, self.at.samples):
            loss = self.train_step(inputs, labels)
            seen += self.batch_global
            stopping = self.run.stop.agreed(self.device)
            if self._log_due() or stopping:
                values = self._log_step(loss, seen / max(time.perf_counter() - t0, 1e-9))
                shown = {"loss": f"{values['loss']:.4f}", "lr": f"{values['lr']:.2e}"}
            bar.step(**shown)
            if stopping:
                self.checkpoint()
                return True
            if self.cfg.run.ckpt_every and self.at.step % self.cfg.run.ckpt_every == 0:
                self.checkpoint()
            if self.reached_max_steps():
                break
        return False

    def evaluate(self) -> None:
        """Validation top-1 of the model (and its EMA), logged and announced."""
        epoch, step = self.at.epoch, self.at.step
        self.final_eval = evaluate(self.model, self.pipe, self.device, self.autocast)
        self.logger.log("eval", step, {"epoch": epoch, **self.final_eval.summary()})
        line = f"epoch {epoch}: top-1 {self.final_eval.top1:.2f}%"
        if self.ema is not None:
            self.final_eval_ema = evaluate(self.ema.module, self.pipe, self.device, self.autocast)
            self.logger.log("eval_ema", step, {"epoch": epoch, **self.final_eval_ema.summary()})
            line += f" (EMA {self.final_eval_ema.top1:.2f}%)"
        if self.info.is_main:
            log.info(line)

    def _check_can_start(self) -> int:
        """Steps of a full epoch; refuse data smaller than one global batch, announce a lagging EMA."""
        steps = self.pipe.steps_per_epoch(position=0)
        if steps == 0:
            raise TrainingError(
                f"the training data has {self.pipe.num_train} samples, fewer than one global batch "
                f"({self.cfg.optim.batch_size} x {self.info.world_size} processes): lower --batch-size"
            )
        if self.ema is not None and self.info.is_main:
            _warn_long_ema_horizon(self.cfg, steps)
        return steps

    def fit(self) -> TrainResult:
        """Epochs until --epochs (or --max-steps, or a stop signal); then the final artefacts."""
        cfg = self.cfg
        planned = self._check_can_start() * cfg.optim.epochs
        self.run.announce("seit train")
        if self.pipe.advice and self.info.is_main:
            log.warning(self.pipe.advice)
        bar = runtime.RunProgress(min(planned, cfg.run.max_steps or planned), self.at.step, cfg.optim.epochs)
        preempted = False
        while self.at.epoch < cfg.optim.epochs and not preempted:
            preempted = self.train_epoch(bar)
            if preempted:
                break
            epoch_done = self.epoch_ends()
            if epoch_done:
                self.at = Position(self.at.epoch + 1, 0, self.at.step)
            self.checkpoint()
            due = self.at.epoch % cfg.run.eval_every == 0 or self.at.epoch == cfg.optim.epochs
            if epoch_done and due and self.pipe.has_val:
                self.evaluate()
            if self.reached_max_steps():
                break
        bar.close()
        return self._finish(preempted)

    def _finish(self, preempted: bool) -> TrainResult:
        best = best_top1 = None
        if self.info.is_main and not preempted:
            meta, codebook = self.pipe.meta(self.cfg), self.pipe.codebook_for_artifact()
            save_classifier(self.out / MODEL_FILE, self.model, meta, codebook)
            if self.ema is not None:
                save_classifier(self.out / EMA_FILE, self.ema.module, meta, codebook)
            best, best_top1 = _record_best(self.cfg, self.out, self.logger, self.at.step)
        self.logger.close()
        seit_dist.barrier()
        return TrainResult(
            self.out,
            self.at.step,
            self.at.epoch,
            preempted,
            self.final_eval,
            self.final_eval_ema,
            best,
            best_top1,
        )


def ema_horizon(decay: float) -> float:
    """Steps an EMA of this decay averages over (1 / (1 - decay))."""
    return 1.0 / (1.0 - decay) if decay < 1.0 else math.inf


def _warn_long_ema_horizon(cfg: TrainConfig, steps_per_epoch: int) -> None:
    planned = cfg.optim.epochs * steps_per_epoch
    if cfg.run.max_steps is not None:
        planned = min(planned, cfg.run.max_steps)
    horizon = ema_horizon(cfg.optim.model_ema_decay)
    if horizon > planned:
        log.warning(
            f"EMA decay {cfg.optim.model_ema_decay} averages over ~{horizon:,.0f} steps, more than this run's "
            f"{planned:,}: the EMA weights will lag the model. Both are evaluated and "
            f"{Path(cfg.run.output) / BEST_FILE} names the better file (--model-ema-decay "
            f"{1 - 10 / max(planned, 10):.4g} would average over a tenth of the run)"
        )


def _record_best(cfg: TrainConfig, out: Path, logger: MetricsLogger, step: int) -> tuple[Path, float | None]:
    """Write best.json (and a "best" metrics record): the model or EMA weights, whichever did better.

    Chosen by validation top-1 at the last step (read back from metrics.jsonl, so a rerun of a finished run
    chooses the same); without that evaluation, by the EMA horizon: the EMA only if it spans fewer steps
    than the run took.
    """
    top1 = {}
    if logger.path.exists():
        for weights, kind in (("model", "eval"), ("ema", "eval_ema")):
            at_end = [r["top1"] for r in read_metrics(logger.path, kind) if r["step"] == step]
            if at_end:
                top1[weights] = at_end[-1]
    horizon = ema_horizon(cfg.optim.model_ema_decay)
    if not cfg.optim.model_ema:
        weights, chosen_by = "model", "no EMA"
    elif len(top1) == 2:
        weights, chosen_by = ("ema" if top1["ema"] > top1["model"] else "model"), "val top-1"
    else:
        weights, chosen_by = ("ema" if horizon <= step else "model"), "EMA horizon vs steps"
    figures = {"step": step, "top1": top1}
    if cfg.optim.model_ema:
        figures["ema_decay"] = cfg.optim.model_ema_decay
        figures["ema_horizon_steps"] = round(horizon, 1) if math.isfinite(horizon) else None
    best = write_best(out, weights, chosen_by, **figures)
    logger.log("best", step, {"file": best.name, "weights": weights, "chosen_by": chosen_by, "top1": top1})
    scores = ", ".join(f"{'EMA' if k == 'ema' else k} {v:.2f}%" for k, v in top1.items())
    log.info("final%s: best is %s (%s; %s)", " top-1 " + scores if scores else "", best.name, chosen_by, BEST_FILE)
    return best, top1.get(weights)


def _non_finite_loss(loss: float, where: str, inputs: torch.Tensor, model: torch.nn.Module, last: Path) -> str:
    """Why the loss is NaN/inf: bad inputs (a damaged codebook or data) or a run that diverged."""
    if not torch.isfinite(inputs).all():
        return (
            f"loss is {loss} {where}: the model's inputs hold NaN or infinite values; the training data (or its "
            "codebook, --codebook-path) is damaged"
        )
    weights = "" if all(torch.isfinite(p).all() for p in model.parameters()) else " (the weights are no longer finite)"
    keep = f" The weights of the last checkpoint can seed a new run: --finetune {last}." if last.exists() else ""
    return (
        f"loss is {loss} {where}: training diverged{weights}. Start again with a lower --lr, --clip-grad 1.0, or "
        f"--amp bf16 instead of fp16.{keep}"
    )


# Settings that may differ between the run that wrote a checkpoint and the run resuming it ("run": all but
# --seed, which _check_resumable compares on its own).
# optim.batch_size may change with the number of processes: the global batch is what must stay (checked apart)
_RESUME_MAY_CHANGE = {
    "run",
    "data.num_workers",
    "data.pixel_cache_mb",
    "data.streaming",
    "data.verify_shards",
    "optim.epochs",
    "optim.batch_size",
}


def _check_resumable(ckpt: dict, cfg: Any, path: Path, world_size: int, kind: str = "seit.train") -> None:
    """Refuse a checkpoint of another job (``kind``), global batch, seed or settings (the configs of `seit train`
    and `seit pretrain` share the section and field names this reads)."""
    if ckpt.get("kind") != kind:
        raise TrainingError(f"{path}: not a {kind} checkpoint (to start from weights, use --finetune)")
    saved, now = ckpt["config"], to_dict(cfg)
    per_process, processes = saved.get("optim", {}).get("batch_size"), ckpt.get("world_size", 1)
    if not isinstance(per_process, int):
        raise TrainingError(f"{path}: its settings name no --batch-size; not a complete {kind} checkpoint")
    was, now_global = per_process * processes, cfg.optim.batch_size * world_size
    if was != now_global:  # the steps, the data positions and the scaled lr all follow the global batch
        fix = f"--batch-size {was // world_size}" if was % world_size == 0 else f"a number of processes dividing {was}"
        raise TrainingError(
            f"{path} was written with a global batch of {was} ({per_process} x {processes} processes), now "
            f"{now_global} ({cfg.optim.batch_size} x {world_size}): another global batch is another run; resume "
            f"with {fix}"
        )
    seed = saved.get("run", {}).get("seed")
    if seed != cfg.run.seed:  # the one run setting the data order and every random draw derive from
        raise TrainingError(
            f"{path} was written with --seed {seed}, now --seed {cfg.run.seed}: another seed draws another data "
            f"order and augmentation; resume with --seed {seed}, or start a new run with --finetune"
        )
    diffs = []
    for section, values in now.items():
        if section in _RESUME_MAY_CHANGE:
            continue
        for key, value in values.items():
            if f"{section}.{key}" in _RESUME_MAY_CHANGE:
                continue
            old = saved.get(section, {}).get(key)
            if _normalise(old) != _normalise(value):
                diffs.append(f"--{key.replace('_', '-')}: checkpoint {old!r}, now {value!r}")
    if diffs:
        raise TrainingError(
            f"{path} was written with other settings; resuming would not continue the same run:\n  "
            + "\n  ".join(diffs)
            + "\nUse the checkpoint's settings, or start a new run with --finetune."
        )


def _normalise(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_normalise(v) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 12)
    return value
