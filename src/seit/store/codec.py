"""Codecs for token grids: every sample decodes on its own (random access), given the store's codec state.

A codec is fitted once per store (or per writer part) on a prefix of the samples; its parameters go
into the manifest (JSON) and its binary state (tables, dictionaries) into a file beside it.

Codecs: ``raw`` (fixed width), ``zstd`` (plain ids, one zstd frame per sample, optionally with a trained
dictionary), ``ctx`` (neighbour-rank transform, then zstd with a trained dictionary) and ``ctx-ans`` (the
default: the same transform, then pcodec's tANS with one table per group of samples; see
``seit.store.neighbour_model``, ``seit.store.ans_pages`` and docs/store-codec.md). Every sample carries a
checksum, so corrupt or truncated samples raise :class:`StoreError` instead of decoding to wrong tokens.
"""

from __future__ import annotations

import inspect
import io
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from seit.store.ans_pages import AnsPages, GroupedBlob
from seit.store.errors import StoreError
from seit.store.neighbour_model import NeighbourModel
from seit.store.npy import parse_npz
from seit.store.symbols import SymbolBytes
from seit.store.zstd_frames import ZstdFrames, train_dictionary

MAX_CODEBOOK_SIZE = 1 << 16
_MAX_STATE_BYTES = 1 << 28  # a decompressed codec state is a few MB at most; more means a damaged file


def ids_dtype(codebook_size: int) -> np.dtype:
    """The in-memory dtype of ids: int16 while it can hold every id, else int32."""
    return np.dtype(np.int16 if codebook_size <= 1 << 15 else np.int32)


class Codec(ABC):
    name: ClassVar[str]
    # 0: every sample encodes to its own bytes. > 0: ``encode_many`` codes groups of this many samples that
    # share a header (a GroupedBlob per sample); writers hand the codec whole groups.
    group_size: int = 0

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

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Raise if ``fit`` has no such keyword options (before a writer buffers anything)."""
        known = {p.name for p in inspect.signature(cls.fit).parameters.values() if p.kind == p.KEYWORD_ONLY}
        _no_options(cls, {k: v for k, v in options.items() if k not in known})

    def __reduce__(self):  # DataLoader workers receive codecs by pickling: rebuild from params and state
        return _load, (self.name, self.grid_shape, self.codebook_size, self.params(), self.state())


class RawCodec(Codec):
    """Fixed width: one byte per id for codebooks up to 256 codes, else two (little-endian), after the
    CRC-32 of those bytes (4 bytes, little-endian; stores written before format 2 have none: ``crc32`` False)."""

    name = "raw"

    def __init__(self, grid_shape: Sequence[int], codebook_size: int, *, crc32: bool = True) -> None:
        super().__init__(grid_shape, codebook_size)
        self.wire = np.dtype(np.uint8 if codebook_size <= 256 else "<u2")
        self.crc32 = crc32

    def encode(self, ids: np.ndarray) -> bytes:
        data = self.check(ids).astype(self.wire).tobytes()
        return zlib.crc32(data).to_bytes(4, "little") + data if self.crc32 else data

    def decode_many(self, blobs: Sequence[bytes | memoryview]) -> np.ndarray:
        head = 4 if self.crc32 else 0
        size = head + self.numel * self.wire.itemsize
        for i, b in enumerate(blobs):
            if len(b) != size:
                raise StoreError(f"sample {i} of the batch has {len(b)} bytes, raw codec expects {size}")
            if head and zlib.crc32(b[head:]) != int.from_bytes(b[:head], "little"):
                raise StoreError(f"sample {i} of the batch is corrupt (checksum mismatch)")
        flat = np.frombuffer(b"".join(bytes(b[head:]) for b in blobs), dtype=self.wire)
        out = flat.astype(self.dtype).reshape(len(blobs), *self.grid_shape)
        if out.size and out.max() >= self.codebook_size:
            raise StoreError(f"raw sample holds id {out.max()}, outside the codebook of size {self.codebook_size}")
        return out

    def params(self) -> dict[str, Any]:
        return {"crc32": self.crc32}

    @classmethod
    def load(cls, grid_shape, codebook_size, params, state) -> Codec:
        return cls(grid_shape, codebook_size, crc32=params.get("crc32") is True)


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


class _NeighbourRanks(Codec):
    """What the ``ctx`` codecs share: the neighbour-rank transform (``seit.store.neighbour_model``), fitted on
    the first samples of a store. Grids are seen as 2-D (rows = all leading dimensions, cols = the last);
    1-D sequences use the left neighbour only.

    Options of ``fit``: ``neighbours`` ("pair": left and upper neighbour, the default; "left": left only,
    cheaper to decode), ``list_size`` (candidate codes kept per neighbour value), ``pair_size`` (candidates
    per position in pair mode).
    """

    VERSION = 1

    def __init__(self, grid_shape: Sequence[int], codebook_size: int, model: NeighbourModel) -> None:
        super().__init__(grid_shape, codebook_size)
        self.rows = int(np.prod(self.grid_shape[:-1]))
        self.cols = self.grid_shape[-1] if self.grid_shape else 1
        self.model = model
        self._state: bytes | None = None

    def _symbols(self, samples: np.ndarray) -> np.ndarray:
        """Checked samples [B, *grid] -> rank symbols [B, numel], 64 samples at a time (bounds temporaries)."""
        parts = [
            self.model.forward(samples[s : s + 64].reshape(-1, self.rows, self.cols))
            for s in range(0, len(samples), 64)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.numel), dtype=np.int64)

    def _ids(self, symbols: np.ndarray) -> np.ndarray:
        ids = self.model.inverse(symbols, self.rows, self.cols)
        return ids.astype(self.dtype).reshape(len(symbols), *self.grid_shape)

    def encode(self, ids: np.ndarray) -> bytes:
        return self.encode_many(np.asarray(ids)[None])[0]

    def params(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "neighbours": "pair" if self.model.pair_size else "left",
            "list_size": self.model.list_size,
            "pair_size": self.model.pair_size,
        }

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {}

    def state(self) -> bytes:
        if self._state is None:  # deterministic: same tables, same bytes
            buf = io.BytesIO()
            np.savez(buf, **self.model.arrays(), **self._extra_state())
            self._state = ZstdFrames(level=19).compress(buf.getvalue())
        return self._state

    @classmethod
    def _fit_model(
        cls,
        samples: np.ndarray,
        grid_shape: Sequence[int],
        codebook_size: int,
        neighbours: str,
        list_size: int,
        pair_size: int,
    ) -> tuple[np.ndarray, NeighbourModel]:
        """(checked samples, model fitted on them)."""
        if neighbours not in ("pair", "left"):
            raise StoreError(f"{cls.name} codec: neighbours must be 'pair' or 'left', got {neighbours!r}")
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
        return samples, model

    @classmethod
    def _load_state(
        cls, codebook_size: int, params: dict[str, Any], state: bytes
    ) -> tuple[NeighbourModel, dict[str, np.ndarray]]:
        """(model, every array of the state) from what ``params()`` and ``state()`` saved."""
        if params.get("version") != cls.VERSION:
            raise StoreError(
                f"{cls.name} codec version {params.get('version')!r} is not supported (this seit reads version "
                f"{cls.VERSION}); upgrade seit or rewrite the store"
            )
        try:
            raw = ZstdFrames().decompress_large(state, _MAX_STATE_BYTES)
            arrays = parse_npz(raw, "state")
        except StoreError as e:
            raise StoreError(f"{cls.name} codec state is unreadable ({e}); the store's codec file is damaged") from None
        model = NeighbourModel.from_arrays(codebook_size, arrays, int(params.get("pair_size", 0)))
        return model, arrays


class NeighbourCodec(_NeighbourRanks):
    """Neighbour-rank transform, then one zstd frame per sample with a dictionary trained on the fitting samples.

    Options: those of the transform (``neighbours``, ``list_size`` default 32, ``pair_size`` default 32),
    ``level`` and ``dict_size`` as for the zstd codec.
    """

    name = "ctx"

    def __init__(
        self, grid_shape: Sequence[int], codebook_size: int, model: NeighbourModel, *, level: int, dictionary: bytes
    ) -> None:
        super().__init__(grid_shape, codebook_size, model)
        self.layout = SymbolBytes(model.alphabet)
        self.frames = ZstdFrames(dictionary, level)

    def encode_many(self, samples: np.ndarray) -> list[bytes]:
        return [self.frames.compress(self.layout.pack(sym)) for sym in self._symbols(self.check_many(samples))]

    def decode_many(self, blobs: Sequence[bytes | memoryview]) -> np.ndarray:
        chunks = self.frames.decompress_many(blobs, self.layout.max_bytes(self.numel))
        return self._ids(self.layout.unpack(chunks, self.numel))

    def params(self) -> dict[str, Any]:
        return super().params() | {"level": self.frames.level}

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {"dictionary": np.frombuffer(self.frames.dictionary, dtype=np.uint8)}

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
        samples, model = cls._fit_model(samples, grid_shape, codebook_size, neighbours, list_size, pair_size)
        codec = cls(grid_shape, codebook_size, model, level=level, dictionary=b"")
        dictionary = train_dictionary([codec.layout.pack(s) for s in codec._symbols(samples)], dict_size, level)
        return cls(grid_shape, codebook_size, model, level=level, dictionary=dictionary)

    @classmethod
    def load(cls, grid_shape, codebook_size, params, state) -> Codec:
        model, arrays = cls._load_state(codebook_size, params, state)
        dictionary = arrays.get("dictionary", np.zeros(0, dtype=np.uint8)).tobytes()
        return cls(grid_shape, codebook_size, model, level=int(params.get("level", 19)), dictionary=dictionary)


class NeighbourAnsCodec(_NeighbourRanks):
    """Neighbour-rank transform, then pcodec's tANS: one table per group of samples, one page per sample
    (``seit.store.ans_pages``). The default codec: ~5% fewer bytes than ``ctx`` and faster to decode.

    Options: those of the transform (``neighbours``, ``list_size`` default 48, ``pair_size`` default 48),
    ``group`` (samples per group, default 4096: a ~160-byte header shared by the group) and ``level``
    (pcodec's compression level 0..12, default 8).
    """

    name = "ctx-ans"

    def __init__(
        self, grid_shape: Sequence[int], codebook_size: int, model: NeighbourModel, *, group: int, level: int
    ) -> None:
        super().__init__(grid_shape, codebook_size, model)
        if group < 1:
            raise StoreError(f"{self.name} codec: group must be >= 1, got {group}")
        self.group_size = int(group)
        self.pages = AnsPages(self.numel, model.alphabet, level)

    def encode_many(self, samples: np.ndarray) -> list[GroupedBlob]:
        symbols = self._symbols(self.check_many(samples))
        g = self.group_size
        return [blob for s in range(0, len(symbols), g) for blob in self.pages.encode_group(symbols[s : s + g])]

    def decode_many(self, blobs: Sequence[GroupedBlob]) -> np.ndarray:
        return self._ids(self.pages.decode_many(blobs))

    def params(self) -> dict[str, Any]:
        return super().params() | {"group": self.group_size, "level": self.pages.level}

    @classmethod
    def fit(
        cls,
        samples: np.ndarray,
        grid_shape: Sequence[int],
        codebook_size: int,
        *,
        neighbours: str = "pair",
        list_size: int = 48,
        pair_size: int = 48,
        group: int = 4096,
        level: int = 8,
        **options: Any,
    ) -> Codec:
        _no_options(cls, options)
        _, model = cls._fit_model(samples, grid_shape, codebook_size, neighbours, list_size, pair_size)
        return cls(grid_shape, codebook_size, model, group=group, level=level)

    @classmethod
    def load(cls, grid_shape, codebook_size, params, state) -> Codec:
        model, _ = cls._load_state(codebook_size, params, state)
        return cls(grid_shape, codebook_size, model, group=int(params["group"]), level=int(params["level"]))


def encoded_bytes(blobs: Sequence[bytes | GroupedBlob]) -> int:
    """What encoded samples take in a store: each sample's own bytes, plus every group header once."""
    headers = {id(b.header): len(b.header) for b in blobs if isinstance(b, GroupedBlob)}
    return sum(len(b.body) if isinstance(b, GroupedBlob) else len(b) for b in blobs) + sum(headers.values())


def _no_options(cls: type[Codec], options: dict[str, Any]) -> None:
    if options:
        raise StoreError(
            f"codec {cls.name!r} has no option(s) {sorted(options)}; see `help(codec_class({cls.name!r}))`"
        )


def _load(name: str, grid_shape, codebook_size: int, params: dict[str, Any], state: bytes) -> Codec:
    return codec_class(name).load(grid_shape, codebook_size, params, state)


CODECS: dict[str, type[Codec]] = {c.name: c for c in (RawCodec, ZstdCodec, NeighbourCodec, NeighbourAnsCodec)}
DEFAULT_CODEC = NeighbourAnsCodec.name


def codec_class(name: str) -> type[Codec]:
    try:
        return CODECS[name]
    except KeyError:
        raise StoreError(f"unknown codec {name!r}; known: {sorted(CODECS)}") from None
