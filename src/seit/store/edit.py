"""Changes to finished stores: replace the codebook or synonyms, remap ids (codebook pruning)."""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any

import numpy as np

from seit.store.arrays import check_array, write_array
from seit.store.errors import StoreError
from seit.store.files import is_url, local_path
from seit.store.format import MANIFEST, sealed
from seit.store.lock import WriterLock
from seit.store.reader import TokenStore
from seit.store.writer import StoreWriter
from seit.utils.io import atomic_write_json


def _set_array(path: str | os.PathLike, kind: str, array: Any) -> dict[str, Any] | None:
    if is_url(path):
        raise StoreError(f"{path}: stores are edited in a local or mounted directory, then copied")
    root = local_path(path)
    with TokenStore.open(root, verify=False) as store:
        lock = WriterLock(root, 0)
        try:
            manifest = store.manifest
            entry = None if array is None else write_array(root, kind, check_array(kind, array, store.codebook_size))
            old = manifest.get(kind)
            manifest[kind] = entry
            atomic_write_json(root / MANIFEST, sealed(manifest))  # the new file exists before the manifest names it
            if old and (entry is None or old["file"] != entry["file"]):
                (root / old["file"]).unlink(missing_ok=True)
        finally:
            lock.release()
    return entry


def set_codebook(path: str | os.PathLike, codebook: Any) -> dict[str, Any] | None:
    """Store (or with None, remove) the code vectors float [K, D] of a finished store; returns the entry."""
    return _set_array(path, "codebook", codebook)


def set_synonyms(path: str | os.PathLike, synonyms: Any) -> dict[str, Any] | None:
    """Store (or with None, remove) the synonym table [K, k] (most similar first) of a finished store."""
    return _set_array(path, "synonyms", synonyms)


def remap_store(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    mapping: Any,
    *,
    codebook: Any = None,
    synonyms: Any = None,
    code_ids: Any = None,
    config: dict[str, Any] | None = None,
    codec: str | None = None,
    shard_bytes: int = 128 << 20,
    fit_samples: int = 4096,
    resume: bool = False,
    show_progress: bool = False,
) -> TokenStore:
    """Write ``dst``: ``src`` with every id ``i`` replaced by ``mapping[i]`` (codebook pruning).

    ``mapping`` [K_src] holds the new id of each old id, or -1 for ids that must not occur. The new codebook
    size is ``len(codebook)`` if a codebook is given, else ``mapping.max() + 1``. Labels, keys, class names and
    order are kept; the codec (``src``'s unless given) is fitted again on the remapped ids. Synonyms and code
    ids describe ids, so pass the new ones (the old ones are not carried over). ``config`` entries are added
    to ``src``'s config. ``resume`` continues an interrupted remap into ``dst`` (same arguments). Every source
    shard is checked on the way.
    """
    with TokenStore.open(src, verify=True) as source:
        mapping = np.asarray(mapping)
        if mapping.shape != (source.codebook_size,) or not np.issubdtype(mapping.dtype, np.integer):
            raise StoreError(
                f"mapping must be an integer array [{source.codebook_size}] (one new id per old id), "
                f"got {mapping.dtype} {list(mapping.shape)}"
            )
        size = len(codebook) if codebook is not None else int(mapping.max()) + 1
        if size < 1 or mapping.min() < -1 or mapping.max() >= size:
            raise StoreError(f"mapping values in [{mapping.min()}, {mapping.max()}], expected -1 or 0..{size - 1}")
        dropped = np.flatnonzero(mapping < 0)
        config = {
            **source.config,
            **(config or {}),
            "remap": {
                "source": str(src),
                "source_codebook_size": source.codebook_size,
                "mapping_sha256": hashlib.sha256(mapping.astype("<i8").tobytes()).hexdigest(),
            },
        }
        codecs = source.manifest["codecs"]
        created = not os.path.exists(dst)
        writer = StoreWriter(
            dst,
            grid_shape=source.grid_shape,
            codebook_size=size,
            class_names=source.class_names,
            codebook=codebook,
            synonyms=synonyms,
            code_ids=code_ids,
            shard_bytes=shard_bytes,
            codec=codec or (codecs[0]["name"] if codecs else "raw"),
            fit_samples=fit_samples,
            config=config,
            resume=resume,
            show_progress=show_progress,
            total=len(source),
        )
        done = writer.done_keys
        try:
            with writer:
                for idx, ids, labels in source.iter_batches():
                    keys = source.keys[idx[0] : idx[-1] + 1]
                    if done:
                        todo = [j for j, key in enumerate(keys) if key not in done]
                        if not todo:
                            continue
                        idx, ids, labels, keys = idx[todo], ids[todo], labels[todo], [keys[j] for j in todo]
                    new = mapping[ids]
                    bad = np.flatnonzero((new < 0).reshape(len(ids), -1).any(axis=1))
                    if bad.size:
                        i = int(idx[bad[0]])
                        lost = np.intersect1d(ids[bad[0]], dropped)[:8].tolist()
                        raise StoreError(
                            f"{src}: sample {i} (key {source.key(i)!r}) uses ids {lost} that the mapping drops "
                            "(-1); the mapping must keep every id the store uses"
                        )
                    writer.append_batch(new, labels, keys)
        except BaseException:
            if created and not resume:  # a half-written output is useless (unless resumable); src is untouched
                shutil.rmtree(dst, ignore_errors=True)
            raise
    return TokenStore.open(dst)
