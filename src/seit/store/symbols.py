"""Byte forms of symbol sequences (ids or ranks) that an entropy coder then compresses.

The form depends on the alphabet size:

* up to 256 symbols: one byte per symbol;
* up to 510 (e.g. a pruned 391-code codebook): one byte per symbol where a symbol from 255 on is written
  as the escape byte 255, and its remainder (symbol - 255) follows, for all escapes of the sample, after
  the last symbol. Same bytes as SeiT's release form, reordered so that the decoder finds every symbol's
  first byte at a fixed offset (a batch decodes with a handful of vectorised numpy operations);
* beyond: little-endian byte planes (all low bytes, then all next bytes, ...), whose upper planes are nearly
  constant when small symbols dominate, so they compress to almost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seit.store.errors import StoreError

ESCAPE = 255  # SeiT's escape byte: a symbol from 255 on is written as (255, symbol - 255)
MAX_ID = 2 * ESCAPE - 1  # 509: the largest symbol the two-byte form can hold


class SymbolBytes:
    def __init__(self, alphabet: int) -> None:
        if alphabet < 1:
            raise ValueError(f"alphabet size must be positive, got {alphabet}")
        self.alphabet = alphabet
        if alphabet <= 256:
            self.kind, self.planes = "u8", 1
        elif alphabet <= MAX_ID + 1:
            self.kind, self.planes = "escape", 1
        else:
            self.kind, self.planes = "planes", (int(alphabet - 1).bit_length() + 7) // 8
        self.dtype = np.dtype(np.int16 if alphabet <= 1 << 15 else np.int32)

    def max_bytes(self, numel: int) -> int:
        """The most bytes one sample of ``numel`` symbols can take."""
        return (2 if self.kind == "escape" else self.planes) * numel

    def pack(self, symbols: np.ndarray) -> bytes:
        """One sample's symbols (any shape, values in [0, alphabet)) to bytes."""
        flat = np.asarray(symbols).ravel()
        if self.kind == "u8":
            return flat.astype(np.uint8).tobytes()
        if self.kind == "escape":
            wide = flat >= ESCAPE
            return (
                np.minimum(flat, ESCAPE).astype(np.uint8).tobytes() + (flat[wide] - ESCAPE).astype(np.uint8).tobytes()
            )
        wide = flat.astype(np.uint64)
        planes = [((wide >> np.uint64(8 * p)) & np.uint64(255)).astype(np.uint8) for p in range(self.planes)]
        return np.concatenate(planes).tobytes()

    def unpack(self, chunks: Sequence[bytes], numel: int) -> np.ndarray:
        """Many samples' bytes to symbols [B, numel] (``self.dtype``); malformed samples raise StoreError."""
        batch = len(chunks)
        sizes = np.fromiter(map(len, chunks), dtype=np.int64, count=batch)
        if self.kind == "escape":
            return self._unescape(chunks, sizes, numel)
        bad = np.flatnonzero(sizes != self.planes * numel)
        if bad.size:
            i = int(bad[0])
            raise StoreError(
                f"sample {i} of the batch holds {sizes[i]} bytes of symbols, expected {self.planes * numel}"
            )
        raw = np.frombuffer(b"".join(chunks), dtype=np.uint8)
        if self.kind == "u8":
            out = raw.reshape(batch, numel).astype(self.dtype)
        else:
            planes = raw.reshape(batch, self.planes, numel).astype(np.int64)
            out = planes[:, 0]
            for p in range(1, self.planes):
                out |= planes[:, p] << (8 * p)
            out = out.astype(self.dtype)
        return self._checked(out)

    def _unescape(self, chunks: Sequence[bytes], sizes: np.ndarray, numel: int) -> np.ndarray:
        short = np.flatnonzero(sizes < numel)
        if short.size:
            i = int(short[0])
            raise StoreError(f"sample {i} of the batch holds {sizes[i]} bytes, fewer than its {numel} symbols")
        head = np.frombuffer(b"".join([c[:numel] for c in chunks]), dtype=np.uint8).reshape(len(chunks), numel)
        rest = np.frombuffer(b"".join([c[numel:] for c in chunks]), dtype=np.uint8)
        out = head.astype(self.dtype)
        esc = np.flatnonzero(head == ESCAPE)
        per_sample = np.bincount(esc // numel, minlength=len(chunks))
        bad = np.flatnonzero(per_sample != sizes - numel)
        if bad.size:
            i = int(bad[0])
            raise StoreError(
                f"sample {i} of the batch has {per_sample[i]} escaped symbols but {sizes[i] - numel} remainder bytes"
            )
        out.ravel()[esc] += rest
        return self._checked(out)

    def _checked(self, out: np.ndarray) -> np.ndarray:
        if out.size and out.max() >= self.alphabet:
            raise StoreError(f"symbol {out.max()} outside the alphabet of {self.alphabet} (corrupt sample)")
        return out
