"""Mixup / CutMix with timm's draws, made reproducible from a seed and independent of how a batch is split.

timm draws its mixing parameters from numpy's global RNG. Each call here seeds a private numpy state and
restores the global state afterwards, so the mix is a function of the seed alone (resumable with it) and
other numpy users are not disturbed. Sample i mixes with sample i ^ 1 of the global batch (timm: B-1-i of
the batch): the pairs stay inside every process's part of a global batch split into even parts, and the
draws are made for the whole global batch, so a process mixes its rows exactly as one process would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from timm.data import Mixup
from timm.data.mixup import cutmix_bbox_and_lam, mixup_target

from seit.augment.config import AugmentConfig, AugmentError, BatchSlice


@contextlib.contextmanager
def numpy_seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def partners(part: BatchSlice, device: torch.device | None = None) -> torch.Tensor:
    """Each row's partner in ``part``: global position p pairs with p ^ 1; a row whose partner lies outside
    the part (the last row of an odd part) is its own partner."""
    rows = torch.arange(part.size, device=device)
    mate = ((rows + part.start) ^ 1) - part.start
    return torch.where((mate >= 0) & (mate < part.size), mate, rows)


class SoftTargets:
    """Labels -> soft targets [B, C]: Mixup / CutMix (SeiT: CutMix alpha 1.0 per batch) with label smoothing."""

    def __init__(self, config: AugmentConfig, num_classes: int) -> None:
        self.num_classes = num_classes
        self.smoothing = config.smoothing
        self.mixup = None
        if config.mixing:  # timm's parameter draws (per batch, pair or element); mixing and targets are done here
            self.mixup = Mixup(
                mixup_alpha=config.mixup,
                cutmix_alpha=config.cutmix,
                cutmix_minmax=config.cutmix_minmax,
                prob=config.mixup_prob,
                switch_prob=config.mixup_switch_prob,
                mode=config.mixup_mode,
            )

    def __call__(
        self, x: torch.Tensor, labels: torch.Tensor, seed: int, part: BatchSlice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``x`` in place and return it with the soft targets; ``seed`` fixes the mixing draw.

        ``part``: where ``x`` sits in the step's global batch (default: it is the whole batch).
        """
        targets = mixup_target(labels, self.num_classes, 1.0, self.smoothing)
        if self.mixup is None:
            return x, targets
        part = part or BatchSlice.whole(x.shape[0])
        if x.shape[0] % 2 or part.start % 2 or part.size != x.shape[0]:
            raise AugmentError(
                f"Mixup/CutMix pairs the samples of a batch and needs an even batch, got {x.shape[0]} (rows "
                f"{part.start}:{part.stop} of {part.total}): use an even batch size with drop_last, or turn mixing "
                "off with --cutmix 0 --mixup 0"
            )
        mate = partners(part, x.device)
        with numpy_seeded(seed):
            if self.mixup.mode == "batch":
                lam = torch.full((x.shape[0],), self._mix_batch(x, mate), device=x.device)
            else:
                lam = self._mix_per_sample(x, mate, part, pairs=self.mixup.mode == "pair")
        lam = lam.to(targets.dtype).unsqueeze(1)
        return x, targets * lam + targets[mate] * (1.0 - lam)

    def _mix_batch(self, x: torch.Tensor, mate: torch.Tensor) -> float:
        """One draw for the global batch; CutMix copies only the pasted box of the partners."""
        lam, use_cutmix = self.mixup._params_per_batch()
        if lam == 1.0:
            return lam
        if not use_cutmix:
            mixed = x[mate].mul_(1.0 - lam)
            x.mul_(lam).add_(mixed)
            return lam
        (yl, yh, xl, xh), lam = self._box(x.shape, lam)
        x[:, :, yl:yh, xl:xh] = x[mate, :, yl:yh, xl:xh]
        return lam

    def _mix_per_sample(self, x: torch.Tensor, mate: torch.Tensor, part: BatchSlice, pairs: bool) -> torch.Tensor:
        """timm's 'elem' / 'pair' modes: a draw per sample (per pair) of the global batch, in global order."""
        per = 2 if pairs else 1
        count, first, local = part.total // per, part.start // per, part.size // per
        lams, cutmix = self.mixup._params_per_elem(count)
        original, out = x.clone(), torch.ones(x.shape[0])
        for k, (lam, use_cutmix) in enumerate(zip(lams.tolist(), cutmix.tolist(), strict=True)):
            if lam == 1.0:
                continue
            box = None
            if use_cutmix:  # drawn for every sample of the global batch, so the numpy stream stays in step
                box, lam = self._box(x.shape, lam)
            if not first <= k < first + local:
                continue
            for row in (2 * (k - first), 2 * (k - first) + 1) if pairs else (k - first,):
                out[row], source = lam, original[mate[row]]
                if box is None:
                    x[row] = x[row] * lam + source * (1.0 - lam)
                else:
                    yl, yh, xl, xh = box
                    x[row, :, yl:yh, xl:xh] = source[:, yl:yh, xl:xh]
        return out.to(x.device)

    def _box(self, shape: torch.Size, lam: float) -> tuple[tuple[int, int, int, int], float]:
        mixup = self.mixup
        return cutmix_bbox_and_lam(shape, lam, ratio_minmax=mixup.cutmix_minmax, correct_lam=mixup.correct_lam)
