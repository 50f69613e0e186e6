"""TokenStore: O(1) random access to a finished token store, local (memory-mapped) or at any fsspec URL.

Opening reads only ``manifest.json``; a shard's index is read the first time one of its samples is asked
for, and its payload is never decompressed as a whole. Only ids travel: batches are int16/int32 arrays.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from seit.store.arrays import read_array, read_checked
from seit.store.codec import Codec, codec_class, ids_dtype
from seit.store.errors import StoreError
from seit.store.files import StoreFiles
from seit.store.format import MANIFEST, MAX_MANIFEST_BYTES, load_json, part_records, validate_manifest
from seit.store.shard import ShardReader
from seit.utils.progress import progress


class TokenStore:
    """A token store opened for reading; ``store[i] -> (ids, label)``, ``get_batch(indices)``.

    ``verify``: check each shard's sha256 before returning its first sample (local: hashes the memory-mapped
    file once; remote: downloads the shard once). The manifest's checksum, each shard's index CRC, each sample's
    checksum, sizes and id ranges are always checked.
    """

    def __init__(self, files: StoreFiles, manifest: dict[str, Any], *, verify: bool = True) -> None:
        self.files = files
        self.manifest = manifest
        self.verify = verify
        self.grid_shape: tuple[int, ...] = tuple(manifest["grid_shape"])
        self.codebook_size: int = manifest["codebook_size"]
        self.ids_dtype = ids_dtype(self.codebook_size)
        self.format_version: int = manifest["format_version"]
        self.class_names: list[str] | None = manifest.get("class_names")
        shards = manifest["shards"]
        self._starts = np.concatenate([[0], np.cumsum([s["samples"] for s in shards], dtype=np.int64)])
        self._shard_codec = np.array([s["codec"] for s in shards], dtype=np.int64)
        self._shards: dict[int, ShardReader] = {}
        self._codecs: dict[int, Codec] = {}
        self._cache: dict[str, Any] = {}

    @classmethod
    def open(
        cls, path_or_url: str | os.PathLike, *, verify: bool = True, storage_options: dict[str, Any] | None = None
    ) -> TokenStore:
        files = StoreFiles(path_or_url, storage_options)
        if files.is_local and not os.path.isdir(files.root):
            raise StoreError(f"{files.url}: no such directory (expected a token store)")
        if not files.exists(MANIFEST):
            parts = part_records(files.listdir())
            if parts:
                raise StoreError(
                    f"{files.url}: unfinished token store (no {MANIFEST}; writer records {', '.join(parts[:4])}): "
                    "re-run the write with resume=True (--resume), or call merge_parts once every part finished"
                )
            raise StoreError(
                f"{files.url}: not a token store (no {MANIFEST}); create one with `seit tokenize` or "
                "`seit store import-seit`"
            )
        where = files.where(MANIFEST)
        manifest = load_json(files.read_bytes(MANIFEST, MAX_MANIFEST_BYTES), where)
        return cls(files, validate_manifest(manifest, where), verify=verify)

    # ---- metadata -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def num_shards(self) -> int:
        return len(self.manifest["shards"])

    @property
    def config(self) -> dict[str, Any]:
        """The user config saved at creation (e.g. the tokenizer's)."""
        return self.manifest.get("created", {}).get("config") or {}

    @property
    def labels(self) -> np.ndarray:
        """Every sample's label, int64 [N] (-1: unlabelled). Reads each shard's index once."""
        if "labels" not in self._cache:
            parts = [self._shard(s).labels for s in range(self.num_shards)]
            self._cache["labels"] = np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64)
        return self._cache["labels"]

    @property
    def keys(self) -> list[str]:
        """Every sample's key (source file name or id), in store order."""
        if "keys" not in self._cache:
            self._cache["keys"] = [k for s in range(self.num_shards) for k in self._shard(s).sample_keys()]
        return self._cache["keys"]

    def key(self, index: int) -> str:
        s, j = self._locate(np.array([index]))
        return self._shard(int(s[0])).sample_keys()[int(j[0])]

    @property
    def codebook(self) -> np.ndarray | None:
        """Code vectors, float32 [K, D], or None if the store has none."""
        return self._array("codebook")

    @property
    def synonyms(self) -> np.ndarray | None:
        """Per code, similar codes most similar first, [K, k], or None."""
        return self._array("synonyms")

    @property
    def code_ids(self) -> np.ndarray | None:
        """The tokenizer id of each codebook row, int64 [K], or None when the store does not say.

        ``seit tokenize`` writes ``arange(K)``; after pruning, store id ``i`` is tokenizer code ``code_ids[i]``.
        Stores imported from SeiT's release files have none (their ids' tokenizer codes are unknown).
        """
        ids = self._array("code_ids")
        return None if ids is None else ids.astype(np.int64)

    def _array(self, kind: str) -> np.ndarray | None:
        if kind not in self._cache:
            entry = self.manifest.get(kind)
            self._cache[kind] = None if entry is None else read_array(self.files, entry)
        return self._cache[kind]

    # ---- access ---------------------------------------------------------------------------------------
    def _shard(self, s: int) -> ShardReader:
        if s not in self._shards:
            self._shards[s] = self._open_shard(s, self.verify)
        return self._shards[s]

    def _open_shard(self, s: int, verify: bool) -> ShardReader:
        classes = None if self.class_names is None else len(self.class_names)
        entry = self.manifest["shards"][s]
        return ShardReader(self.files, entry, verify=verify, version=self.format_version, num_classes=classes)

    def shard_range(self, s: int) -> range:
        """The store indices of shard ``s``'s samples."""
        return range(int(self._starts[s]), int(self._starts[s + 1]))

    def check_shard(self, s: int) -> None:
        """Re-read shard ``s`` and check its sha256, index, keys and labels (decoding is the caller's)."""
        reader = self._open_shard(s, verify=True)
        if not reader.verified:  # format 1 shards are checked on opening
            reader.check_content()
        self._shards[s] = reader
        reader.sample_keys()

    def codec_for(self, c: int) -> Codec:
        """Codec ``c`` of the manifest, loaded and checked."""
        return self._codec(c)

    def _codec(self, c: int) -> Codec:
        if c not in self._codecs:
            entry = self.manifest["codecs"][c]
            state = read_checked(self.files, entry)
            try:
                self._codecs[c] = codec_class(entry["name"]).load(
                    self.grid_shape, self.codebook_size, entry["params"], state
                )
            except StoreError:
                raise
            except Exception as e:
                raise StoreError(f"{self.files.where(entry['file'])}: cannot load codec {entry['name']!r}: {e}") from e
        return self._codecs[c]

    def _locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            bad = indices[(indices < 0) | (indices >= n)][0]
            raise IndexError(f"sample index {bad} out of range for a store of {n} samples")
        shard = np.searchsorted(self._starts, indices, side="right") - 1
        return shard, indices - self._starts[shard]

    def read_blobs(self, indices: Sequence[int] | np.ndarray) -> list[bytes | memoryview]:
        """The encoded bytes of samples ``indices`` (global), in that order."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        shard, local = self._locate(idx)
        out: list[bytes | memoryview] = [b""] * len(idx)
        for s in np.unique(shard).tolist():
            sel = np.flatnonzero(shard == s)
            for i, blob in zip(sel.tolist(), self._shard(s).blobs(local[sel])):
                out[i] = blob
        return out

    def decode(self, indices: Sequence[int] | np.ndarray, blobs: Sequence[bytes | memoryview]) -> np.ndarray:
        """Decode ``blobs`` of samples ``indices`` to ids [B, *grid]; a bad sample raises naming its shard."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        shard, local = self._locate(idx)
        out = np.empty((len(idx), *self.grid_shape), dtype=self.ids_dtype)
        codec_of = self._shard_codec[shard]
        for c in np.unique(codec_of).tolist():
            sel = np.flatnonzero(codec_of == c)
            codec = self._codec(c)
            try:
                ids = codec.decode_many([blobs[i] for i in sel])
            except Exception:
                ids = None
            if ids is None or ids.shape != (len(sel), *self.grid_shape) or not self._in_range(ids):
                self._blame(codec, sel, idx, shard, local, blobs)
            out[sel] = ids
        return out

    def _in_range(self, ids: np.ndarray) -> bool:
        return not ids.size or (ids.min() >= 0 and ids.max() < self.codebook_size)

    def _blame(self, codec, sel, idx, shard, local, blobs) -> None:
        """Find the first sample of a failed batch decode and raise an error naming it."""
        for i in sel.tolist():
            problem = None
            try:
                ids = codec.decode_many([blobs[i]])
                if ids.shape != (1, *self.grid_shape):
                    problem = f"decodes to shape {list(ids.shape[1:])}, the store holds {list(self.grid_shape)}"
                elif not self._in_range(ids):
                    problem = f"decodes to ids in [{ids.min()}, {ids.max()}], outside the codebook"
            except Exception as e:
                problem = f"cannot be decoded ({type(e).__name__}: {e})"
            if problem:
                reader = self._shard(int(shard[i]))
                key = reader.sample_keys()[int(local[i])]
                raise StoreError(
                    f"{reader.where}: sample {int(local[i])} (store index {int(idx[i])}, key {key!r}) {problem}; "
                    "the shard is corrupt: run `seit store verify`, then re-copy or re-create the store"
                )
        raise StoreError(f"{self.files.url}: a batch failed to decode but every sample decodes alone (codec bug?)")

    def labels_of(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if "labels" in self._cache:
            self._locate(idx)
            return self._cache["labels"][idx]
        shard, local = self._locate(idx)
        out = np.empty(len(idx), dtype=np.int64)
        for s in np.unique(shard).tolist():
            sel = np.flatnonzero(shard == s)
            out[sel] = self._shard(s).labels[local[sel]]
        return out

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids [B, *grid] int16/int32, labels [B] int64) of samples ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return self.decode(idx, self.read_blobs(idx)), self.labels_of(idx)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        index = int(index)
        if index < 0:
            index += len(self)
        ids, labels = self.get_batch([index])
        return ids[0], int(labels[0])

    def iter_batches(
        self, batch_size: int = 4096, *, show_progress: bool = False, desc: str = "read"
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every sample in store order as (indices, ids, labels) batches."""
        with progress(total=len(self), desc=desc, unit="sample", disable=None if show_progress else True) as bar:
            for start in range(0, len(self), batch_size):
                idx = np.arange(start, min(start + batch_size, len(self)))
                ids, labels = self.get_batch(idx)
                yield idx, ids, labels
                bar.update(len(idx))

    def close(self) -> None:
        self._shards.clear()
        self._cache.clear()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # memory maps and loaded shards stay behind; each process re-opens what it touches
        return {"files": self.files, "manifest": self.manifest, "verify": self.verify}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["files"], state["manifest"], verify=state["verify"])

    def __repr__(self) -> str:
        return (
            f"TokenStore({self.files.url!r}, samples={len(self)}, grid={list(self.grid_shape)}, "
            f"codebook_size={self.codebook_size}, shards={self.num_shards})"
        )
