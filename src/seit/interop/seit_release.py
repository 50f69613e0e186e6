"""The SeiT token release layout (``X-token.data.bin.gz`` + ``X-token.index.npy.gz`` + ``X-label.txt``).

Byte stream: every image's ids in raster order; an id below 255 is one byte, an id from 255 to 509 is
two bytes (255, id - 255). The index holds N+1 int64 byte offsets into the decompressed stream.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from seit.store.errors import StoreError

ESCAPE = 255
MAX_ID = 2 * ESCAPE - 1  # 509: the largest id the two-byte form can hold


def encode_stream(grids: Iterable[np.ndarray]) -> tuple[bytes, np.ndarray]:
    """Grids to (byte stream, offsets[N+1]) exactly as the SeiT release writes them."""
    parts: list[bytes] = []
    offsets = [0]
    for n, grid in enumerate(grids):
        flat = np.asarray(grid, dtype=np.int64).ravel()
        if flat.size and (flat.min() < 0 or flat.max() > MAX_ID):
            raise StoreError(
                f"sample {n}: id {int(flat.max())} cannot be written in the SeiT layout (largest id {MAX_ID}); "
                "prune the codebook first (seit tokenize --prune) or keep this data in a seit store"
            )
        wide = flat >= ESCAPE
        out = np.empty(flat.size + int(wide.sum()), dtype=np.uint8)
        pos = np.arange(flat.size) + np.concatenate(([0], np.cumsum(wide)[:-1]))
        out[pos] = np.where(wide, ESCAPE, flat)
        out[pos[wide] + 1] = flat[wide] - ESCAPE
        parts.append(out.tobytes())
        offsets.append(offsets[-1] + out.size)
    return b"".join(parts), np.asarray(offsets, dtype=np.int64)


def decode_sample(data: bytes | memoryview, numel: int) -> np.ndarray:
    """One image's bytes to ``numel`` ids (int64), checking the byte count.

    The byte after an escape is at most 254 (509 - 255), so every 255 in the stream is an escape.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    esc = np.flatnonzero(raw == ESCAPE)
    if esc.size and esc[-1] == raw.size - 1:
        raise StoreError("SeiT token stream ends inside a two-byte id (truncated file?)")
    keep = np.ones(raw.size, dtype=bool)
    keep[esc + 1] = False
    values = raw.astype(np.int64)
    values[esc] += raw[esc + 1]
    values = values[keep]
    if values.size != numel:
        raise StoreError(f"SeiT token stream: sample decodes to {values.size} ids, expected {numel}")
    return values
