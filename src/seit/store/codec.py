"""Per-sample codecs for token grids: every sample encodes to its own bytes and decodes on its own.

A codec is fitted once per store (or per writer part) on a prefix of the samples; its parameters go
into the manifest (JSON) and its binary state (tables, dictionaries) into a file beside it.

Codecs: ``raw`` (fixed width), ``zstd`` (plain ids, one zstd frame per sample, optionally with a trained
dictionary) and ``ctx`` (the default: neighbour-rank transform, then zstd with a trained dictionary; see
``seit.store.neighbour_model`` and docs/store-codec.md). Every zstd frame carries a checksum, so corrupt or
truncated samples raise :class:`StoreError` instead of decoding to wrong tokens.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from seit.store.errors import StoreError
from seit.store.neighbour_model import NeighbourModel
from seit.store.symbols import SymbolBytes
from seit.store.zstd_frames import ZstdFrames, train_dictionary

MAX_CODEBOOK_SIZE = 1 << 16
_MAX_STATE_BYTES = 1 << 28  # a decompressed codec state is a few MB at most; more means a damaged file


def ids_dtype(codebook_size: int) -> np.dtype:
    """The in-memory dtype of ids: int16 while it can hold every id, else int32."""
    return np.dtype(np.int16 if codebook_size <= 1 << 15 else np.int32)


class Codec(ABC):
    name: ClassVar[str]

    def __init__(self, grid_shape: Sequence[int], codebook_size: int) -> None:
        if not 1 <= codebook_size <= MAX_CODEBOOK_SIZE:
            raise StoreError(f"codebook size {codebook_size} outside 1..{MAX_CODEBOOK_SIZE}")
        self.grid_shape = tuple(int(s) for s in grid_shape)
        if any(s < 1 for s in self.grid_shape):
            raise StoreError(f"grid shape {self.grid_shape} has an empty dimension")
        self.codebook_size = int(codebook_size)
        self.dtype = ids_dtype(codebook_size)
        self.numel = int(np.prod(self.grid_shape))

    def check(self, ids: np.ndarray) -> np.ndarray:
        """Validate one sample's shape and id range; return it as a contiguous int array."""
        return self.check_many(np.asarray(ids)[None])[0]

    def check_many(self, samples: np.ndarray) -> np.ndarray:
        """Validate samples [B, *grid_shape]; return them as a contiguous int64 array."""
        samples = np.asarray(samples)
        if samples.shape[1:] != self.grid_shape:
            raise StoreError(f"sample has grid shape {samples.shape[1:]}, the store holds {self.grid_shape}")
        if samples.dtype.kind not in "iu":
            raise StoreError(f"token ids must be integers, got dtype {samples.dtype}")
        if samples.size and (samples.min() < 0 or samples.max() >= self.codebook_size):
            raise StoreError(
                f"sample has ids in [{samples.min()}, {samples.max()}], "
                f"outside the codebook of size {self.codebook_size}"
            )
        return np.ascontiguousarray(samples, dtype=np.int64)

    @abstractmethod
    def encode(self, ids: np.ndarray) -> bytes:
        """One sample (shape ``grid_shape``) to bytes."""

    def encode_many(self, samples: np.ndarray) -> list[bytes]:
        """Samples [B, *grid_shape] to one bytes object each (what a writer appending a batch calls)."""
        return [self.encode(s) for s in self.check_many(samples)]

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
        _no_options(cls, options)
        return cls(grid_shape, codebook_size)

    @classmethod
    def load(cls, grid_shape: Sequence[int], codebook_size: int, params: dict[str, Any], state: bytes) -> Codec:
        return cls(grid_shape, codebook_size)

    def __reduce__(self):  # DataLoader workers receive codecs by pickling: rebuild from params and state
        return _load, (self.name, self.grid_shape, self.codebook_size, self.params(), self.state())


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
        out = flat.astype(self.dtype).reshape(len(blobs), *self.grid_shape)
        if out.size and out.max() >= self.codebook_size:
            raise StoreError(f"raw sample holds id {out.max()}, outside the codebook of size {self.codebook_size}")
        return out


class ZstdCodec(Codec):
    """Plain ids in their byte form (see ``seit.store.symbols``), one zstd frame per sample.

    Options: ``level`` (1..22, default 19), ``dict_size`` (bytes of a dictionary trained on the fitting
    samples, default 4096; 0 = no dictionary).
    """

    name = "zstd"

    def __init__(self, grid_shape: Sequence[int], codebook_size: int, *, level: int = 19, dictionary: bytes = b""):
        super().__init__(grid_shape, codebook_size)
        self.layout = SymbolBytes(codebook_size)
        self.frames = ZstdFrames(dictionary, level)

    def encode(self, ids: np.ndarray) -> bytes:
        return self.frames.compress(self.layout.pack(self.check(ids)))

    def decode_many(self, blobs: Sequence[bytes | memoryview]) -> np.ndarray:
        chunks = self.frames.decompress_many(blobs, self.layout.max_bytes(self.numel))
        ids = self.layout.unpack(chunks, self.numel)
        return ids.astype(self.dtype).reshape(len(blobs), *self.grid_shape)

    def params(self) -> dict[str, Any]:
        return {"level": self.frames.level}

    def state(self) -> bytes:
        return self.frames.dictionary

    @classmethod
    def fit(cls, samples, grid_shape, codebook_size, *, level: int = 19, dict_size: int = 4096, **options) -> Codec:
        _no_options(cls, options)
        plain = cls(grid_shape, codebook_size, level=level)
        dictionary = train_dictionary([plain.layout.pack(s) for s in plain.check_many(samples)], dict_size, level)
        return cls(grid_shape, codebook_size, level=level, dictionary=dictionary)

    @classmethod
    def load(cls, grid_shape, codebook_size, params, state) -> Codec:
        return cls(grid_shape, codebook_size, level=int(params.get("level", 19)), dictionary=state)


class NeighbourCodec(Codec):
    """Neighbour-rank transform (``seit.store.neighbour_model``), then zstd with a trained dictionary.

    Options: ``neighbours`` ("pair": left and upper neighbour, the default; "left": left only, cheaper to
    decode), ``list_size`` (candidate codes kept per neighbour value, default 32), ``pair_size`` (candidates
    per position in pair mode, default 32), ``level`` and ``dict_size`` as for the zstd codec. Grids are
    seen as 2-D (rows = all leading dimensions, cols = the last); 1-D sequences use the left neighbour only.
    """

    name = "ctx"
    VERSION = 1

    def __init__(
        self, grid_shape: Sequence[int], codebook_size: int, model: NeighbourModel, *, level: int, dictionary: bytes
    ) -> None:
        super().__init__(grid_shape, codebook_size)
        self.rows = int(np.prod(self.grid_shape[:-1]))
        self.cols = self.grid_shape[-1] if self.grid_shape else 1
        self.model = model
        self.layout = SymbolBytes(model.alphabet)
        self.frames = ZstdFrames(dictionary, level)
        self._state: bytes | None = None

    def _symbols(self, samples: np.ndarray) -> np.ndarray:
        return self.model.forward(samples.reshape(len(samples), self.rows, self.cols))

    def encode(self, ids: np.ndarray) -> bytes:
        return self.encode_many(np.asarray(ids)[None])[0]

    def encode_many(self, samples: np.ndarray) -> list[bytes]:
        samples = self.check_many(samples)
        out = []
        for start in range(0, len(samples), 64):  # bounds the transform's temporaries
            for sym in self._symbols(samples[start : start + 64]):
                out.append(self.frames.compress(self.layout.pack(sym)))
        return out

    def decode_many(self, blobs: Sequence[bytes | memoryview]) -> np.ndarray:
        chunks = self.frames.decompress_many(blobs, self.layout.max_bytes(self.numel))
        symbols = self.layout.unpack(chunks, self.numel)
        ids = self.model.inverse(symbols, self.rows, self.cols)
        return ids.astype(self.dtype).reshape(len(blobs), *self.grid_shape)

    def params(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "neighbours": "pair" if self.model.pair_size else "left",
            "list_size": self.model.list_size,
            "pair_size": self.model.pair_size,
            "level": self.frames.level,
        }

    def state(self) -> bytes:
        if self._state is None:  # deterministic: same tables, same bytes
            arrays = self.model.arrays() | {"dictionary": np.frombuffer(self.frames.dictionary, dtype=np.uint8)}
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            self._state = ZstdFrames(level=19).compress(buf.getvalue())
        return self._state

    @classmethod
    def fit(
        cls,
        samples: np.ndarray,
        grid_shape: Sequence[int],
        codebook_size: int,
        *,
        neighbours: str = "pair",
        list_size: int = 32,
        pair_size: int = 32,
        level: int = 19,
        dict_size: int = 4096,
        **options: Any,
    ) -> Codec:
        _no_options(cls, options)
        if neighbours not in ("pair", "left"):
            raise StoreError(f"ctx codec: neighbours must be 'pair' or 'left', got {neighbours!r}")
        plain = RawCodec(grid_shape, codebook_size)
        samples = plain.check_many(samples)
        rows = int(np.prod(plain.grid_shape[:-1]))
        model = NeighbourModel.fit(
            samples.reshape(len(samples), rows, -1),
            codebook_size,
            list_size=list_size,
            pair_size=pair_size,
            pair=neighbours == "pair",
        )
        codec = cls(grid_shape, codebook_size, model, level=level, dictionary=b"")
        packed = [
            codec.layout.pack(s)
            for start in range(0, len(samples), 64)
            for s in codec._symbols(samples[start : start + 64])
        ]
        dictionary = train_dictionary(packed, dict_size, level)
        return cls(grid_shape, codebook_size, model, level=level, dictionary=dictionary)

    @classmethod
    def load(cls, grid_shape, codebook_size, params, state) -> Codec:
        if params.get("version") != cls.VERSION:
            raise StoreError(
                f"ctx codec version {params.get('version')!r} is not supported (this seit reads version "
                f"{cls.VERSION}); upgrade seit or rewrite the store"
            )
        try:
            raw = ZstdFrames().decompress_many([state], _MAX_STATE_BYTES)[0]
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (StoreError, ValueError, OSError) as e:
            raise StoreError(f"ctx codec state is unreadable ({e}); the store's codec file is damaged") from None
        model = NeighbourModel.from_arrays(codebook_size, arrays, int(params.get("pair_size", 0)))
        dictionary = arrays.get("dictionary", np.zeros(0, dtype=np.uint8)).tobytes()
        return cls(grid_shape, codebook_size, model, level=int(params.get("level", 19)), dictionary=dictionary)


def _no_options(cls: type[Codec], options: dict[str, Any]) -> None:
    if options:
        raise StoreError(
            f"codec {cls.name!r} has no option(s) {sorted(options)}; see `help(codec_class({cls.name!r}))`"
        )


def _load(name: str, grid_shape, codebook_size: int, params: dict[str, Any], state: bytes) -> Codec:
    return codec_class(name).load(grid_shape, codebook_size, params, state)


CODECS: dict[str, type[Codec]] = {c.name: c for c in (RawCodec, ZstdCodec, NeighbourCodec)}
DEFAULT_CODEC = NeighbourCodec.name


def codec_class(name: str) -> type[Codec]:
    try:
        return CODECS[name]
    except KeyError:
        raise StoreError(f"unknown codec {name!r}; known: {sorted(CODECS)}") from None
