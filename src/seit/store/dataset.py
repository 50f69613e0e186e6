"""TokenDataset: a map-style torch dataset over a token store whose ``__getitems__`` returns whole batches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from seit.store.reader import TokenStore


def collate(batch: Any) -> Any:
    """Identity ``collate_fn``: ``TokenDataset.__getitems__`` already returns a collated batch."""
    return batch


class TokenDataset(torch.utils.data.Dataset):
    """Samples of a token store as (ids, label); batches as (ids [B, *grid] int16/int32, labels [B] int64).

    Use with ``DataLoader(ds, batch_sampler=..., collate_fn=collate)``: the loader then calls
    ``__getitems__`` once per batch and only ids travel between processes (2 bytes per token for codebooks
    up to 32768 codes), never float features. The store opens lazily in each process (forked or spawned
    DataLoader workers each get their own memory maps), so the dataset pickles cheaply.
    """

    def __init__(
        self, path: str | os.PathLike, *, verify: bool = True, storage_options: dict[str, Any] | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.verify = verify
        self.storage_options = storage_options
        store = TokenStore.open(self.path, verify=verify, storage_options=storage_options)
        self._store: TokenStore | None = store
        self._pid = os.getpid()
        self.num_samples = len(store)
        self.grid_shape = store.grid_shape
        self.codebook_size = store.codebook_size
        self.class_names = store.class_names

    @property
    def store(self) -> TokenStore:
        if self._store is None or self._pid != os.getpid():
            self._store = TokenStore.open(self.path, verify=self.verify, storage_options=self.storage_options)
            self._pid = os.getpid()
        return self._store

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        ids, label = self.store[index]
        return torch.from_numpy(ids), label

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, labels = self.store.get_batch(indices)
        return torch.from_numpy(ids), torch.from_numpy(labels)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None
        return state
