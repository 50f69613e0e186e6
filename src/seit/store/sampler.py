"""Batch samplers for map-style datasets under DDP: elastic epoch order, step-counted order, exact-once evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Unpack

import numpy as np
import torch.utils.data

from seit.store.errors import StoreError
from seit.store.order import DEFAULT_CHUNK_SIZE, BatchOrder, EpochOrder, FollowsGlobalBatches, GlobalBatches


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


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """This rank's batches for steps ``start`` to ``stop`` of a job counted in steps, not epochs.

    The job reads the endless sequence of epoch orders (:class:`~seit.store.order.EpochOrder` of epoch 0, 1,
    ...); step s takes global positions [s*B*W, (s+1)*B*W) of it and rank r its r-th slice of B, as
    :class:`~seit.store.order.GlobalBatches` slices a full global batch. A batch may span two epochs, so every
    batch is full, no sample is dropped at an epoch's end and fewer samples than one global batch still train.
    The only state is the step: a run resumes at any step exactly.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        start: int,
        stop: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool | str = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if num_samples < 1 or batch_size < 1 or not 0 <= rank < world_size or start < 0:
            raise StoreError(
                f"need num_samples, batch_size >= 1, 0 <= rank < world_size and start >= 0, got {num_samples}, "
                f"{batch_size}, rank {rank}, world {world_size}, start {start}"
            )
        self.num_samples, self.batch_size, self.rank, self.world_size = num_samples, batch_size, rank, world_size
        self.start, self.stop = start, stop
        self.order = EpochOrder(num_samples, seed=seed, epoch=0, shuffle=shuffle, chunk_size=chunk_size)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            first = (step * self.world_size + self.rank) * self.batch_size
            yield self.take(first, first + self.batch_size).tolist()

    def take(self, begin: int, end: int) -> np.ndarray:
        """Sample indices at positions [begin, end) of the endless sequence of epochs."""
        parts = []
        while begin < end:
            epoch, offset = divmod(begin, self.num_samples)
            self.order = self.order.of_epoch(epoch)
            count = min(end - begin, self.num_samples - offset)
            parts.append(self.order.take(offset, offset + count))
            begin += count
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


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
