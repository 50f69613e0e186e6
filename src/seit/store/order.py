"""Deterministic, elastic epoch order, shared by the map-style sampler and the streaming reader.

An epoch's global order is a permutation of all N samples that depends only on (seed, epoch) (and the
shuffle mode): exact global shuffle, chunk shuffle (fixed-size runs of consecutive samples permuted, and
samples permuted within each run: reads stay local for splits too big for RAM), or none. It is cut into
global batches of ``batch_size * world_size``; rank r takes the r-th slice of ``batch_size`` of each. The
only state is the number of samples the job has consumed in the epoch (``position``), so a run resumes
mid-epoch on any world size (and batch size) without repeating or skipping a sample.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

import numpy as np

from seit.store.errors import StoreError

SHUFFLE_MODES = ("global", "chunk", "none")
DEFAULT_CHUNK_SIZE = 16384
_WITHIN_CACHE = 64  # chunk permutations kept per order (a window of batches touches one or two)


def shuffle_mode(shuffle: bool | str) -> str:
    """True -> "global", False -> "none", or one of SHUFFLE_MODES."""
    if shuffle is True or shuffle is False:
        return "global" if shuffle else "none"
    if shuffle not in SHUFFLE_MODES:
        raise StoreError(f"shuffle {shuffle!r}: expected True, False or one of {SHUFFLE_MODES}")
    return shuffle


def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(words)))


class EpochOrder:
    """The order of epoch ``epoch``: ``take(a, b)`` is ``order[a:b]`` (store indices, int64)."""

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool | str = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if num_samples < 0 or seed < 0 or epoch < 0 or chunk_size < 1:
            raise StoreError(
                f"EpochOrder needs num_samples, seed, epoch >= 0 and chunk_size >= 1, got "
                f"{num_samples}, {seed}, {epoch}, {chunk_size}"
            )
        self.num_samples, self.seed, self.epoch = int(num_samples), int(seed), int(epoch)
        self.mode = shuffle_mode(shuffle)
        self.chunk_size = int(chunk_size)
        self._perm: np.ndarray | None = None
        self._within: dict[int, np.ndarray] = {}
        if self.mode == "chunk":
            n_chunks = math.ceil(self.num_samples / self.chunk_size)
            self._chunks = _rng(self.seed, self.epoch, 1).permutation(n_chunks)
            lengths = np.minimum(self.chunk_size, self.num_samples - self._chunks * self.chunk_size)
            self._slot_start = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return self.num_samples

    def of_epoch(self, epoch: int) -> EpochOrder:
        """The order of ``epoch`` with these settings (this one when it is that epoch)."""
        if epoch == self.epoch:
            return self
        return EpochOrder(self.num_samples, seed=self.seed, epoch=epoch, shuffle=self.mode, chunk_size=self.chunk_size)

    def take(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(self.num_samples, stop)
        if stop <= start:
            return np.zeros(0, dtype=np.int64)
        if self.mode == "none":
            return np.arange(start, stop, dtype=np.int64)
        if self.mode == "global":
            if self._perm is None:
                self._perm = _rng(self.seed, self.epoch, 0).permutation(self.num_samples)
            return self._perm[start:stop]
        pos = np.arange(start, stop, dtype=np.int64)
        slot = np.searchsorted(self._slot_start, pos, side="right") - 1
        out = np.empty(len(pos), dtype=np.int64)
        for k in np.unique(slot).tolist():
            sel = slot == k
            chunk = int(self._chunks[k])
            out[sel] = chunk * self.chunk_size + self._within_chunk(chunk)[pos[sel] - self._slot_start[k]]
        return out

    def _within_chunk(self, chunk: int) -> np.ndarray:
        if chunk not in self._within:
            if len(self._within) >= _WITHIN_CACHE:
                self._within.clear()
            length = min(self.chunk_size, self.num_samples - chunk * self.chunk_size)
            self._within[chunk] = _rng(self.seed, self.epoch, 2, chunk).permutation(length)
        return self._within[chunk]


class BatchOrder(TypedDict, total=False):
    """The options of an epoch's batch order (see :class:`GlobalBatches`), passed on as they are by
    :class:`~seit.store.ElasticBatchSampler` and :class:`~seit.store.TokenStream`."""

    seed: int
    epoch: int
    start: int
    rank: int
    world_size: int
    shuffle: bool | str
    drop_last: bool
    chunk_size: int


class GlobalBatches:
    """Rank ``rank``'s batches of one epoch: batch g is its slice of global batch
    ``order[start + g*B*W : start + (g+1)*B*W]``.

    ``drop_last``: drop a last partial global batch (training). Otherwise it is split across ranks as evenly
    as possible (a rank may get an empty batch when fewer samples than ranks remain).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool | str = True,
        drop_last: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise StoreError(
                f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, rank {rank}, world {world_size}"
            )
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.shuffle, self.drop_last, self.chunk_size = shuffle_mode(shuffle), bool(drop_last), int(chunk_size)
        self.set_epoch(epoch, start, seed=seed)

    def set_epoch(self, epoch: int, start: int = 0, *, seed: int | None = None) -> None:
        """Move to ``epoch``, beginning after its first ``start`` samples (global position)."""
        if not 0 <= start <= self.num_samples:
            raise StoreError(f"start {start} outside 0..{self.num_samples}")
        self.seed = self.seed if seed is None else int(seed)
        self.epoch, self.start = int(epoch), int(start)
        self.order = EpochOrder(
            self.num_samples, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle, chunk_size=self.chunk_size
        )

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        left = self.num_samples - self.start
        return left // self.global_batch_size if self.drop_last else math.ceil(left / self.global_batch_size)

    def bounds(self, g: int) -> tuple[int, int]:
        """Order positions [lo, hi) of this rank's batch ``g``."""
        if not 0 <= g < len(self):
            raise IndexError(f"batch {g} outside 0..{len(self) - 1}")
        lo = self.start + g * self.global_batch_size
        m = min(self.global_batch_size, self.num_samples - lo)
        if m == self.global_batch_size:
            a = lo + self.rank * self.batch_size
            return a, a + self.batch_size
        base, extra = divmod(m, self.world_size)
        a = lo + self.rank * base + min(self.rank, extra)
        return a, a + base + (self.rank < extra)

    def batch(self, g: int) -> np.ndarray:
        """Store indices of this rank's batch ``g``."""
        return self.order.take(*self.bounds(g))

    def position_after(self, steps: int) -> int:
        """Samples of the epoch consumed by the whole job after ``steps`` batches from ``start``."""
        return min(self.num_samples, self.start + max(0, steps) * self.global_batch_size)

    def state_dict(self, steps: int = 0) -> dict[str, Any]:
        """The resumable state after ``steps`` batches of this epoch segment (the trainer's step count)."""
        return {
            "num_samples": self.num_samples,
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position_after(steps),
            "shuffle": self.shuffle,
            "chunk_size": self.chunk_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_samples"] != self.num_samples:
            raise StoreError(
                f"the saved order is for {state['num_samples']} samples, this dataset has {self.num_samples}; "
                "resume with the same data"
            )
        same_order = state["shuffle"] == self.shuffle and (
            self.shuffle != "chunk" or state["chunk_size"] == self.chunk_size
        )
        if not same_order:
            raise StoreError(
                f"the saved order used shuffle={state['shuffle']!r} (chunk {state['chunk_size']}), this reader "
                f"{self.shuffle!r} (chunk {self.chunk_size}); resume with the same shuffle settings"
            )
        self.set_epoch(state["epoch"], state["position"], seed=state["seed"])


class FollowsGlobalBatches:
    """Epoch position and checkpoint state of a sampler or stream that reads batches from ``self.plan``."""

    plan: GlobalBatches

    def __len__(self) -> int:
        return len(self.plan)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.plan.set_epoch(epoch, start)

    def position_after(self, steps: int) -> int:
        return self.plan.position_after(steps)

    def state_dict(self, steps: int = 0) -> dict[str, Any]:
        return self.plan.state_dict(steps)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plan.load_state_dict(state)
