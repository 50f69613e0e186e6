"""How well transformed token grids match the codes of transformed images: TokenAdapt against the token grid.

For images x and transforms T (``theta`` per image, e.g. drawn by
:func:`~seit.augment.tokenadapt.sample_geometry`), the reference is what the tokenizer
gives T(x) (centred crop grid, as training compares, :class:`~seit.tokenadapt.train.PairTargets`).
Compared with it, as the fraction of equal ids:

- ``tokenadapt``: the pair's convert -> T -> invert (what pre-training with ``--tokenadapt`` sees);
- ``token_nearest``: T applied to the id grid itself, each output token taking the id under its centre
  (a flip is then the exact mirror of the grid, a crop picks whole tokens);
- ``token_bilinear``: T applied to the code vectors (bilinear, as SeiT resizes embeddings), then the
  nearest code by cosine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from seit.augment.tokenadapt import warp
from seit.models.tokenadapt import TokenAdapt
from seit.tokenadapt.train import PairTargets
from seit.tokenizer.model import Tokenizer

METHODS = ("tokenadapt", "token_nearest", "token_bilinear")


@torch.no_grad()
def agreement(
    model: TokenAdapt,
    tokenizer: Tokenizer,
    batches: Iterable[torch.Tensor],
    transforms: Callable[[int], torch.Tensor],
) -> dict[str, float]:
    """Fractions of ids equal to the tokenizer's codes of the transformed images, per method (see module doc).

    ``batches``: uint8 images [B, 3, S, S] at the tokenizer's size. ``transforms(B)``: ``theta`` [B, 2, 3] from
    the crop grid's normalised coordinates to the whole map's (see :mod:`seit.augment.tokenadapt`).
    """
    model.eval()
    cfg = model.config
    device = next(model.parameters()).device
    codebook = tokenizer.classifier_codebook().float().to(device)
    targets = PairTargets(tokenizer, codebook, cfg)
    equal = dict.fromkeys(METHODS, 0)
    count = 0
    for images in batches:
        x = images.to(device).float().div_(255)
        theta = transforms(len(x))
        ids, ids_t = targets.codes(x, theta)
        want = targets.centre(ids_t)
        grid = codebook[ids].permute(0, 3, 1, 2)
        found = {
            "tokenadapt": model.invert(warp(model.convert(grid), theta, cfg.crop * cfg.scale)),
            "token_nearest": _warp_ids(ids, theta, cfg.crop),
            "token_bilinear": _nearest_code(warp(grid, theta, cfg.crop), codebook),
        }
        for name, got in found.items():
            equal[name] += int((got == want).sum())
        count += want.numel()
    return {name: equal[name] / max(count, 1) for name in METHODS}


def _warp_ids(ids: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """The id under each output token's centre; outside the grid -1 (never equal to a code)."""
    grid = F.affine_grid(theta.to(ids.device, torch.float32), [len(ids), 1, size, size], align_corners=False)
    shifted = (ids + 1).unsqueeze(1).float()  # 0 marks "outside"
    return F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False).squeeze(1).long() - 1


def _nearest_code(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The code [B, h, w] with the largest cosine to each vector of [B, D, h, w]."""
    return torch.einsum("bdhw,kd->bhwk", vectors, F.normalize(codebook, dim=-1)).argmax(-1)
