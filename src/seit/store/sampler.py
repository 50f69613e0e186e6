"""Batch samplers for map-style token datasets under DDP: elastic training order, exact-once evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Unpack

import torch.utils.data

from seit.store.errors import StoreError
from seit.store.order import BatchOrder, FollowsGlobalBatches, GlobalBatches


class ElasticBatchSampler(FollowsGlobalBatches, torch.utils.data.Sampler[list[int]]):
    """Yields this rank's batches of store indices (see :class:`seit.store.order.GlobalBatches`).

    Pass it as ``batch_sampler`` to a DataLoader over a :class:`~seit.store.TokenDataset` (with
    ``collate_fn=collate``). Checkpoint ``state_dict(steps)`` with the steps done in this epoch; a run
    restored with ``load_state_dict`` continues the epoch exactly, at any world size.
    """

    def __init__(self, num_samples: int, batch_size: int, **order: Unpack[BatchOrder]) -> None:
        self.plan = GlobalBatches(num_samples, batch_size, **order)

    def __iter__(self) -> Iterator[list[int]]:
        for g in range(len(self.plan)):
            yield self.plan.batch(g).tolist()


class EvalBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Rank-strided split in store order, unpadded: rank r gets samples r, r+W, r+2W, ... in batches.

    Across ranks every sample is evaluated exactly once (ranks may differ by one batch; gather the
    per-rank results rather than all-reducing per step).
    """

    def __init__(self, num_samples: int, batch_size: int, *, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1 or not 0 <= rank < world_size:
            raise StoreError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}")
        self.indices = range(rank, num_samples, world_size)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(0, len(self.indices), self.batch_size):
            yield list(self.indices[i : i + self.batch_size])
