"""On-disk layout of a token store, format version 1 (described for other tools in docs/store-format.md).

A store is a directory: ``manifest.json`` (written last; its presence means the store is complete), shard
files ``shard-PPPPP-SSSSSS.tok`` (samples of writer part P), one codec state file per part, and optional
``codebook-*.npy`` / ``synonyms-*.npy`` / ``code_ids-*.npy`` named by their content hash, so replacing one
never overwrites a file the current manifest still names.

A shard file is the encoded samples back to back, then a compact index, then a fixed-size trailer::

    payload   P bytes            sample j = payload[offsets[j]:offsets[j+1]]
    padding   (-P) % 8 zeros     so the offsets are aligned
    offsets   uint32 LE [n+1]    offsets[0] = 0, offsets[n] = P (read in place: O(1) random access)
    labels    L bytes            one zstd frame of int16|int32 LE [n], the class ids (-1: unlabelled)
    keys      K bytes            one zstd frame of the UTF-8 keys joined by "\\n"
    groups    G bytes            only for grouped codecs (G = 0 otherwise): the headers of the sample groups
    trailer   40 bytes           magic, n, P, L, K, label item size, G (see TRAILER)

The groups section (little-endian): uint32 g, uint32 first[g] (first sample of each group; first[0] = 0,
increasing), uint32 end[g] (cumulative end of each header), then the headers back to back. A group's
samples are first[i] .. first[i + 1] - 1; a group the writer split across shards has its header in both.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard

from seit.store.errors import StoreError

FORMAT_NAME = "seit-token-store"
PART_FORMAT_NAME = "seit-token-store-part"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAY_KINDS = ("codebook", "synonyms", "code_ids")  # optional side arrays, each a content-addressed .npy
SHARD_MAGIC = b"SEITSHD1"
# magic, samples n, payload bytes P, labels bytes L, keys bytes K, label item size (2 or 4), groups bytes G
TRAILER = struct.Struct("<8sQQIIII")
INDEX_ZSTD_LEVEL = 12
MAX_PAYLOAD = (1 << 32) - 1  # offsets are uint32
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def shard_name(part: int, index: int) -> str:
    return f"shard-{part:05d}-{index:06d}.tok"


def part_name(part: int) -> str:
    """The progress record of writer part ``part`` while the store is being written."""
    return f"part-{part:05d}.json"


def codec_state_name(part: int) -> str:
    return f"codec-{part:05d}.bin"


def array_name(kind: str, sha256: str) -> str:
    """Content-addressed name of a codebook/synonyms array file."""
    return f"{kind}-{sha256[:16]}.npy"


def label_itemsize(labels: np.ndarray) -> int:
    """2 bytes per label when every label fits int16, else 4."""
    if labels.size == 0 or (labels.min() >= -(1 << 15) and labels.max() < 1 << 15):
        return 2
    return 4


@dataclass(frozen=True)
class ShardLayout:
    """Where each section of a shard file lies, computed from its trailer."""

    samples: int
    payload_bytes: int
    labels_bytes: int
    keys_bytes: int
    label_size: int
    groups_bytes: int = 0

    @property
    def offsets_start(self) -> int:
        return self.payload_bytes + (-self.payload_bytes) % 8

    @property
    def labels_start(self) -> int:
        return self.offsets_start + 4 * (self.samples + 1)

    @property
    def keys_start(self) -> int:
        return self.labels_start + self.labels_bytes

    @property
    def groups_start(self) -> int:
        return self.keys_start + self.keys_bytes

    @property
    def total_bytes(self) -> int:
        return self.groups_start + self.groups_bytes + TRAILER.size

    @property
    def label_dtype(self) -> np.dtype:
        return np.dtype("<i2" if self.label_size == 2 else "<i4")


def encode_index(
    offsets: np.ndarray, labels: np.ndarray, keys: list[str], groups: Sequence[tuple[int, bytes]] = ()
) -> bytes:
    """Everything after the payload: padding, offsets, labels, keys, the groups' (first sample, header), trailer."""
    n = len(labels)
    payload = int(offsets[-1])
    zstd = zstandard.ZstdCompressor(level=INDEX_ZSTD_LEVEL)
    size = label_itemsize(labels)
    labels_blob = zstd.compress(np.asarray(labels).astype("<i2" if size == 2 else "<i4").tobytes())
    keys_blob = zstd.compress("\n".join(keys).encode())
    groups_blob = encode_groups(groups)
    layout = ShardLayout(n, payload, len(labels_blob), len(keys_blob), size, len(groups_blob))
    parts = [
        b"\0" * (layout.offsets_start - payload),
        np.asarray(offsets, dtype="<u4").tobytes(),
        labels_blob,
        keys_blob,
        groups_blob,
        TRAILER.pack(SHARD_MAGIC, n, payload, len(labels_blob), len(keys_blob), size, len(groups_blob)),
    ]
    return b"".join(parts)


def encode_groups(groups: Sequence[tuple[int, bytes]]) -> bytes:
    if not groups:
        return b""
    first = np.array([f for f, _ in groups], dtype="<u4")
    ends = np.cumsum([len(h) for _, h in groups], dtype=np.int64).astype("<u4")
    return (
        np.uint32(len(groups)).astype("<u4").tobytes()
        + first.tobytes()
        + ends.tobytes()
        + b"".join(h for _, h in groups)
    )


def decode_groups(blob: bytes | memoryview, layout: ShardLayout, where: str) -> tuple[np.ndarray, list[bytes]]:
    """(first sample of each group, headers) of a shard's groups section; a malformed section raises."""
    blob = bytes(blob)
    bad = StoreError(f"{where}: corrupt group table (a grouped codec's headers); re-copy the store")
    if len(blob) < 4:
        raise bad
    g = int(np.frombuffer(blob, dtype="<u4", count=1)[0])
    if g < 1 or len(blob) < 4 + 8 * g:
        raise bad
    first = np.frombuffer(blob, dtype="<u4", count=g, offset=4).astype(np.int64)
    ends = np.frombuffer(blob, dtype="<u4", count=g, offset=4 + 4 * g).astype(np.int64)
    body = blob[4 + 8 * g :]
    starts = np.concatenate([[0], ends[:-1]])
    if first[0] != 0 or np.any(np.diff(first) <= 0) or first[-1] >= max(layout.samples, 1):
        raise bad
    if np.any(ends < starts) or ends[-1] != len(body):
        raise bad
    return first, [body[a:b] for a, b in zip(starts.tolist(), ends.tolist())]


def _unzstd(blob: bytes | memoryview, what: str, where: str) -> bytes:
    try:
        return zstandard.ZstdDecompressor().decompress(bytes(blob))
    except zstandard.ZstdError as e:
        raise StoreError(f"{where}: corrupt {what} ({e}); re-copy the store") from None


def decode_labels(blob: bytes | memoryview, layout: ShardLayout, where: str) -> np.ndarray:
    raw = _unzstd(blob, "label list", where)
    if len(raw) != layout.samples * layout.label_size:
        raise StoreError(f"{where}: label list holds {len(raw)} bytes for {layout.samples} samples (corrupt shard)")
    return np.frombuffer(raw, dtype=layout.label_dtype)


def decode_keys(blob: bytes | memoryview, samples: int, where: str) -> list[str]:
    try:
        text = _unzstd(blob, "key list", where).decode()
    except UnicodeDecodeError as e:
        raise StoreError(f"{where}: corrupt key list ({e}); re-copy the store") from None
    keys = text.split("\n") if samples else []
    if len(keys) != samples:
        raise StoreError(f"{where}: key list holds {len(keys)} keys for {samples} samples (corrupt shard)")
    return keys


def parse_trailer(trailer: bytes, where: str, expect_samples: int, expect_payload: int, file_bytes: int) -> ShardLayout:
    """Check a shard's trailer against its manifest entry and the file's real size."""
    if len(trailer) != TRAILER.size:
        raise StoreError(f"{where}: shard is {file_bytes} bytes, too short for its trailer (truncated file?)")
    magic, n, payload, labels, keys, size, groups = TRAILER.unpack(trailer)
    if magic != SHARD_MAGIC:
        raise StoreError(f"{where}: not a seit shard or truncated/corrupted (bad trailer magic {magic!r})")
    layout = ShardLayout(n, payload, labels, keys, size, groups)
    if size not in (2, 4) or (n, payload) != (expect_samples, expect_payload) or layout.total_bytes != file_bytes:
        raise StoreError(
            f"{where}: trailer says {n} samples / {payload} payload bytes in {layout.total_bytes} bytes, the "
            f"manifest says {expect_samples} / {expect_payload} in {file_bytes}: the shard is corrupt or belongs "
            "to another store; re-copy the store or re-run the write"
        )
    return layout


def check_offsets(offsets: np.ndarray, payload_bytes: int, where: str) -> None:
    if offsets[0] != 0 or offsets[-1] != payload_bytes or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise StoreError(f"{where}: corrupt sample index (offsets not increasing from 0 to {payload_bytes})")


def check_file_name(name: Any, where: str) -> str:
    """Manifest file names are plain names inside the store (no paths, no hidden files)."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise StoreError(f"{where}: invalid file name {name!r} in the manifest (corrupt or hand-edited manifest)")
    return name


_MANIFEST_KEYS = {
    "format": str,
    "format_version": int,
    "num_samples": int,
    "grid_shape": list,
    "ids_dtype": str,
    "codebook_size": int,
    "codecs": list,
    "shards": list,
}
_FILE_KEYS = {"file": str, "sha256": str, "bytes": int}
_SHARD_KEYS = {**_FILE_KEYS, "samples": int, "payload_bytes": int, "codec": int}


def _require(obj: Any, keys: dict[str, type], where: str) -> None:
    if not isinstance(obj, dict):
        raise StoreError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    for key, tp in keys.items():
        if not isinstance(obj.get(key), tp) or (tp is int and isinstance(obj.get(key), bool)):
            raise StoreError(f"{where}: missing or invalid {key!r} (corrupt or hand-edited manifest)")


def validate_manifest(m: Any, where: str) -> dict[str, Any]:
    """Structural checks of a manifest; every problem names the manifest and the fix."""
    _require(m, _MANIFEST_KEYS, where)
    if m["format"] != FORMAT_NAME:
        raise StoreError(f"{where}: not a seit token store manifest (format {m['format']!r})")
    if m["format_version"] > FORMAT_VERSION:
        raise StoreError(
            f"{where}: written with store format version {m['format_version']}, this seit reads up to "
            f"{FORMAT_VERSION}; upgrade seit"
        )
    for i, c in enumerate(m["codecs"]):
        _require(c, {**_FILE_KEYS, "name": str, "params": dict}, f"{where}: codecs[{i}]")
        check_file_name(c["file"], where)
    for i, s in enumerate(m["shards"]):
        _require(s, _SHARD_KEYS, f"{where}: shards[{i}]")
        check_file_name(s["file"], where)
        if not 0 <= s["codec"] < len(m["codecs"]):
            raise StoreError(f"{where}: shards[{i}] names codec {s['codec']}, the manifest lists {len(m['codecs'])}")
    for kind in ARRAY_KINDS:
        if m.get(kind) is not None:
            _require(m[kind], {**_FILE_KEYS, "shape": list}, f"{where}: {kind}")
            check_file_name(m[kind]["file"], where)
    total = sum(s["samples"] for s in m["shards"])
    if total != m["num_samples"]:
        raise StoreError(f"{where}: shards hold {total} samples, the manifest says {m['num_samples']}")
    return m
