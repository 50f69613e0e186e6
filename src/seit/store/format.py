"""On-disk layout of a token store, format version 2 (described for other tools in docs/store-format.md).

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
    trailer   48 bytes           magic, n, P, L, K, label item size, G, key text bytes, CRC-32 (see TRAILER)

The trailer's CRC-32 covers every byte after the payload up to itself, so a reader checks the whole index
(offsets, labels, keys, groups, trailer fields) before trusting any of it; each sample's payload bytes carry
their codec's own checksum. Version 1 shards (40-byte trailer ``SEITSHD1``, no CRC) are still read, each one
checked against its manifest sha256 before use.

The groups section (little-endian): uint32 g, uint32 first[g] (first sample of each group; first[0] = 0,
increasing), uint32 end[g] (cumulative end of each header), then the headers back to back. A group's
samples are first[i] .. first[i + 1] - 1; a group the writer split across shards has its header in both.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard

from seit.store.codec import MAX_CODEBOOK_SIZE, ids_dtype
from seit.store.errors import StoreError

FORMAT_NAME = "seit-token-store"
PART_FORMAT_NAME = "seit-token-store-part"
FORMAT_VERSION = 2
CHECKSUM_KEY = "checksum"  # of a manifest or writer record: sha256 of its canonical JSON without this key
MANIFEST = "manifest.json"
ARRAY_KINDS = ("codebook", "synonyms", "code_ids")  # optional side arrays, each a content-addressed .npy
SHARD_MAGIC = b"SEITSHD2"
# magic, samples n, payload bytes P, labels bytes L, keys bytes K, label item size (2 or 4), groups bytes G,
# key text bytes (the keys frame decompressed), CRC-32 of the index and the trailer before this field
TRAILER = struct.Struct("<8sQQIIIIII")
V1_SHARD_MAGIC = b"SEITSHD1"
V1_TRAILER = struct.Struct("<8sQQIIII")  # format 1: no key text size, no CRC (shards checked by sha256)
INDEX_ZSTD_LEVEL = 12
MAX_PAYLOAD = (1 << 32) - 1  # offsets are uint32
# Sane limits on what a file may claim, checked before anything is allocated from it.
MAX_KEY_BYTES = 4096  # one key (a file name) in UTF-8
MAX_GRID_NUMEL = 1 << 20  # tokens per sample (SeiT: 32 x 32)
MAX_MANIFEST_BYTES = 256 << 20  # a manifest or writer record: ~200 bytes per shard
MAX_SIDE_FILE_BYTES = 1 << 30  # a codebook, synonym table, code id list or codec state
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # fullmatch: "$" would let a final newline in


def shard_name(part: int, index: int) -> str:
    return f"shard-{part:05d}-{index:06d}.tok"


def part_name(part: int) -> str:
    """The progress record of writer part ``part`` while the store is being written."""
    return f"part-{part:05d}.json"


def part_of(name: str) -> int | None:
    """The part number of a writer record's file name (``part-00003.json`` -> 3), None for any other name."""
    match = re.fullmatch(r"part-(\d{5})\.json", name)
    return int(match.group(1)) if match else None


def part_records(names: Iterable[str]) -> list[str]:
    """The writer records among ``names``, sorted."""
    return sorted(n for n in names if part_of(n) is not None)


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
    key_text_bytes: int = -1  # unknown in version 1 shards
    version: int = FORMAT_VERSION

    @property
    def trailer(self) -> struct.Struct:
        return TRAILER if self.version >= 2 else V1_TRAILER

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
        return self.groups_start + self.groups_bytes + self.trailer.size

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
    key_text = "\n".join(keys).encode()
    keys_blob = zstd.compress(key_text)
    groups_blob = encode_groups(groups)
    index = b"".join(
        [
            b"\0" * ((-payload) % 8),
            np.asarray(offsets, dtype="<u4").tobytes(),
            labels_blob,
            keys_blob,
            groups_blob,
            TRAILER.pack(
                SHARD_MAGIC, n, payload, len(labels_blob), len(keys_blob), size, len(groups_blob), len(key_text), 0
            )[:-4],
        ]
    )
    return index + zlib.crc32(index).to_bytes(4, "little")


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


def unzstd(blob: bytes | memoryview, bound: int, what: str, where: str, exact: bool = True) -> bytes:
    """One zstd frame that must hold exactly (or, with ``exact=False``, at most) ``bound`` bytes; the size the
    frame declares is checked before zstd allocates it."""
    try:
        data = bytes(blob)
        declared = zstandard.frame_content_size(data)
        if declared > bound:
            raise zstandard.ZstdError(f"frame claims {declared} bytes, at most {bound} expected")
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=max(bound, 1))
    except zstandard.ZstdError as e:
        raise StoreError(f"{where}: corrupt {what} ({e}); re-copy the store") from None
    if exact and len(raw) != bound:
        raise StoreError(f"{where}: {what} holds {len(raw)} bytes, the trailer says {bound} (corrupt shard)")
    return raw


def decode_labels(blob: bytes | memoryview, layout: ShardLayout, where: str) -> np.ndarray:
    raw = unzstd(blob, layout.samples * layout.label_size, "label list", where)
    return np.frombuffer(raw, dtype=layout.label_dtype)


def decode_keys(blob: bytes | memoryview, layout: ShardLayout, where: str) -> list[str]:
    samples = layout.samples
    if layout.key_text_bytes >= 0:
        raw = unzstd(blob, layout.key_text_bytes, "key list", where)
    else:  # version 1: the size is not recorded; a key is at most MAX_KEY_BYTES
        raw = unzstd(blob, samples * (MAX_KEY_BYTES + 1), "key list", where, exact=False)
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise StoreError(f"{where}: corrupt key list ({e}); re-copy the store") from None
    keys = text.split("\n") if samples else []
    if len(keys) != samples:
        raise StoreError(f"{where}: key list holds {len(keys)} keys for {samples} samples (corrupt shard)")
    return keys


def parse_trailer(
    tail: bytes | memoryview, where: str, expect_samples: int, expect_payload: int, file_bytes: int, version: int
) -> ShardLayout:
    """Check a shard's trailer (and, from version 2, the CRC of its whole index ``tail``: every byte after the
    payload) against its manifest entry and the file's real size; nothing is allocated from an unchecked field."""
    trailer_struct = TRAILER if version >= 2 else V1_TRAILER
    if len(tail) < trailer_struct.size:
        raise StoreError(f"{where}: shard is {file_bytes} bytes, too short for its trailer (truncated file?)")
    fields = trailer_struct.unpack(bytes(tail[-trailer_struct.size :]))
    magic = fields[0]
    if magic != (SHARD_MAGIC if version >= 2 else V1_SHARD_MAGIC):
        raise StoreError(
            f"{where}: not a format {version} seit shard, or truncated/corrupted (bad trailer magic {magic!r})"
        )
    if version >= 2:
        crc = fields[-1]
        if zlib.crc32(tail[:-4]) != crc:
            raise StoreError(f"{where}: index checksum mismatch, the shard is corrupt; re-copy the store")
        _, n, payload, labels, keys, size, groups, key_text, _ = fields
    else:
        (_, n, payload, labels, keys, size, groups), key_text = fields, -1
    layout = ShardLayout(n, payload, labels, keys, size, groups, key_text, 2 if version >= 2 else 1)
    if size not in (2, 4) or (n, payload) != (expect_samples, expect_payload) or layout.total_bytes != file_bytes:
        raise StoreError(
            f"{where}: trailer says {n} samples / {payload} payload bytes in {layout.total_bytes} bytes, the "
            f"manifest says {expect_samples} / {expect_payload} in {file_bytes}: the shard is corrupt or belongs "
            "to another store; re-copy the store or re-run the write"
        )
    if key_text > n * (MAX_KEY_BYTES + 1):
        raise StoreError(f"{where}: trailer claims {key_text} bytes of keys for {n} samples (corrupt shard)")
    return layout


def check_offsets(offsets: np.ndarray, payload_bytes: int, where: str) -> None:
    if offsets[0] != 0 or offsets[-1] != payload_bytes or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise StoreError(f"{where}: corrupt sample index (offsets not increasing from 0 to {payload_bytes})")


def check_file_name(name: Any, where: str) -> str:
    """File names in a manifest or writer record are plain names inside the store (no paths, no hidden files)."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise StoreError(f"{where}: invalid file name {name!r} (corrupt or hand-edited file)")
    return name


def json_sha256(obj: dict[str, Any]) -> str:
    """sha256 of ``obj`` without its checksum key, as canonical JSON (what a manifest's checksum covers)."""
    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sealed(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with its checksum: every field a reader uses is then covered."""
    return {**obj, CHECKSUM_KEY: json_sha256(obj)}


def check_seal(obj: dict[str, Any], where: str) -> None:
    """From format version 2 on a manifest or writer record must carry the checksum of its content."""
    if CHECKSUM_KEY not in obj and obj.get("format_version", 0) < 2:
        return  # format 1: written before checksums
    if obj.get(CHECKSUM_KEY) != json_sha256(obj):
        raise StoreError(
            f"{where}: checksum mismatch, the file is corrupt or was edited by hand; re-copy the store "
            "(edit stores with `seit store` commands)"
        )


def load_json(data: bytes, where: str) -> Any:
    """Parse a manifest or writer record (bounded in size by the caller)."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise StoreError(f"{where}: not valid JSON ({e}); the file is corrupt, re-copy the store") from None


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
_RECORD_KEYS = {
    "format_version": int,
    "part": int,
    "complete": bool,
    "grid_shape": list,
    "codebook_size": int,
    "ids_dtype": str,
    "codec_name": str,
    "arrays": dict,
    "shards": list,
    "created": dict,
    "writer": dict,
}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _require(obj: Any, keys: dict[str, type], where: str) -> None:
    if not isinstance(obj, dict):
        raise StoreError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    for key, tp in keys.items():
        value = obj.get(key)
        if not isinstance(value, tp) or (tp is int and not _is_int(value)) or (tp is int and value < 0):
            raise StoreError(f"{where}: missing or invalid {key!r} (corrupt or hand-edited file)")


def _check_file(entry: Any, keys: dict[str, type], where: str) -> None:
    _require(entry, keys, where)
    check_file_name(entry["file"], where)


def _check_header(m: dict[str, Any], where: str) -> None:
    """What manifests and writer records share: version, grid, codebook size, side arrays, shards."""
    if m["format_version"] > FORMAT_VERSION:
        raise StoreError(
            f"{where}: written with store format version {m['format_version']}, this seit reads up to "
            f"{FORMAT_VERSION}; upgrade seit"
        )
    grid = m["grid_shape"]
    if not grid or not all(_is_int(s) and s >= 1 for s in grid) or np.prod(grid, dtype=float) > MAX_GRID_NUMEL:
        raise StoreError(f"{where}: grid_shape {grid} is not 1..{MAX_GRID_NUMEL} tokens per sample (corrupt file)")
    if not 1 <= m["codebook_size"] <= MAX_CODEBOOK_SIZE:
        raise StoreError(f"{where}: codebook_size {m['codebook_size']} outside 1..{MAX_CODEBOOK_SIZE} (corrupt file)")
    if m["ids_dtype"] != ids_dtype(m["codebook_size"]).name:
        raise StoreError(
            f"{where}: ids_dtype {m['ids_dtype']!r} does not match codebook size {m['codebook_size']} "
            f"({ids_dtype(m['codebook_size']).name}); the file is corrupt"
        )
    names = m.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(c, str) for c in names)):
        raise StoreError(f"{where}: class_names must be a list of strings or null (corrupt file)")
    arrays = m["arrays"] if "arrays" in m else {kind: m.get(kind) for kind in ARRAY_KINDS}
    for kind in ARRAY_KINDS:
        entry = arrays.get(kind)
        if entry is not None:
            _check_file(entry, {**_FILE_KEYS, "shape": list, "dtype": str}, f"{where}: {kind}")
            if not 1 <= len(entry["shape"]) <= 2 or not all(_is_int(d) and d >= 0 for d in entry["shape"]):
                raise StoreError(f"{where}: {kind} shape {entry['shape']} is not 1 or 2 sizes (corrupt file)")
    for i, s in enumerate(m["shards"]):
        _check_file(s, _SHARD_KEYS, f"{where}: shards[{i}]")


def validate_manifest(m: Any, where: str) -> dict[str, Any]:
    """Structural checks of a manifest, then its checksum; every problem names the manifest and the fix."""
    _require(m, _MANIFEST_KEYS, where)
    if m["format"] != FORMAT_NAME:
        raise StoreError(f"{where}: not a seit token store manifest (format {m['format']!r})")
    _check_header(m, where)
    for i, c in enumerate(m["codecs"]):
        _check_file(c, {**_FILE_KEYS, "name": str, "params": dict}, f"{where}: codecs[{i}]")
    for i, s in enumerate(m["shards"]):
        if not s["codec"] < len(m["codecs"]):
            raise StoreError(f"{where}: shards[{i}] names codec {s['codec']}, the manifest lists {len(m['codecs'])}")
    total = sum(s["samples"] for s in m["shards"])
    if total != m["num_samples"]:
        raise StoreError(f"{where}: shards hold {total} samples, the manifest says {m['num_samples']}")
    check_seal(m, where)
    return m


def validate_record(record: Any, where: str) -> dict[str, Any]:
    """Structural checks of a writer record (``part-*.json``), then its checksum."""
    if not isinstance(record, dict) or record.get("format") != PART_FORMAT_NAME:
        raise StoreError(f"{where}: not a seit writer record")
    _require(record, _RECORD_KEYS, where)
    if record["format_version"] < FORMAT_VERSION:
        raise StoreError(
            f"{where}: an unfinished write by an older seit (store format {record['format_version']}); finish it "
            "with that version, or delete the directory and start over"
        )
    _check_header(record, where)
    _require(record["created"], {"time": str, "host": str}, f"{where}: created")
    if record.get("codec") is not None:
        _check_file(record["codec"], {**_FILE_KEYS, "name": str, "params": dict}, f"{where}: codec")
    check_seal(record, where)
    return record
