"""How good is a tokenizer on a set of images: PSNR, SSIM, codebook usage and a picture to look at."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from seit.images import DEFAULT_MAX_PIXELS, Sample, list_images
from seit.tokenizer.amp import autocast
from seit.tokenizer.checkpoint import load_tokenizer
from seit.tokenizer.config import EvalConfig
from seit.tokenizer.encode import SkipRecord, cpu_threads, default_workers, image_batches, write_skip_report
from seit.tokenizer.metrics import CodeUsage, psnr, ssim
from seit.tokenizer.model import Tokenizer
from seit.tokenizer.render import to_uint8, write_comparison
from seit.utils.dist import resolve_device
from seit.utils.io import atomic_write_json
from seit.utils.progress import progress


@dataclass
class EvalReport:
    images: int
    psnr: float  # dB, mean over images
    ssim: float  # mean over images
    codes_used: int
    codebook_size: int
    usage: float  # codes_used / codebook_size
    perplexity: float  # exp(entropy) of the code histogram
    skipped: list[SkipRecord] = field(default_factory=list)

    def to_json(self) -> dict:
        out = asdict(self)
        out["skipped"] = len(self.skipped)
        return out


@torch.inference_mode()
def evaluate_tokenizer(
    tokenizer: Tokenizer,
    samples: list[Sample],
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    device: str | torch.device = "cpu",
    resize: str = "squash",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precision: str = "auto",
    grid_path: str | os.PathLike | None = None,
    grid_images: int = 8,
) -> EvalReport:
    """Encode and decode every sample; metrics on the clamped reconstructions against the inputs.

    ``grid_path``: also write a PNG of the first ``grid_images`` originals above their reconstructions.
    """
    device = torch.device(device)
    tokenizer = tokenizer.to(device).eval()
    usage = CodeUsage(tokenizer.codebook_size)
    psnrs, ssims, skipped = [], [], []
    shown_in, shown_out = [], []
    workers = default_workers() if num_workers is None else num_workers
    batches = image_batches(
        samples,
        size=tokenizer.config.image_size,
        batch_size=batch_size,
        num_workers=workers,
        resize=resize,
        max_pixels=max_pixels,
    )
    with progress(total=len(samples), desc="eval", unit="img") as bar, cpu_threads(device, workers):
        for batch in batches:
            bar.update(batch.count)
            skipped.extend(batch.skipped)
            if not batch.keys:
                continue
            images = batch.images.to(device).float().div_(255)
            with autocast(device, precision):
                out = tokenizer(images)
            recon = out.reconstructions.float().clamp(0, 1)
            usage.update(out.ids)
            psnrs.append(psnr(recon, images).cpu())
            ssims.append(ssim(recon, images).cpu())
            if sum(len(x) for x in shown_in) < grid_images:
                shown_in.append(to_uint8(images))
                shown_out.append(to_uint8(recon))
    n = sum(len(x) for x in psnrs)
    if grid_path is not None and n:
        write_comparison(grid_path, np.concatenate(shown_in)[:grid_images], np.concatenate(shown_out)[:grid_images])
    return EvalReport(
        images=n,
        psnr=float(torch.cat(psnrs).mean()) if n else float("nan"),
        ssim=float(torch.cat(ssims).mean()) if n else float("nan"),
        codes_used=usage.used,
        codebook_size=tokenizer.codebook_size,
        usage=usage.usage,
        perplexity=usage.perplexity,
        skipped=skipped,
    )


def evaluate_images(cfg: EvalConfig) -> EvalReport:
    """``seit tokenizer eval``: list the images, load the tokenizer, evaluate, write the optional files."""
    samples = list_images(cfg.images).samples
    if cfg.max_images is not None and cfg.max_images < len(samples):
        picks = np.linspace(0, len(samples) - 1, cfg.max_images).round().astype(int)
        samples = [samples[i] for i in picks]
    device = resolve_device(cfg.device)
    tokenizer = load_tokenizer(cfg.tokenizer, config=cfg.config, allow_legacy_pickle=cfg.allow_legacy_pickle)
    report = evaluate_tokenizer(
        tokenizer,
        samples,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        device=device,
        resize=cfg.resize,
        precision=cfg.precision,
        grid_path=cfg.grid,
        grid_images=cfg.grid_images,
    )
    if cfg.json not in (None, "-"):  # "-" (--json alone): the CLI prints the report, as it always does
        atomic_write_json(cfg.json, report.to_json())
    if cfg.skipped:
        write_skip_report(cfg.skipped, report.skipped)
    return report
