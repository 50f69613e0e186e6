"""Token-EDA on id grids [B, H, W]: synonym replacement and patch swap, per sample, batched on the device.

Definitions follow SeiT's token_transform.py: ``ReplaceSynonym`` swaps each token, with a per-token
probability, for one drawn uniformly from the first k entries of its synonym list (the list starts with
the code itself, so a drawn "replacement" may keep it); ``SwapCode`` exchanges two ps x ps squares, ps =
int(U(0, scale) * side), corners uniform in [0, side - ps - 1] and redrawn until their distance exceeds ps.
"""

from __future__ import annotations

import torch

SWAP_ATTEMPTS = 16  # redraws per sample; all 16 rejected has probability < 1e-7 at SeiT's scale (then no swap)


def sample_synonyms(
    count: int, height: int, width: int, k: int, token_prob: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Synonym picks [B, H, W] (int64) for ``count`` grids: the synonym index in [0, k) of each token drawn
    for replacement (probability ``token_prob``), -1 for a token kept."""
    shape = (count, height, width)
    draw = torch.rand(shape, generator=generator, device=device) < token_prob
    pick = torch.randint(0, k, shape, generator=generator, device=device)
    return torch.where(draw, pick, -1)


def replace_synonyms(ids: torch.Tensor, table: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """``ids`` (int64 [B, H, W]) with each picked token replaced by that entry of its synonym list."""
    return torch.where(picks >= 0, table[ids, picks.clamp_min(0)], ids)


def sample_swaps(
    batch: int, height: int, width: int, scale: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Patch-swap parameters [B, 5] = (size, y0, x0, y1, x1) drawn as SeiT's ``SwapCode.get_params``."""
    size = (min(height, width) * torch.rand(batch, generator=generator, device=device) * scale).long()
    span_y = (height - size).clamp_min(1).unsqueeze(1)  # corner in [0, side - size - 1]: side - size choices
    span_x = (width - size).clamp_min(1).unsqueeze(1)
    u = torch.rand(4, batch, SWAP_ATTEMPTS, generator=generator, device=device)
    y0, y1 = (u[0] * span_y).long(), (u[2] * span_y).long()
    x0, x1 = (u[1] * span_x).long(), (u[3] * span_x).long()
    ok = (y1 - y0) ** 2 + (x1 - x0) ** 2 > size.unsqueeze(1) ** 2
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first accepted draw = rejection sampling
    pick = [t.gather(1, first).squeeze(1) for t in (y0, x0, y1, x1)]
    size = torch.where(ok.any(dim=1), size, torch.zeros_like(size))
    return torch.stack([size, *pick], dim=1)


def swap_patches(ids: torch.Tensor, swaps: torch.Tensor) -> torch.Tensor:
    """``ids`` [B, H, W] with square (y0, x0) and square (y1, x1) exchanged per sample (size 0 = unchanged).

    Where the squares overlap the second copy wins, as in SeiT (it writes square 1 after square 0).
    """
    batch, height, width = ids.shape
    size, y0, x0, y1, x1 = (swaps[:, i].view(-1, 1, 1) for i in range(5))
    yy = torch.arange(height, device=ids.device).view(1, -1, 1)
    xx = torch.arange(width, device=ids.device).view(1, 1, -1)
    in0 = (yy >= y0) & (yy < y0 + size) & (xx >= x0) & (xx < x0 + size)
    in1 = (yy >= y1) & (yy < y1 + size) & (xx >= x1) & (xx < x1 + size)
    src_y = torch.where(in1, yy - y1 + y0, torch.where(in0, yy - y0 + y1, yy))
    src_x = torch.where(in1, xx - x1 + x0, torch.where(in0, xx - x0 + x1, xx))
    index = (src_y * width + src_x).reshape(batch, -1)
    return ids.reshape(batch, -1).gather(1, index).view(batch, height, width)
