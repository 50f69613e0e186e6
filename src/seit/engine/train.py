"""`seit train`: the DeiT recipe on token ids (or pixels, for the baseline), one loop for 1..N processes.

Reproducibility and elastic resume come from two choices:
- every random draw of a step (augmentation, Mixup/CutMix, drop-path) is seeded from (seed, step, rank), so
  no RNG state has to be checkpointed and a resumed run draws exactly what the uninterrupted run drew;
- the data position is the number of samples the epoch has consumed, and the epoch's global order depends
  only on (seed, epoch), so a run resumes mid-epoch, also on another number of processes at the same global
  batch (the same samples per step; the augmentation draws then differ, being seeded per rank).
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from seit.config import to_dict
from seit.engine.config import TrainConfig
from seit.engine.evaluate import EvalResult, evaluate
from seit.engine.metrics import MetricsLogger, read_metrics
from seit.engine.pipeline import build_pipeline
from seit.errors import SeitError
from seit.models.checkpoint import BEST_FILE, EMA_FILE, MODEL_FILE, classifier_entry, save_classifier, write_best
from seit.utils import dist as seit_dist
from seit.utils.progress import progress
from seit.utils.serialization import CheckpointError, atomic_torch_save, safe_torch_load


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


def step_seed(seed: int, step: int, rank: int) -> int:
    """A well-mixed 63-bit seed for one (seed, step, rank)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)


class Preemption:
    """Turns SIGTERM (and SIGUSR1, which SLURM can send before the deadline) into a flag read between steps."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Preemption:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            with contextlib.suppress(ValueError):  # not in the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, device: torch.device) -> bool:
        """True on every rank as soon as any rank was signalled (all ranks must stop at the same step)."""
        if not (dist.is_available() and dist.is_initialized()):
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


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
    with seit_dist.process_group(cfg.run.device) as info:
        return _train(cfg, info)


def _train(cfg: TrainConfig, info: seit_dist.DistInfo) -> TrainResult:
    import timm
    from timm.loss import SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler
    from timm.utils import ModelEmaV3

    from seit.engine.layer_decay import layer_decay_param_groups
    from seit.models import check_model_args

    check_model_args(cfg.model.model, cfg.model.embed_dim, cfg.model.num_heads)
    device = seit_dist.resolve_device(cfg.run.device)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
    out = Path(cfg.run.output)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.run.seed)

    pipe = build_pipeline(cfg, info, device)
    model = pipe.create_model(timm)
    if cfg.model.finetune:
        from seit.models import load_classifier, load_for_finetune

        dropped = load_for_finetune(model, load_classifier(cfg.model.finetune).model.state_dict())
        if info.is_main:
            print(f"[seit] fine-tuning from {cfg.model.finetune} (re-initialised: {dropped or 'nothing'})")
    model.to(device)
    ema = ModelEmaV3(model, decay=cfg.optim.model_ema_decay) if cfg.optim.model_ema else None
    lr = _scaled_lr(cfg, info.world_size)
    params = model
    if cfg.optim.layer_decay is not None:
        params = layer_decay_param_groups(model, cfg.optim.weight_decay, cfg.optim.layer_decay)
    optimizer = create_optimizer_v2(params, cfg.optim.opt, lr=lr, weight_decay=cfg.optim.weight_decay)
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=cfg.optim.epochs,
        lr_min=cfg.optim.min_lr,
        warmup_t=cfg.optim.warmup_epochs,
        warmup_lr_init=cfg.optim.warmup_lr,
        t_in_epochs=True,
    )
    autocast, scaler = _autocast(device, cfg.run.amp)

    epoch, position, global_step = 0, 0, 0
    resume_path = _resume_path(cfg, out)
    if resume_path is not None:
        try:
            ckpt = safe_torch_load(resume_path)
        except CheckpointError as e:
            raise TrainingError(
                f"{e}; cannot resume from it. Resume from another checkpoint (--resume PATH), or move it away and "
                "rerun to start over"
            ) from None
        _check_resumable(ckpt, cfg, resume_path, info.world_size)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.module.load_state_dict(ckpt["ema"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        epoch, position, global_step = ckpt["epoch"], ckpt["position"], ckpt["global_step"]
        if info.is_main:
            print(f"[seit] resumed {resume_path} at epoch {epoch}, sample {position}, step {global_step}", flush=True)

    train_model = torch.compile(model) if cfg.run.compile else model
    if info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    resume_step = global_step if resume_path is not None else None
    logger = MetricsLogger(out, enabled=info.is_main, tensorboard=cfg.run.tensorboard, resume_step=resume_step)

    def checkpoint(tag: str = "last") -> None:
        if not info.is_main:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "epoch": epoch,
            "position": position,
            "global_step": global_step,
            "world_size": info.world_size,
            "config": to_dict(cfg),
            "kind": "seit.train",
            "classifier": classifier_entry(pipe.meta(cfg), pipe.codebook_for_artifact()),  # load_classifier reads it
        }
        atomic_torch_save(state, out / f"{tag}.pt")

    final_eval = final_eval_ema = None
    preempted = False
    if pipe.steps_per_epoch(position=0) == 0:
        raise TrainingError(
            f"the training data has {pipe.num_train} samples, fewer than one global batch "
            f"({cfg.optim.batch_size} x {info.world_size} processes): lower --batch-size"
        )
    if ema is not None and info.is_main:
        _warn_long_ema_horizon(cfg, pipe.steps_per_epoch(position=0))
    criterion = SoftTargetCrossEntropy()
    batch_global = cfg.optim.batch_size * info.world_size
    with Preemption() as preemption:
        while epoch < cfg.optim.epochs and not preempted:
            loader = pipe.train_loader(epoch, position)
            model.train()
            bar = progress(total=pipe.steps_per_epoch(position), desc=f"epoch {epoch}", unit="step")
            t0, seen = time.perf_counter(), 0
            for inputs, labels in loader:
                seed = step_seed(cfg.run.seed, global_step, info.rank)
                seed_everything(seed)
                pipe.reseed(seed)
                scheduler.step(epoch + position / pipe.num_train)
                x, targets = pipe.train_batch(inputs, labels)
                with autocast:
                    logits = train_model(x)
                loss = criterion(logits.float(), targets)
                if not torch.isfinite(loss):
                    where = f"at epoch {epoch}, step {global_step} (lr {optimizer.param_groups[0]['lr']:.3g})"
                    raise TrainingError(_non_finite_loss(loss.item(), where, x, model, out / "last.pt"))
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if cfg.optim.clip_grad:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                if ema is not None:
                    ema.update(model, step=global_step)
                global_step += 1
                position += batch_global
                seen += batch_global
                bar.update(1)
                if global_step % cfg.run.log_every == 0 or position + batch_global > pipe.num_train:
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    values = {
                        "loss": loss.item(),
                        "lr": optimizer.param_groups[0]["lr"],
                        "epoch": epoch,
                        "samples_per_s": rate,
                    }
                    logger.log("train", global_step, values)
                    bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}", rate=f"{rate:.0f}/s")
                stop_now = cfg.run.max_steps is not None and global_step >= cfg.run.max_steps
                if preemption.agreed(device):
                    checkpoint()
                    preempted = True
                    break
                if cfg.run.ckpt_every and global_step % cfg.run.ckpt_every == 0:
                    checkpoint()
                if stop_now:
                    break
            bar.close()
            if preempted:
                break
            epoch_done = position + batch_global > pipe.num_train
            if epoch_done:
                epoch, position = epoch + 1, 0
            checkpoint()
            if epoch_done and (epoch % cfg.run.eval_every == 0 or epoch == cfg.optim.epochs) and pipe.has_val:
                final_eval = evaluate(model, pipe, device, autocast)
                logger.log("eval", global_step, {"epoch": epoch, **final_eval.summary()})
                if ema is not None:
                    final_eval_ema = evaluate(ema.module, pipe, device, autocast)
                    logger.log("eval_ema", global_step, {"epoch": epoch, **final_eval_ema.summary()})
                if info.is_main:
                    line = f"[seit] epoch {epoch}: top-1 {final_eval.top1:.2f}%"
                    if final_eval_ema is not None:
                        line += f" (EMA {final_eval_ema.top1:.2f}%)"
                    print(line, flush=True)
            if cfg.run.max_steps is not None and global_step >= cfg.run.max_steps:
                break

    best = best_top1 = None
    if info.is_main and not preempted:
        save_classifier(out / MODEL_FILE, model, pipe.meta(cfg), pipe.codebook_for_artifact())
        if ema is not None:
            save_classifier(out / EMA_FILE, ema.module, pipe.meta(cfg), pipe.codebook_for_artifact())
        best, best_top1 = _record_best(cfg, out, logger, global_step)
    logger.close()
    seit_dist.barrier()
    return TrainResult(out, global_step, epoch, preempted, final_eval, final_eval_ema, best, best_top1)


def ema_horizon(decay: float) -> float:
    """Steps an EMA of this decay averages over (1 / (1 - decay))."""
    return 1.0 / (1.0 - decay) if decay < 1.0 else math.inf


def _warn_long_ema_horizon(cfg: TrainConfig, steps_per_epoch: int) -> None:
    planned = cfg.optim.epochs * steps_per_epoch
    if cfg.run.max_steps is not None:
        planned = min(planned, cfg.run.max_steps)
    horizon = ema_horizon(cfg.optim.model_ema_decay)
    if horizon > planned:
        print(
            f"[seit] EMA decay {cfg.optim.model_ema_decay} averages over ~{horizon:,.0f} steps, more than this run's "
            f"{planned:,}: the EMA weights will lag the model. Both are evaluated and "
            f"{Path(cfg.run.output) / BEST_FILE} names the better file (--model-ema-decay "
            f"{1 - 10 / max(planned, 10):.4g} would average over a tenth of the run)",
            flush=True,
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
    print(f"[seit] final{' top-1 ' + scores if scores else ''}: best is {best.name} ({chosen_by}; {BEST_FILE})")
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


def _resume_path(cfg: TrainConfig, out: Path) -> Path | None:
    if cfg.run.resume is None:
        return None
    if cfg.run.resume == "auto":
        path = out / "last.pt"
        return path if path.exists() else None
    path = Path(cfg.run.resume)
    if not path.exists():
        raise TrainingError(f"{path}: checkpoint to resume from does not exist (use --resume auto to start fresh)")
    return path


# Settings that may differ between the run that wrote a checkpoint and the run resuming it ("run": all but
# --seed, which _check_resumable compares on its own).
# optim.batch_size may change with the number of processes: the global batch is what must stay (checked apart)
_RESUME_MAY_CHANGE = {
    "run",
    "data.num_workers",
    "data.streaming",
    "data.verify_shards",
    "optim.epochs",
    "optim.batch_size",
}


def _check_resumable(ckpt: dict, cfg: TrainConfig, path: Path, world_size: int) -> None:
    if ckpt.get("kind") != "seit.train":
        raise TrainingError(f"{path}: not a seit training checkpoint (to start from weights, use --finetune)")
    saved, now = ckpt["config"], to_dict(cfg)
    per_process, processes = saved.get("optim", {}).get("batch_size"), ckpt.get("world_size", 1)
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
