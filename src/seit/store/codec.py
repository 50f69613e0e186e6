"""Per-sample codecs for token grids: every sample encodes to its own bytes and decodes on its own.

A codec is fitted once per store (or per writer part) on a prefix of the samples; its parameters go
into the manifest (JSON) and its binary state (tables, dictionaries) into a file beside it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from seit.store.errors import StoreError

MAX_CODEBOOK_SIZE = 1 << 16


def ids_dtype(codebook_size: int) -> np.dtype:
    """The in-memory dtype of ids: int16 while it can hold every id, else int32."""
    return np.dtype(np.int16 if codebook_size <= 1 << 15 else np.int32)


class Codec(ABC):
    name: ClassVar[str]

    def __init__(self, grid_shape: Sequence[int], codebook_size: int) -> None:
        if not 1 <= codebook_size <= MAX_CODEBOOK_SIZE:
            raise StoreError(f"codebook size {codebook_size} outside 1..{MAX_CODEBOOK_SIZE}")
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.codebook_size = int(codebook_size)
        self.dtype = ids_dtype(codebook_size)
        self.numel = int(np.prod(self.grid_shape))

    def check(self, ids: np.ndarray) -> np.ndarray:
        """Validate one sample's shape and id range; return it as a contiguous int array."""
        ids = np.asarray(ids)
        if ids.shape != self.grid_shape:
            raise StoreError(f"sample has grid shape {ids.shape}, the store holds {self.grid_shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.codebook_size):
            raise StoreError(
                f"sample has ids in [{ids.min()}, {ids.max()}], outside the codebook of size {self.codebook_size}"
            )
        return np.ascontiguousarray(ids, dtype=np.int64)

    @abstractmethod
    def encode(self, ids: np.ndarray) -> bytes:
        """One sample (shape ``grid_shape``) to bytes."""

    @abstractmethod
    def decode_many(self, blobs: Sequence[bytes | memoryview]) -> np.ndarray:
        """Many samples' bytes to an array [B, *grid_shape] of ``self.dtype``."""

    def decode(self, blob: bytes | memoryview) -> np.ndarray:
        return self.decode_many([blob])[0]

    def params(self) -> dict[str, Any]:
        """JSON-able parameters saved in the manifest."""
        return {}

    def state(self) -> bytes:
        """Binary state (tables, dictionaries) saved beside the manifest; empty if none."""
        return b""

    @classmethod
    def fit(cls, samples: np.ndarray, grid_shape: Sequence[int], codebook_size: int, **options: Any) -> Codec:
        """Build a codec for data like ``samples`` [n, *grid_shape]."""
        return cls(grid_shape, codebook_size)

    @classmethod
    def load(cls, grid_shape: Sequence[int], codebook_size: int, params: dict[str, Any], state: bytes) -> Codec:
        return cls(grid_shape, codebook_size)


class RawCodec(Codec):
    """Fixed width: one byte per id for codebooks up to 256 codes, else two (little-endian)."""

    name = "raw"

    def __init__(self, grid_shape: Sequence[int], codebook_size: int) -> None:
        super().__init__(grid_shape, codebook_size)
        self.wire = np.dtype(np.uint8 if codebook_size <= 256 else "<u2")

    def encode(self, ids: np.ndarray) -> bytes:
        return self.check(ids).astype(self.wire).tobytes()

    def decode_many(self, blobs: Sequence[bytes | memoryview]) -> np.ndarray:
        size = self.numel * self.wire.itemsize
        for i, b in enumerate(blobs):
            if len(b) != size:
                raise StoreError(f"sample {i} of the batch has {len(b)} bytes, raw codec expects {size}")
        flat = np.frombuffer(b"".join(blobs), dtype=self.wire)
        return flat.astype(self.dtype).reshape(len(blobs), *self.grid_shape)


CODECS: dict[str, type[Codec]] = {RawCodec.name: RawCodec}


def codec_class(name: str) -> type[Codec]:
    try:
        return CODECS[name]
    except KeyError:
        raise StoreError(f"unknown codec {name!r}; known: {sorted(CODECS)}") from None
