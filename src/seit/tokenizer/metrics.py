"""Reconstruction quality (PSNR, SSIM) and codebook health (usage, perplexity)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(images: torch.Tensor, reference: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """Per-image PSNR in dB [B] for images in [0, 1] (identical images give ``max_db``)."""
    mse = (images.float() - reference.float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(10 ** (-max_db / 10)))).clamp_max(max_db)


def gaussian_taps(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian [size]; the 2-D window is its outer product with itself."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(images: torch.Tensor, reference: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM [B] (Wang et al. 2004) for images in [0, 1].

    Gaussian-weighted local statistics over every full window position (no padding), K1=0.01,
    K2=0.03, data range 1, averaged over positions and channels. Images smaller than the window use
    a window of their size. The Gaussian is separable: two 1-D passes over the five statistics at once
    (8x faster than one 2-D pass per statistic on CPU, the tokenizer's periodic evaluation).
    """
    x, y = images.double(), reference.double()
    size = min(window, x.shape[-1], x.shape[-2])
    stats = torch.cat([x, y, x * x, y * y, x * y], 1)
    maps = stats.shape[1]
    taps = gaussian_taps(size, sigma).to(x.device)
    blurred = F.conv2d(stats, taps.view(1, 1, size, 1).expand(maps, 1, size, 1), groups=maps)
    blurred = F.conv2d(blurred, taps.view(1, 1, 1, size).expand(maps, 1, 1, size), groups=maps)
    mx, my, xx, yy, xy = blurred.chunk(5, 1)
    vx, vy, cxy = xx - mx * mx, yy - my * my, xy - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return ssim_map.flatten(1).mean(1).float()


class CodeUsage:
    """Counts of code ids seen; usage is the fraction of the codebook used, perplexity exp(entropy)."""

    def __init__(self, codebook_size: int) -> None:
        self.counts = torch.zeros(codebook_size, dtype=torch.long)

    def update(self, ids: torch.Tensor) -> None:
        self.counts += torch.bincount(ids.flatten().cpu(), minlength=len(self.counts))

    @property
    def used(self) -> int:
        return int((self.counts > 0).sum())

    @property
    def usage(self) -> float:
        return self.used / len(self.counts)

    @property
    def perplexity(self) -> float:
        return perplexity(self.counts)


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of the distribution given by ``counts``: 1 for one code, K for uniform use of K."""
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0].double() / total
    return math.exp(float(-(p * p.log()).sum()))
