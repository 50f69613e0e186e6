"""Writing and reading one shard file (layout in :mod:`seit.store.format`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from seit.store.ans_pages import GroupedBlob
from seit.store.errors import StoreError
from seit.store.files import StoreFiles
from seit.store.format import (
    FORMAT_VERSION,
    check_offsets,
    decode_groups,
    decode_keys,
    decode_labels,
    encode_index,
    parse_trailer,
)
from seit.utils.io import atomic_open

MAX_FETCH_BYTES = 64 << 20  # bound on the bytes one remote fetch round holds in memory


class _Discarded(Exception):
    """Thrown into the shard's atomic_open to delete its temporary file."""


class ShardWriter:
    """One shard being written: samples stream into a temporary file; commit() renames it into place."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name, self.path = name, directory / name
        self._target = atomic_open(self.path, "wb")
        self._file = self._target.__enter__()
        self._sha = hashlib.sha256()
        self._offsets = [0]
        self._labels: list[int] = []
        self._keys: list[str] = []
        self._groups: list[tuple[int, bytes]] = []  # (first sample, header) of grouped codecs' groups

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def payload_bytes(self) -> int:
        return self._offsets[-1]

    def add(self, blob: bytes | GroupedBlob, label: int, key: str) -> None:
        if isinstance(blob, GroupedBlob):  # a group's header is kept once, where its first sample in this shard is
            if not self._groups or self._groups[-1][1] is not blob.header:
                self._groups.append((len(self), blob.header))
            blob = blob.body
        self._write(blob)
        self._sha.update(blob)
        self._offsets.append(self._offsets[-1] + len(blob))
        self._labels.append(label)
        self._keys.append(key)

    def commit(self) -> dict[str, Any]:
        """Write the index and trailer, fsync, rename; returns the shard's manifest entry."""
        tail = encode_index(
            np.asarray(self._offsets, dtype=np.int64), np.asarray(self._labels), self._keys, self._groups
        )
        self._write(tail)
        self._sha.update(tail)
        self._target.__exit__(None, None, None)
        return {
            "file": self.name,
            "samples": len(self),
            "payload_bytes": self.payload_bytes,
            "bytes": self.payload_bytes + len(tail),
            "sha256": self._sha.hexdigest(),
        }

    def discard(self) -> None:
        self._target.__exit__(_Discarded, _Discarded(), None)

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as e:  # a full disk: name the shard, as every other write error does
            if e.filename is not None:
                raise
            raise OSError(e.errno, e.strerror, str(self.path)) from None


def coalesce(starts: np.ndarray, ends: np.ndarray, max_gap: int) -> list[tuple[int, int, int, int]]:
    """Merge sorted byte ranges closer than ``max_gap`` into blocks (start, end, first member, end member)."""
    blocks: list[tuple[int, int, int, int]] = []
    lo = 0
    bs, be = int(starts[0]), int(ends[0])
    for i in range(1, len(starts)):
        s, e = int(starts[i]), int(ends[i])
        if s - be <= max_gap and max(be, e) - bs <= MAX_FETCH_BYTES:
            be = max(be, e)
            continue
        blocks.append((bs, be, lo, i))
        lo, bs, be = i, s, e
    blocks.append((bs, be, lo, len(starts)))
    return blocks


class ShardReader:
    """Random access to one shard: memory-mapped when local, byte ranges through fsspec otherwise.

    Construction reads only the index, checks its CRC, then its sizes against the manifest entry and the
    labels against ``num_classes``. With ``verify``, the whole file's sha256 is checked before the first
    sample is returned (remote shards are then served from that downloaded copy). Format 1 shards have no
    index CRC, so they are always checked by sha256, before their index is read.
    """

    def __init__(
        self,
        files: StoreFiles,
        entry: dict[str, Any],
        *,
        verify: bool = True,
        version: int = FORMAT_VERSION,
        num_classes: int | None = None,
    ) -> None:
        self.files = files
        self.entry = entry
        self.name = entry["file"]
        self.where = files.where(self.name)
        size = files.size(self.name)
        if size != entry["bytes"]:
            raise StoreError(
                f"{self.where}: shard is {size} bytes, the manifest says {entry['bytes']} (truncated or replaced "
                "file); re-copy the store or re-create it"
            )
        payload = entry["payload_bytes"]
        if payload > size:
            raise StoreError(f"{self.where}: manifest says {payload} payload bytes in a {size}-byte shard (corrupt)")
        self._payload: memoryview | None = None
        self.verified = False
        if version < 2:
            self.check_content()
        if files.is_local:
            whole = memoryview(files.map(self.name))
            self._payload = whole[:payload]
            tail = whole[payload:]
        elif self._payload is None:
            tail = memoryview(files.read_ranges(self.name, [payload], [size])[0])
        else:
            tail = memoryview(self._data)[payload:]
        self.layout = parse_trailer(tail, self.where, entry["samples"], payload, size, version)
        lay, base = self.layout, payload
        self.offsets = np.frombuffer(tail, dtype="<u4", count=lay.samples + 1, offset=lay.offsets_start - base)
        check_offsets(self.offsets, payload, self.where)
        self.labels = decode_labels(tail[lay.labels_start - base : lay.keys_start - base], lay, self.where)
        high = num_classes if num_classes is not None else 1 << 31
        bad = np.flatnonzero((self.labels < -1) | (self.labels >= high))
        if bad.size:
            j = int(bad[0])
            raise StoreError(
                f"{self.where}: sample {j} has label {int(self.labels[j])}, outside -1..{high - 1} (corrupt shard)"
            )
        self._keys_blob = tail[lay.keys_start - base : lay.groups_start - base]
        self._keys: list[str] | None = None
        self._group_first: np.ndarray | None = None
        self._group_headers: list[bytes] = []
        if lay.groups_bytes:
            groups = tail[lay.groups_start - base : len(tail) - lay.trailer.size]
            self._group_first, self._group_headers = decode_groups(groups, lay, self.where)
        self.verified = self.verified or not verify

    def __len__(self) -> int:
        return self.layout.samples

    def sample_keys(self) -> list[str]:
        if self._keys is None:
            self._keys = decode_keys(self._keys_blob, self.layout, self.where)
        return self._keys

    def check_content(self) -> None:
        """Compare the whole file with its manifest sha256."""
        sha = hashlib.sha256()
        if self.files.is_local:
            whole = memoryview(self.files.map(self.name))
            for i in range(0, len(whole), 16 << 20):
                sha.update(whole[i : i + (16 << 20)])
        else:
            self._data = self.files.read_bytes(self.name, self.entry["bytes"])
            sha.update(self._data)
            self._payload = memoryview(self._data)[: self.entry["payload_bytes"]]
        if sha.hexdigest() != self.entry["sha256"]:
            raise StoreError(
                f"{self.where}: sha256 mismatch, the shard is corrupt; "
                "re-copy it from the source or re-create the store"
            )
        self.verified = True

    def blobs(self, local: np.ndarray) -> list[bytes | memoryview | GroupedBlob]:
        """Encoded bytes of samples ``local`` (indices within this shard), in that order; with their group's
        header for grouped codecs."""
        if not self.verified:
            self.check_content()
        starts = self.offsets[local].astype(np.int64)
        ends = self.offsets[local + 1].astype(np.int64)
        if self._payload is not None:
            p = self._payload
            out = [p[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
        else:
            out = self._fetch(starts, ends)
        if self._group_first is None:
            return out
        headers = self._group_headers
        group = (np.searchsorted(self._group_first, local, side="right") - 1).tolist()
        return [GroupedBlob(headers[g], body) for g, body in zip(group, out)]

    def _fetch(self, starts: np.ndarray, ends: np.ndarray) -> list[bytes | memoryview]:
        """Remote reads: nearby ranges merged into blocks; only the samples' bytes are kept."""
        order = np.argsort(starts, kind="stable")
        blocks = coalesce(starts[order], ends[order], self.files.max_gap)
        out: list[bytes | memoryview] = [b""] * len(starts)
        round_start = 0
        while round_start < len(blocks):  # fetch rounds of at most MAX_FETCH_BYTES
            round_end, total = round_start, 0
            while round_end < len(blocks) and (round_end == round_start or total < MAX_FETCH_BYTES):
                total += blocks[round_end][1] - blocks[round_end][0]
                round_end += 1
            chunk = blocks[round_start:round_end]
            datas = self.files.read_ranges(self.name, [b[0] for b in chunk], [b[1] for b in chunk])
            for (bs, _, lo, hi), data in zip(chunk, datas):
                for i in order[lo:hi].tolist():
                    out[i] = data[starts[i] - bs : ends[i] - bs]
            round_start = round_end
        return out
