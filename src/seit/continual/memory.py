"""The replay memory: exemplars of past classes within a budget in bytes, chosen at random or by herding.

Bytes are what keeping a sample takes, every byte counted: a token exemplar is its encoded page in the store
(ids under the codec, with the page's checksum), its 4-byte offset and its label; a pixel exemplar is its
image file as stored (the dataset's JPEG) and its label. A token memory also needs, once, what its pages are
decoded with: the store's codec state files and its groups' table headers; these are reserved from the budget
before any exemplar. The codebook is the token ViT's input table (saved with the classifier, as the pixel ViT's
patch weights are), not part of the memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from seit.store.ans_pages import GroupedBlob

LABEL_BYTES = 2  # an int16 label per exemplar (the store's label item size for up to 32,768 classes)
OFFSET_BYTES = 4  # a token page's offset in its shard's index


def _page(blob) -> bytes | memoryview:
    """A sample's own bytes (a grouped codec's blob also carries its group's shared header)."""
    return blob.body if isinstance(blob, GroupedBlob) else blob


def token_exemplar_bytes(store, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Bytes of keeping each of ``indices`` of a :class:`~seit.store.TokenStore` as tokens."""
    blobs = store.read_blobs(np.asarray(indices, dtype=np.int64))
    return np.array([len(_page(b)) + OFFSET_BYTES + LABEL_BYTES for b in blobs], dtype=np.int64)


def token_memory_reserve(store, chunk: int = 4096) -> int:
    """Bytes a token memory of this store needs once to decode its pages: every codec state file and every
    distinct group header of the store (all reserved, whichever the exemplars turn out to use)."""
    codecs = sum(int(c.get("bytes", 0)) for c in store.manifest.get("codecs", []))
    headers = set()
    for start in range(0, len(store), chunk):
        for blob in store.read_blobs(np.arange(start, min(start + chunk, len(store)))):
            if isinstance(blob, GroupedBlob):
                headers.add(bytes(blob.header))
    return codecs + sum(len(h) for h in headers)


def pixel_exemplar_bytes(paths: Sequence[str]) -> np.ndarray:
    """Bytes of keeping each image file as it is stored (its compressed file, not decoded pixels)."""
    return np.array([os.path.getsize(p) + LABEL_BYTES for p in paths], dtype=np.int64)


def herding_order(features: torch.Tensor, count: int) -> list[int]:
    """iCaRL's herding: greedily pick the samples whose running mean stays closest to the class mean.

    ``features`` [n, d] (L2-normalised here, as iCaRL); returns the first ``count`` picks, best first, so any
    prefix is the herding selection of that size.
    """
    f = torch.nn.functional.normalize(features.double(), dim=1)
    mean = f.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mean)
    available = torch.ones(len(f), dtype=torch.bool)
    for k in range(1, min(count, len(f)) + 1):
        distance = ((mean - (running + f) / k) ** 2).sum(1)
        distance[~available] = float("inf")
        pick = int(distance.argmin())
        chosen.append(pick)
        available[pick] = False
        running += f[pick]
    return chosen


def random_order(count: int, seed: int, label: int) -> list[int]:
    """A seeded permutation of a class's samples (one stream per (seed, class))."""
    return np.random.default_rng([seed, label]).permutation(count).tolist()


def fits(sizes: np.ndarray, share: int) -> int:
    """How many of ``sizes`` (in order) fit in ``share`` bytes."""
    return int(np.searchsorted(np.cumsum(sizes), share, side="right"))


class ReplayMemory:
    """Per class, its candidates in priority order with their bytes; every class keeps the longest prefix that fits
    in budget // classes kept (iCaRL's fixed share per class, here in bytes). Shrinking drops the least useful."""

    def __init__(self, budget: int, reserved: int = 0) -> None:
        """``reserved``: bytes the memory needs once whatever it holds (a token store's decoding tables)."""
        self.budget, self.reserved = budget, reserved
        self.ranked: dict[int, list[int]] = {}  # class -> dataset indices, best first
        self.sizes: dict[int, list[int]] = {}  # class -> bytes of those, same order

    @property
    def share(self) -> int:
        return self.share_of(len(self.ranked))

    def share_of(self, classes: int) -> int:
        """Each class's bytes when ``classes`` are kept."""
        return (self.budget - self.reserved) // max(classes, 1)

    def add(self, label: int, ranked: Sequence[int], sizes: Sequence[int]) -> None:
        self.ranked[label], self.sizes[label] = [int(i) for i in ranked], [int(s) for s in sizes]
        self.shrink()

    def shrink(self) -> None:
        """Cut every class to what fits in its share now (after a class was added)."""
        share = self.share
        for label in self.ranked:
            n = fits(np.asarray(self.sizes[label], dtype=np.int64), share)
            self.ranked[label], self.sizes[label] = self.ranked[label][:n], self.sizes[label][:n]

    def indices(self) -> list[int]:
        return [i for label in sorted(self.ranked) for i in self.ranked[label]]

    def used_bytes(self) -> int:
        """Every byte the memory holds: the exemplars and what it reserved."""
        return self.reserved + int(sum(sum(s) for s in self.sizes.values()))

    def state_dict(self) -> dict:
        return {"budget": self.budget, "reserved": self.reserved, "ranked": self.ranked, "sizes": self.sizes}

    def load_state_dict(self, state: dict) -> None:
        self.budget, self.reserved = int(state["budget"]), int(state["reserved"])
        self.ranked = {int(k): list(v) for k, v in state["ranked"].items()}
        self.sizes = {int(k): list(v) for k, v in state["sizes"].items()}
