"""StoreWriter: write a token store crash-safely, resumably, and from many processes at once.

Each writer is one *part* (rank ``r`` of a torchrun job, or part 0 of a single writer). It buffers the first
``fit_samples`` samples to fit its codec, then streams samples into shards (a grouped codec's a group at a
time). A shard is written under a temporary name and renamed when complete; after each rename the part's
record ``part-RRRRR.json`` is rewritten atomically, so it always lists exactly the durable shards.
``merge_parts`` turns the finished parts' records into ``manifest.json``, written last: a store without it
never reads as complete.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seit import __version__
from seit.config import config_differences
from seit.store.arrays import KINDS, array_entry, check_array, read_checked, write_array
from seit.store.codec import DEFAULT_CODEC, MAX_CODEBOOK_SIZE, Codec, codec_class, ids_dtype
from seit.store.errors import StoreError
from seit.store.files import StoreFiles, is_url, local_path
from seit.store.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    MAX_KEY_BYTES,
    MAX_MANIFEST_BYTES,
    PART_FORMAT_NAME,
    codec_state_name,
    load_json,
    part_name,
    part_of,
    part_records,
    sealed,
    shard_name,
    validate_manifest,
    validate_record,
)
from seit.store.lock import WriterLock
from seit.store.shard import ShardReader, ShardWriter
from seit.utils.io import atomic_write_bytes, atomic_write_json
from seit.utils.progress import progress

MAX_SHARD_BYTES = 1 << 31  # keeps every offset of a shard within uint32


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class StoreWriter:
    """Append samples (``ids`` [*grid_shape], ``label``, ``key``) to a new token store.

    ``part``: None for a single writer (``close`` writes the manifest); ``r`` for rank r of a multi-process
    job (``close`` finishes the part; rank 0 then calls ``merge_parts(path, world_size)``). The store's
    sample order is part 0's samples, then part 1's, ...

    ``codebook`` float [K, D], ``synonyms`` ids [K, k] and ``code_ids`` [K] (the tokenizer id of each
    codebook row) are optional side arrays; every part of a store must pass the same ones.

    ``codec_options``: keyword options of the codec's ``fit`` (e.g. ``{"group": 1024}`` for ``ctx-ans``; see
    docs/store-codec.md); the fitted codec's parameters are saved in the manifest.

    ``resume``: continue an interrupted write of the same part (same settings, arrays and ``config``); skip
    the inputs whose key is in ``done_keys`` and append the rest in their original order. Keys identify
    samples, so they must be unique.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        grid_shape: Sequence[int],
        codebook_size: int,
        class_names: Sequence[str] | None = None,
        codebook: Any = None,
        synonyms: Any = None,
        code_ids: Any = None,
        shard_bytes: int = 128 << 20,
        codec: str = DEFAULT_CODEC,
        codec_options: dict[str, Any] | None = None,
        fit_samples: int = 4096,
        part: int | None = None,
        config: dict[str, Any] | None = None,
        resume: bool = False,
        show_progress: bool = False,
        total: int | None = None,
    ) -> None:
        if is_url(path):
            raise StoreError(
                f"{path}: writers need a local or mounted directory; write there, then copy the finished "
                "store to object storage (reading from any fsspec URL works)"
            )
        self.path = local_path(path)
        self.grid_shape = tuple(int(s) for s in grid_shape)
        if not self.grid_shape or min(self.grid_shape) < 1:
            raise StoreError(f"grid_shape {list(self.grid_shape)}: needs at least one dimension, all >= 1")
        if not 1 <= codebook_size <= MAX_CODEBOOK_SIZE:
            raise StoreError(f"codebook_size {codebook_size} outside 1..{MAX_CODEBOOK_SIZE}")
        if not 1 <= shard_bytes <= MAX_SHARD_BYTES:
            raise StoreError(f"shard_bytes {shard_bytes} outside 1..{MAX_SHARD_BYTES}")
        if fit_samples < 1:
            raise StoreError(f"fit_samples must be >= 1, got {fit_samples}")
        codec_class(codec).check_options(codec_options or {})  # unknown names fail now, not after buffering
        if part is not None and part < 0:
            raise StoreError(f"part must be >= 0, got {part}")
        self.codebook_size = int(codebook_size)
        self.ids_dtype = ids_dtype(codebook_size)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.shard_bytes = int(shard_bytes)
        self.codec_name = codec
        self.codec_options = dict(codec_options or {})
        self.fit_samples = int(fit_samples)
        self.part = 0 if part is None else int(part)
        self.single = part is None
        self.config = dict(config or {})
        try:
            json.dumps(self.config)
        except TypeError as e:
            raise StoreError(f"config must be JSON-serialisable (it goes into the manifest): {e}") from None
        self._arrays = {
            kind: None if arr is None else check_array(kind, arr, self.codebook_size)
            for kind, arr in zip(KINDS, (codebook, synonyms, code_ids))
        }
        self._arrays_entries: dict[str, dict[str, Any] | None] = {}
        self._codec: Codec | None = None
        self._codec_entry: dict[str, Any] | None = None
        self._buffer: list[tuple[np.ndarray, int, str]] = []
        self._shards: list[dict[str, Any]] = []
        self._current: ShardWriter | None = None
        self._done_keys: frozenset[str] = frozenset()
        self._finished_store = False
        self._closed = False
        self._created = _now()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = WriterLock(self.path, self.part)
        try:
            self._start(resume)
        except BaseException:
            self._lock.release()
            raise
        disable = None if show_progress else True
        self._bar = progress(total=total, desc=f"write {self.path.name}", unit="sample", disable=disable)

    # ---- opening: fresh start or resume ---------------------------------------------------------------
    def _start(self, resume: bool) -> None:
        if (self.path / MANIFEST).exists():
            if not resume:
                raise StoreError(
                    f"{self.path}: already holds a finished token store; write to a new directory or delete it"
                )
            from seit.store.reader import TokenStore

            with TokenStore.open(self.path, verify=False) as store:
                self._check_settings(store.manifest, store.config, self.path / MANIFEST)
                self._done_keys = frozenset(store.keys)
            self._finished_store = True
            return
        record_path = self.path / part_name(self.part)
        if record_path.exists():
            if not resume:
                raise StoreError(
                    f"{self.path}: holds an unfinished write of part {self.part} ({record_path.name}); pass "
                    "resume=True (--resume) to continue it, or delete the directory to start over"
                )
            self._resume(record_path)
        else:
            self._remove_strays(keep=set())
            self._arrays_entries = {
                kind: None if arr is None else write_array(self.path, kind, arr) for kind, arr in self._arrays.items()
            }
            self._write_record(complete=False)

    def _check_settings(self, saved: dict[str, Any], saved_config: dict[str, Any], where: Path) -> None:
        mine = {
            "grid_shape": list(self.grid_shape),
            "codebook_size": self.codebook_size,
            "class_names": self.class_names,
        }
        for key, value in mine.items():
            if saved.get(key) != value:
                raise StoreError(
                    f"{where}: the write being resumed has {key}={saved.get(key)!r}, this writer {value!r}; "
                    "resume with the original settings or write a new store"
                )
        saved_config = saved_config or {}
        changed = config_differences(saved_config, self.config)
        changed += [f"{k}: {saved_config[k]!r} there, absent now" for k in saved_config if k not in self.config]
        if changed:
            raise StoreError(
                f"{where}: the write being resumed was made with another config ({'; '.join(changed[:3])[:500]}); "
                "resume with the original settings or write a new store"
            )

    def _resume(self, record_path: Path) -> None:
        record = _read_record(self.path, self.part)
        self._check_settings(record, record.get("config") or {}, record_path)
        if record["codec_name"] != self.codec_name:
            raise StoreError(
                f"{record_path}: the write being resumed uses codec {record['codec_name']!r}, this writer "
                f"{self.codec_name!r}; resume with the original codec"
            )
        self._arrays_entries = record["arrays"]
        for kind, arr in self._arrays.items():
            saved = self._arrays_entries.get(kind)
            if arr is not None and (saved is None or array_entry(kind, arr)[0]["sha256"] != saved["sha256"]):
                raise StoreError(f"{record_path}: the write being resumed has a different {kind}; pass the original")
        self._created = record["created"]["time"]
        files = StoreFiles(self.path)
        if record["codec"] is not None:
            entry = record["codec"]
            try:
                self._codec = codec_class(entry["name"]).load(
                    self.grid_shape, self.codebook_size, entry["params"], read_checked(files, entry)
                )
            except StoreError:
                raise
            except Exception as e:
                raise StoreError(f"{files.where(entry['file'])}: cannot load codec {entry['name']!r}: {e}") from e
            self._codec_entry = entry
        keys: list[str] = []
        classes = None if self.class_names is None else len(self.class_names)
        for entry in record["shards"]:
            keys.extend(ShardReader(files, entry, verify=False, num_classes=classes).sample_keys())
        self._shards = record["shards"]
        self._done_keys = frozenset(keys)
        self._remove_strays(keep={s["file"] for s in self._shards})

    def _remove_strays(self, keep: set[str]) -> None:
        """Delete this part's temporary files and shards its record does not list (from a killed run)."""
        mine = (f"shard-{self.part:05d}-", f".shard-{self.part:05d}-", f".{part_name(self.part)}.")
        mine += (f".{codec_state_name(self.part)}.",)
        for name in os.listdir(self.path):
            if name.startswith(mine) and name not in keep:
                os.unlink(self.path / name)

    # ---- appending ------------------------------------------------------------------------------------
    @property
    def done_keys(self) -> frozenset[str]:
        """Keys already durable in the store when this writer opened: a resumed job skips these inputs."""
        return self._done_keys

    def append(self, ids: Any, label: int, key: str) -> None:
        self.append_batch(np.asarray(ids)[None], [label], [key])

    def append_batch(self, ids: Any, labels: Sequence[int] | np.ndarray, keys: Sequence[str]) -> None:
        """Append B samples: ``ids`` [B, *grid_shape] (any integer dtype), ``labels`` [B], ``keys`` [B]."""
        if self._closed:
            raise StoreError(f"{self.path}: writer is closed")
        if self._finished_store:
            raise StoreError(f"{self.path}: the store is already complete; nothing is left to append")
        ids = self._check_batch(ids, labels, keys)
        self._buffer.extend(zip(ids, np.asarray(labels).tolist(), keys))
        if self._codec is None and len(self._buffer) >= self.fit_samples:
            self._fit()
        if self._codec is not None:
            self._encode_buffer(final=False)
        self._bar.update(len(ids))

    def _check_batch(self, ids: Any, labels: Any, keys: Sequence[str]) -> np.ndarray:
        ids = np.asarray(ids)
        labels = np.asarray(labels)
        if not np.issubdtype(ids.dtype, np.integer):
            raise StoreError(f"ids must be integers, got dtype {ids.dtype}")
        if ids.shape[1:] != self.grid_shape:
            raise StoreError(
                f"ids batch has sample shape {list(ids.shape[1:])}, the store holds {list(self.grid_shape)}"
            )
        if labels.ndim != 1 or not (len(ids) == len(labels) == len(keys)):
            raise StoreError(
                f"got ids {list(ids.shape)}, labels {list(labels.shape)} and {len(keys)} keys; "
                "expected [B, *grid_shape], [B] and B keys"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= self.codebook_size):
            raise StoreError(f"ids in [{ids.min()}, {ids.max()}], outside the codebook of size {self.codebook_size}")
        if labels.size:
            if not np.issubdtype(labels.dtype, np.integer):
                raise StoreError(f"labels must be integers, got dtype {labels.dtype}")
            high = len(self.class_names) if self.class_names is not None else 1 << 31
            if labels.min() < -1 or labels.max() >= high:
                raise StoreError(f"labels in [{labels.min()}, {labels.max()}], expected -1 (unlabelled) .. {high - 1}")
        for key in keys:
            if not isinstance(key, str) or "\n" in key or len(key.encode()) > MAX_KEY_BYTES:
                raise StoreError(
                    f"key {str(key)[:80]!r}: keys must be strings without newlines, of at most {MAX_KEY_BYTES} bytes"
                )
            if key in self._done_keys:
                raise StoreError(f"key {key!r} is already in the store; a resumed job must skip writer.done_keys")
        return ids.astype(self.ids_dtype)

    def _fit(self) -> None:
        samples = np.stack([s[0] for s in self._buffer[: self.fit_samples]])
        self._codec = codec_class(self.codec_name).fit(
            samples, self.grid_shape, self.codebook_size, **self.codec_options
        )
        state = self._codec.state()
        name = codec_state_name(self.part)
        atomic_write_bytes(self.path / name, state)
        self._codec_entry = {
            "name": self.codec_name,
            "params": self._codec.params(),
            "file": name,
            "sha256": hashlib.sha256(state).hexdigest(),
            "bytes": len(state),
        }
        self._write_record(complete=False)

    def _encode_buffer(self, final: bool) -> None:
        """Encode and write the buffered samples: all of them for per-sample codecs; whole groups (and, when
        ``final``, the last partial one) for grouped codecs. Buffered samples are not durable, like the
        unfinished shard: a resumed write appends them again."""
        group = self._codec.group_size or len(self._buffer)
        while self._buffer and (final or len(self._buffer) >= group):
            chunk, self._buffer = self._buffer[:group], self._buffer[group:]
            blobs = self._codec.encode_many(np.stack([c[0] for c in chunk]))
            self._write(blobs, [c[1] for c in chunk], [c[2] for c in chunk])

    def _write(self, blobs: Sequence[bytes], labels: Sequence[int], keys: Sequence[str]) -> None:
        for blob, label, key in zip(blobs, labels, keys):
            if self._current is None:
                self._current = ShardWriter(self.path, shard_name(self.part, len(self._shards)))
            self._current.add(blob, label, key)
            if self._current.payload_bytes >= self.shard_bytes:
                self._commit()

    def _commit(self) -> None:
        entry = self._current.commit()
        self._current = None
        self._shards.append({**entry, "part": self.part, "codec": 0})
        self._write_record(complete=False)

    def _write_record(self, complete: bool) -> None:
        atomic_write_json(
            self.path / part_name(self.part),
            sealed(
                {
                    "format": PART_FORMAT_NAME,
                    "format_version": FORMAT_VERSION,
                    "part": self.part,
                    "complete": complete,
                    "grid_shape": list(self.grid_shape),
                    "codebook_size": self.codebook_size,
                    "ids_dtype": self.ids_dtype.name,
                    "class_names": self.class_names,
                    "codec_name": self.codec_name,
                    "codec": self._codec_entry,
                    "arrays": self._arrays_entries,
                    "config": self.config,
                    "writer": {"shard_bytes": self.shard_bytes, "fit_samples": self.fit_samples},
                    "created": {"time": self._created, "host": platform.node(), "seit_version": __version__},
                    "shards": self._shards,
                }
            ),
        )

    # ---- finishing ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush everything; a single writer then writes the manifest (a part waits for ``merge_parts``)."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        try:
            if self._finished_store:
                return
            if self._codec is None and self._buffer:
                self._fit()
            if self._codec is not None:
                self._encode_buffer(final=True)
            if self._current is not None:
                self._commit()
            self._write_record(complete=True)
            if self.single:
                merge_parts(self.path, 1)
        finally:
            self._lock.release()

    def abort(self) -> None:
        """Stop without finishing: the unfinished shard is dropped, durable shards stay for a resume."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        if self._current is not None:
            self._current.discard()
            self._current = None
        self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _read_record(path: Path, part: int) -> dict[str, Any]:
    """Writer record of part ``part``, checked like a manifest (its file names stay inside the store)."""
    files = StoreFiles(path)
    name = part_name(part)
    if not files.exists(name):
        raise StoreError(f"{files.where(name)}: missing: part {part} was never started (or its directory differs)")
    where = files.where(name)
    record = validate_record(load_json(files.read_bytes(name, MAX_MANIFEST_BYTES), where), where)
    if record["part"] != part:
        raise StoreError(f"{where}: holds part {record['part']} (corrupt writer record)")
    return record


def merge_parts(path: str | os.PathLike, num_parts: int) -> dict[str, Any]:
    """Write the manifest of a store whose ``num_parts`` parts all closed (rank 0, after a barrier).

    Returns the manifest. Calling it again on a merged store returns the existing manifest.
    """
    path = local_path(path)
    records_present = part_records(p.name for p in path.glob("part-*.json"))
    if (path / MANIFEST).exists() and not records_present:
        files = StoreFiles(path)
        where = files.where(MANIFEST)
        return validate_manifest(load_json(files.read_bytes(MANIFEST, MAX_MANIFEST_BYTES), where), where)
    extra = [n for n in records_present if part_of(n) >= num_parts]
    if extra:
        raise StoreError(
            f"{path}: found writer records {extra} beyond num_parts={num_parts}; pass the job's world size"
        )
    records = [_read_record(path, r) for r in range(num_parts)]
    unfinished = [
        f"part {r} ({sum(s['samples'] for s in rec['shards'])} samples durable)"
        for r, rec in enumerate(records)
        if not rec["complete"]
    ]
    if unfinished:
        raise StoreError(
            f"{path}: cannot merge, unfinished: {', '.join(unfinished)}; "
            "re-run those writers with resume=True, then merge"
        )
    first = records[0]
    for r, rec in enumerate(records[1:], 1):
        for key in ("grid_shape", "codebook_size", "class_names", "codec_name"):
            if rec[key] != first[key]:
                raise StoreError(f"{path}: part {r} has {key}={rec[key]!r}, part 0 {first[key]!r}; parts must agree")
    arrays: dict[str, Any] = {}
    for kind in KINDS:
        entries = {rec["arrays"][kind]["sha256"]: rec["arrays"][kind] for rec in records if rec["arrays"].get(kind)}
        if len(entries) > 1:
            raise StoreError(f"{path}: parts were given different {kind} arrays; every part must pass the same one")
        arrays[kind] = next(iter(entries.values()), None)
    codecs, shards = [], []
    for rec in records:
        if not rec["shards"]:
            continue
        codecs.append(rec["codec"])
        shards.extend({**s, "codec": len(codecs) - 1} for s in rec["shards"])
    files = StoreFiles(path)
    for s in shards:
        if files.size(s["file"]) != s["bytes"]:
            raise StoreError(f"{files.where(s['file'])}: size differs from its writer record; re-run that part")
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "num_samples": sum(s["samples"] for s in shards),
        "grid_shape": first["grid_shape"],
        "ids_dtype": first["ids_dtype"],
        "codebook_size": first["codebook_size"],
        "class_names": first["class_names"],
        "codebook": arrays["codebook"],
        "synonyms": arrays["synonyms"],
        "code_ids": arrays["code_ids"],
        "codecs": codecs,
        "shards": shards,
        "created": {
            "time": min(rec["created"]["time"] for rec in records),
            "merged": _now(),
            "seit_version": __version__,
            "hosts": sorted({rec["created"]["host"] for rec in records}),
            "parts": num_parts,
            "writer": {**first["writer"], "codec": first["codec_name"]},
            "config": first["config"],
        },
    }
    manifest = sealed(manifest)
    atomic_write_json(path / MANIFEST, manifest)
    for r in range(num_parts):
        (path / part_name(r)).unlink()
    for stray in path.glob(".*.tmp"):
        stray.unlink(missing_ok=True)
    return manifest
