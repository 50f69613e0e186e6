"""verify_store: check every checksum and decode every sample of a store."""

from __future__ import annotations

import os
from typing import Any

from seit.store.arrays import KINDS, check_array
from seit.store.errors import StoreError
from seit.store.reader import TokenStore
from seit.utils.progress import progress

MAX_LISTED = 20


def verify_store(
    path_or_url: str | os.PathLike,
    *,
    show_progress: bool = True,
    batch_size: int = 4096,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the manifest, every file's sha256, every shard's index, keys and labels, and decode every sample.

    Returns a summary; raises StoreError listing every problem found (each names its file, and the sample
    where one is at fault).
    """
    store = TokenStore.open(path_or_url, verify=False, storage_options=storage_options)
    problems: list[str] = []
    for c in range(len(store.manifest["codecs"])):
        try:
            store.codec_for(c)
        except StoreError as e:
            problems.append(str(e))
    for kind in KINDS:
        try:
            array = getattr(store, kind)
            if array is not None:
                check_array(kind, array, store.codebook_size, where=store.files.where(store.manifest[kind]["file"]))
        except StoreError as e:
            problems.append(str(e))
    disable = None if show_progress else True
    with progress(total=len(store), desc="verify", unit="sample", disable=disable) as bar:
        for s in range(store.num_shards):
            span = store.shard_range(s)
            done = span.start
            try:
                store.check_shard(s)
                for start in range(span.start, span.stop, batch_size):
                    stop = min(start + batch_size, span.stop)
                    store.get_batch(range(start, stop))
                    bar.update(stop - done)
                    done = stop
            except StoreError as e:
                problems.append(str(e))
                bar.update(span.stop - done)
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise StoreError(f"{store.files.url}: {len(problems)} problem(s):\n  {listed}{more}")
    shard_bytes = sum(s["bytes"] for s in store.manifest["shards"])
    return {"store": store.files.url, "samples": len(store), "shards": store.num_shards, "bytes": shard_bytes}
