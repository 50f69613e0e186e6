"""Training a ViT-VQGAN tokenizer on a folder of images (one process, or many with torchrun).

Losses: L2 (+ optional L1) reconstruction, the reference's codebook/commitment loss on L2-normalised
codes, an optional LPIPS-style perceptual loss (user-supplied VGG16 weights) and an optional PatchGAN
hinge loss with an adaptive weight from ``--disc-start``. Codes unused for ``--dead-code-steps`` steps
are restarted from the current encoder outputs so the codebook does not collapse.

Outputs in ``--out``: ``checkpoint.pt`` (everything to resume, written atomically every
``--save-every`` steps and on SIGTERM/SIGINT), ``log.jsonl`` (one JSON object per logged step and per
evaluation), ``samples/step_NNNNNNN.png`` (originals over reconstructions at each evaluation), and at
the end ``tokenizer.safetensors`` (weights + config) that :func:`seit.tokenizer.load_tokenizer` reads.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from seit.config import from_dict, to_dict
from seit.images import ImageDataset, ImageSkipped, list_images, load_image
from seit.interop.enhancing import config_from_yaml
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
from seit.utils.io import atomic_open
from seit.utils.progress import progress
from seit.utils.serialization import atomic_torch_save, safe_torch_load


class TrainError(TokenizerError):
    """A training run that cannot start or continue as asked."""


@dataclass
class TrainResult:
    step: int
    finished: bool  # False when a signal stopped the run (checkpoint saved; rerun with --resume)
    tokenizer_path: Path | None
    last: dict[str, float]


def tokenizer_config(cfg: TrainConfig) -> TokenizerConfig:
    base = config_from_yaml(cfg.config) if cfg.config else preset(cfg.preset)
    changes = {k: v for k, v in (("image_size", cfg.image_size), ("codebook_size", cfg.codebook_size)) if v}
    return base.replace(**changes) if changes else base


class StepBatches:
    """Sample indices for every step from ``start``: epochs are seeded permutations, so any step can resume.

    Step s covers global positions [s*B*W, (s+1)*B*W) of the endless concatenation of permutations;
    rank r takes its own B of them.
    """

    def __init__(self, n: int, batch: int, seed: int, rank: int, world: int, start: int, stop: int) -> None:
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.start, self.stop = start, stop
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _index(self, position: int) -> int:
        epoch = position // self.n
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return int(self._perm[position % self.n])

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            first = (step * self.world + self.rank) * self.batch
            yield [self._index(p) for p in range(first, first + self.batch)]


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


class StopSignal:
    """SIGTERM / SIGINT set a flag; the loop saves a checkpoint and stops at the end of the step."""

    def __init__(self) -> None:
        self.raised = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


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
    def update(self, ids: torch.Tensor, latents: torch.Tensor, step: int, model: Tokenizer, opt, rng) -> None:
        used = torch.bincount(ids.flatten(), minlength=len(self.last_seen)) > 0
        if dist.is_available() and dist.is_initialized():
            used_any = used.to(torch.int32)
            dist.all_reduce(used_any, op=dist.ReduceOp.MAX)
            used = used_any.bool()
        self.last_seen[used.cpu()] = step
        if self.patience <= 0:
            return
        dead = torch.nonzero(step - torch.maximum(self.last_seen, self.last_reset) >= self.patience).flatten()
        if not len(dead):
            return
        weight = model.quantizer.embedding.weight
        pool = latents.reshape(-1, latents.shape[-1])
        picks = torch.randint(len(pool), (len(dead),), generator=rng).to(pool.device)
        rows = pool[picks].to(weight.dtype)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(rows, src=0)  # every rank takes rank 0's rows
        index = dead.to(weight.device)
        weight[index] = rows
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in opt.state.get(weight, {}):
                opt.state[weight][moment][index] = 0
        self.last_reset[dead] = step
        self.restarted += len(dead)


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a training job as ``cfg`` describes; returns where it stopped."""
    with seit_dist.process_group(cfg.device) as info:
        return _train(cfg, info)


def _train(cfg: TrainConfig, info: seit_dist.DistInfo) -> TrainResult:
    device = seit_dist.resolve_device(cfg.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank)
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not cfg.resume:
        raise TrainError(
            f"{out} already holds a training run (checkpoint.pt); pass --resume to continue it or choose another --out"
        )
    samples = list_images(cfg.images).samples
    tok_cfg = tokenizer_config(cfg)
    state = safe_torch_load(ckpt_path) if cfg.resume and ckpt_path.exists() else None
    if state is not None and from_dict(TokenizerConfig, state["config"]) != tok_cfg:
        raise TrainError(
            f"{ckpt_path} was trained with {from_dict(TokenizerConfig, state['config'])}, not {tok_cfg}; "
            "give the same model options when resuming"
        )

    torch.manual_seed(cfg.seed)
    model = Tokenizer(tok_cfg, beta=cfg.beta).to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.99))
    disc = disc_opt = perceptual = None
    if cfg.disc_start is not None:
        disc = PatchDiscriminator(cfg.disc_layers).to(device)
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    if cfg.perceptual_weights:
        perceptual = PerceptualLoss.from_files(cfg.perceptual_weights, cfg.lpips_weights).to(device)
    rng = torch.Generator().manual_seed(cfg.seed + 1)
    codes = DeadCodes(tok_cfg.codebook_size, cfg.dead_code_steps)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if disc is not None and "disc" in state:
            disc.load_state_dict(state["disc"])
            disc_opt.load_state_dict(state["disc_optimizer"])
        rng.set_state(state["rng"])
        codes.load_state_dict(state["codes"])
        step = int(state["step"])

    def save() -> None:
        if info.is_main:
            _save_checkpoint(ckpt_path, cfg, step, model, opt, disc, disc_opt, rng, codes)
        seit_dist.barrier()

    net, d_net = _ddp(model, device, info.enabled), _ddp(disc, device, info.enabled)
    log = _Log(out / "log.jsonl", step) if info.is_main else None
    eval_batch = _eval_batch(cfg, tok_cfg, samples) if info.is_main else None
    workers = default_workers() if cfg.num_workers is None else cfg.num_workers
    loader = DataLoader(
        ImageDataset(samples, tok_cfg.image_size, cfg.resize),
        batch_sampler=StepBatches(len(samples), cfg.batch_size, cfg.seed, info.rank, info.world_size, step, cfg.steps),
        num_workers=workers,
        collate_fn=_stack_good,
        pin_memory=device.type == "cuda",
        worker_init_fn=_ignore_stop_signals,
    )
    last: dict[str, float] = {}
    previous: torch.Tensor | None = None
    reported: set[int] = set()
    finished = True
    seen, tick = 0, time.perf_counter()
    with (
        StopSignal() as stop,
        progress(total=cfg.steps, initial=step, desc="train", unit="step") as bar,
        contextlib.closing(log) if log is not None else contextlib.nullcontext(),
        cpu_threads(device, workers),
    ):
        for images, bad in loader:
            for i, reason in bad:
                if i not in reported and log is not None:
                    bar.write(f"skipping {samples[i].key}: {reason}", file=sys.stderr)
                reported.add(i)
            if images is None:  # every image of this batch was unreadable: repeat the last batch
                if previous is None:
                    raise TrainError(f"{cfg.images}: the first batch has no readable image; see the messages above")
                images = previous
            previous = images
            x = images.to(device, non_blocking=True).float().div_(255)
            if cfg.hflip:
                flip = torch.rand(len(x), generator=rng) < 0.5
                x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(-1), x)
            for optimizer in (opt, disc_opt):
                for group in optimizer.param_groups if optimizer is not None else ():
                    group["lr"] = lr_at(cfg, step)
            metrics, result = _train_step(cfg, net, model, d_net, opt, disc_opt, perceptual, x, step, device)
            step += 1
            codes.update(result.ids, result.latents, step, model, opt, rng)
            del result
            seen += len(x)

            if step % cfg.log_every == 0 or step == cfg.steps:
                metrics = _mean_over_ranks(metrics, device)
                now = time.perf_counter()
                metrics.update(
                    lr=lr_at(cfg, step - 1),
                    codes_active=codes.active_fraction(step),
                    codes_restarted=float(codes.restarted),
                    images_per_s=seen * info.world_size / max(now - tick, 1e-9),
                )
                seen, tick, last = 0, now, metrics
                if log is not None:
                    log.write({"step": step, "split": "train", **metrics})
                    bar.set_postfix({k: f"{metrics[k]:.4g}" for k in ("loss", "psnr", "usage")})
            bar.update(1)
            if eval_batch is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                log.write({"step": step, "split": "eval", **_evaluate(model, eval_batch, out, step, device, cfg)})
            stopping = _any_rank(stop.raised, device, info.enabled)
            if step % cfg.save_every == 0 or step == cfg.steps or stopping:
                save()
            if stopping and step < cfg.steps:
                finished = False
                if log is not None:
                    message = f"stopped by a signal at step {step}; {ckpt_path} saved, rerun with --resume to continue"
                    bar.write(message, file=sys.stderr)
                break
    path = save_tokenizer(model, out / "tokenizer.safetensors") if finished and info.is_main else None
    seit_dist.barrier()
    return TrainResult(step, finished, path, last)


def _ignore_stop_signals(worker_id: int) -> None:
    """Workers leave SIGTERM/SIGINT to the main process, which saves and then shuts them down."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ddp(module: torch.nn.Module | None, device: torch.device, enabled: bool):
    if module is None or not enabled:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def _stack_good(items: list) -> tuple[torch.Tensor | None, list[tuple[int, str]]]:
    good = [torch.from_numpy(image) for _, image, _, _ in items if image is not None]
    bad = [(i, reason) for i, image, _, reason in items if image is None]
    return (torch.stack(good) if good else None), bad


def _train_step(cfg, net, model, d_net, opt, disc_opt, perceptual, x, step, device):
    """One optimizer step (and one discriminator step once the GAN is on); metrics stay on the device."""
    with autocast(device, cfg.precision):
        out = net(x)
    rec = out.reconstructions.float()
    l2 = F.mse_loss(rec, x)
    l1 = (rec - x).abs().mean()
    nll = cfg.l2_weight * l2 + cfg.l1_weight * l1
    metrics: dict[str, torch.Tensor] = {"l2": l2.detach(), "l1": l1.detach(), "vq": out.vq_loss.detach()}
    if perceptual is not None:
        with autocast(device, cfg.precision):
            p_loss = perceptual(rec, x)
        nll = nll + cfg.perceptual_weight * p_loss
        metrics["perceptual"] = p_loss.detach()
    loss = nll + cfg.codebook_weight * out.vq_loss
    gan_on = d_net is not None and step >= cfg.disc_start
    if gan_on:
        # The discriminator's gradients from this pass are discarded: no need to all-reduce them.
        no_sync = d_net.no_sync() if isinstance(d_net, DistributedDataParallel) else contextlib.nullcontext()
        with autocast(device, cfg.precision), no_sync:
            g_loss = generator_loss(d_net(rec).float())
        d_weight = cfg.adversarial_weight * adaptive_weight(nll, g_loss, model.decoder.last_layer)
        loss = loss + d_weight * g_loss
        metrics.update(g_loss=g_loss.detach(), d_weight=d_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    if gan_on:
        with autocast(device, cfg.precision):
            d_loss = hinge_d_loss(d_net(x).float(), d_net(rec.detach()).float())
        disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        disc_opt.step()
        metrics["d_loss"] = d_loss.detach()
    counts = torch.bincount(out.ids.flatten(), minlength=model.codebook_size)
    p = counts.double() / counts.sum()
    metrics.update(
        loss=loss.detach(),
        psnr=psnr(rec.detach().clamp(0, 1), x).mean(),
        usage=(counts > 0).double().mean(),
        perplexity=torch.special.entr(p).sum().exp(),
    )
    return metrics, out


def _mean_over_ranks(metrics: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    names = sorted(metrics)
    values = torch.stack([metrics[k].detach().double().to(device) for k in names])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return dict(zip(names, values.tolist()))


def _any_rank(flag: bool, device: torch.device, enabled: bool) -> bool:
    if not enabled:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


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
def _evaluate(model: Tokenizer, images: torch.Tensor, out: Path, step: int, device, cfg: TrainConfig) -> dict:
    model.eval()
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


def _save_checkpoint(path, cfg, step, model, opt, disc, disc_opt, rng, codes: DeadCodes) -> None:
    state = {
        "format": TRAIN_FORMAT,
        "config": to_dict(model.config),
        "train": to_dict(cfg),
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": rng.get_state(),
        "codes": codes.state_dict(),
    }
    if disc is not None:
        state.update(disc=disc.state_dict(), disc_optimizer=disc_opt.state_dict())
    atomic_torch_save(state, path)


class _Log:
    """Append-only JSONL; on resume, lines past the checkpoint's step (a crash's leftovers) are dropped."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= resume_step]
            with atomic_open(path, "w") as f:
                f.writelines(line + "\n" for line in kept)
        self.file = open(path, "a")  # noqa: SIM115 (kept open for the whole run)

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # unreadable (torn) line: drop it
