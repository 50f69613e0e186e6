"""Emb-Noise (SeiT) and ColorAdapt (SeiT++) on embedded token maps, channels-last [B, m, m, D]."""

from __future__ import annotations

import torch

STD_FLOOR = 1e-6  # a constant channel (one code everywhere) has std 0; SeiT would divide by zero there


def emb_noise(shape: torch.Size, scale: float, std: float, generator: torch.Generator) -> torch.Tensor:
    """SeiT's Emb-Noise for maps of ``shape`` [n, m, m, D]: N(0, scale^2) per sample and channel plus
    N(0, std^2) per element, to be added to the embeddings."""
    batch, _, _, channels = shape
    opts = {"generator": generator, "device": generator.device}
    offset = torch.randn(batch, 1, 1, channels, **opts).mul_(scale)
    return torch.randn(shape, **opts).mul_(std).add_(offset)


def color_adapt(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """x with each channel's spatial mean and std (unbiased) replaced by those of ``reference``.

    SeiT++'s ColorAdapt (a token-map analogue of colour transfer); SeiT++ takes sample B-1-i of the batch as
    the reference of sample i, the pipeline its neighbour i ^ 1 (``seit.augment.mix.partners``).
    """
    centred, std = _centre(x)
    ref_centred, ref_std = _centre(reference)
    return centred * (ref_std / std.clamp_min(STD_FLOOR)) + (reference - ref_centred)[:, :1, :1]


def _centre(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x minus its spatial mean, and the unbiased spatial std (a two-pass form: torch.std over the
    non-innermost dims of a channels-last tensor is several times slower on CPU)."""
    centred = x - x.mean(dim=(1, 2), keepdim=True)
    count = x.shape[1] * x.shape[2]
    return centred, (centred.square().sum(dim=(1, 2), keepdim=True) / max(count - 1, 1)).sqrt()
