"""TokenStream: an IterableDataset that streams a token store from any fsspec URL in the elastic global order.

Same batches and state as :class:`~seit.store.ElasticBatchSampler` over the same store; the difference
is how bytes arrive. Each DataLoader worker ``w`` of ``n`` yields its rank's global batches ``g`` with
``g % n == w`` (so the loader's round-robin delivers them in order) and reads only the byte ranges of its
own samples, merging nearby ranges into one request:

- ``shuffle="global"``: exact global shuffle; a worker fetches all its samples of the epoch up front (for
  a remote store they are held in RAM: the worker's 1/(ranks*workers) share of the split).
- ``shuffle="chunk"``: for splits too big for RAM; the order permutes runs of ``chunk_size`` consecutive
  samples and the samples within each run, so a window of batches reads from one or two runs.
- ``shuffle=False`` / ``"none"``: store order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Unpack

import numpy as np
import torch

from seit.store.order import BatchOrder, FollowsGlobalBatches, GlobalBatches
from seit.store.reader import TokenStore


class TokenStream(FollowsGlobalBatches, torch.utils.data.IterableDataset):
    """Yields this rank's batches ``(ids [B, *grid] int16/int32, labels [B] int64)``.

    Use ``DataLoader(stream, batch_size=None, num_workers=...)``. Call ``set_epoch`` (or
    ``load_state_dict``) before creating each epoch's iterator. ``verify``: download and check each shard's
    sha256 before using it (costs whole-shard reads; by default each shard's index CRC and every sample's
    own checksum are checked while streaming, so damage raises instead of giving wrong data; run
    ``seit store verify`` once after copying a store to find damage anywhere).
    """

    def __init__(
        self,
        url: str | os.PathLike,
        batch_size: int,
        *,
        verify: bool = False,
        storage_options: dict[str, Any] | None = None,
        **order: Unpack[BatchOrder],
    ) -> None:
        self.url = os.fspath(url)
        self.verify = verify
        self.storage_options = storage_options
        self._store: TokenStore | None = TokenStore.open(self.url, verify=verify, storage_options=storage_options)
        self._pid = os.getpid()
        self.plan = GlobalBatches(len(self._store), batch_size, **order)

    @property
    def store(self) -> TokenStore:
        if self._store is None or self._pid != os.getpid():
            self._store = TokenStore.open(self.url, verify=self.verify, storage_options=self.storage_options)
            self._pid = os.getpid()
        return self._store

    def _window(self, num_workers: int) -> int:
        """How many of a worker's batches to fetch in one go."""
        plan = self.plan
        if plan.shuffle == "global":
            return max(1, len(plan))
        return max(1, plan.chunk_size // (plan.global_batch_size * num_workers))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        store = self.store
        mine = range(worker, len(self.plan), num_workers)
        step = self._window(num_workers)
        for w in range(0, len(mine), step):
            batches = [self.plan.batch(g) for g in mine[w : w + step]]
            needed = np.unique(np.concatenate(batches))
            blobs = store.read_blobs(needed)
            for batch in batches:
                where = np.searchsorted(needed, batch)
                ids = store.decode(batch, [blobs[i] for i in where.tolist()])
                yield torch.from_numpy(ids), torch.from_numpy(store.labels_of(batch))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None
        return state
