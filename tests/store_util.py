"""Helpers shared by the store tests: samples whose ids spell out their own index, and small stores."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import numpy as np
import zstandard

from seit.store import CODECS, StoreWriter
from seit.store.format import MANIFEST, V1_TRAILER

CODEC_NAMES = sorted(CODECS)
# Small groups, so that the tiny stores of the tests hold many groups (and groups split across shards).
CODEC_OPTIONS = {"ctx-ans": {"group": 16}}
K = 391


def make_samples(n: int, grid=(4, 4), k: int = K, seed: int = 0, start: int = 0):
    """(ids [n, *grid], labels [n], keys [n]); the first two ids of sample i encode i, so a batch says what it holds."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, k, size=(n, *grid))
    index = np.arange(start, start + n)
    flat = ids.reshape(n, -1)
    flat[:, 0], flat[:, 1] = index % k, index // k
    labels = rng.integers(0, 10, size=n)
    keys = [f"img{i:05d}.png" for i in index]
    return ids, labels, keys


def indices_of(ids) -> np.ndarray:
    """Recover the sample indices from a batch made by make_samples."""
    flat = np.asarray(ids).reshape(len(ids), -1).astype(np.int64)
    return flat[:, 0] + K * flat[:, 1]


def write_store(path, n: int = 200, *, grid=(4, 4), codec: str = "raw", shard_bytes: int = 600, **kwargs):
    ids, labels, keys = make_samples(n, grid)
    with StoreWriter(
        path,
        grid_shape=grid,
        codebook_size=K,
        class_names=[f"class{c}" for c in range(10)],
        shard_bytes=shard_bytes,
        codec=codec,
        codec_options=CODEC_OPTIONS.get(codec),
        fit_samples=50,
        **kwargs,
    ) as writer:
        writer.append_batch(ids, labels, keys)
    return ids, labels, keys


def write_v1_store(path, n: int = 30):
    """A store as seit wrote it before format 2: raw samples without CRC, 40-byte trailers, no checksum."""
    ids, labels, keys = make_samples(n)
    path.mkdir()
    payload = ids.astype("<u2").tobytes()
    offsets = np.arange(n + 1, dtype="<u4") * 32
    labels_blob = zstandard.ZstdCompressor().compress(labels.astype("<i2").tobytes())
    keys_blob = zstandard.ZstdCompressor().compress("\n".join(keys).encode())
    tail = offsets.tobytes() + labels_blob + keys_blob
    data = payload + tail + V1_TRAILER.pack(b"SEITSHD1", n, len(payload), len(labels_blob), len(keys_blob), 2, 0)
    (path / "shard-00000-000000.tok").write_bytes(data)
    (path / "codec-00000.bin").write_bytes(b"")
    shard = {"file": "shard-00000-000000.tok", "part": 0, "codec": 0, "samples": n, "payload_bytes": len(payload)}
    manifest = {
        "format": "seit-token-store",
        "format_version": 1,
        "num_samples": n,
        "grid_shape": [4, 4],
        "ids_dtype": "int16",
        "codebook_size": K,
        "class_names": None,
        "codebook": None,
        "synonyms": None,
        "codecs": [
            {"name": "raw", "params": {}, "file": "codec-00000.bin", "sha256": hashlib.sha256().hexdigest(), "bytes": 0}
        ],
        "shards": [{**shard, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}],
    }
    (path / MANIFEST).write_text(json.dumps(manifest))
    return ids, labels, keys


class ProgressRecorder:
    """Stands in for seit.utils.progress: records how each bar was made and what it was told."""

    made: ClassVar[list] = []

    def __init__(self, **kwargs):
        self.kwargs, self.updates, self.closed = kwargs, [], False
        ProgressRecorder.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n):
        self.updates.append(n)

    def close(self):
        self.closed = True
