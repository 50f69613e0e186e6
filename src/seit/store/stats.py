"""What a store holds and costs: sizes per sample and per token (from the manifest), code usage and entropy
(by decoding), and a PNG of the code usage."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from seit.store.format import ARRAY_KINDS, MANIFEST
from seit.store.reader import TokenStore
from seit.utils.io import atomic_open
from seit.utils.progress import progress


def store_info(store: TokenStore) -> dict[str, Any]:
    """Sizes and settings, read from the manifest only (instant for any store size)."""
    m = store.manifest
    n, numel = len(store), math.prod(store.grid_shape)
    payload = sum(s["payload_bytes"] for s in m["shards"])
    shards = sum(s["bytes"] for s in m["shards"])
    side = sum(c["bytes"] for c in m["codecs"]) + store.files.size(MANIFEST)
    side += sum(m[k]["bytes"] for k in ARRAY_KINDS if m.get(k))
    total = shards + side
    per_sample = (lambda b: b / n) if n else (lambda b: 0.0)
    per_token = (lambda b: 8 * b / (n * numel)) if n else (lambda b: 0.0)
    return {
        "store": store.files.url,
        "format_version": m["format_version"],
        "samples": n,
        "classes": None if store.class_names is None else len(store.class_names),
        "grid_shape": list(store.grid_shape),
        "codebook_size": store.codebook_size,
        "ids_dtype": m["ids_dtype"],
        "codecs": sorted({c["name"] for c in m["codecs"]}),
        "shards": store.num_shards,
        "bytes": {"total": total, "payload": payload, "index": shards - payload, "side_files": side},
        "bytes_per_sample": per_sample(total),
        "payload_bytes_per_sample": per_sample(payload),
        "index_bytes_per_sample": per_sample(shards - payload),
        "bits_per_token": per_token(payload),
        "total_bits_per_token": per_token(total),
        "codebook": m["codebook"]["shape"] if m.get("codebook") else None,
        "synonyms": m["synonyms"]["shape"] if m.get("synonyms") else None,
        "code_ids": m["code_ids"]["shape"] if m.get("code_ids") else None,
        "created": m.get("created", {}),
    }


def entropy_bits(counts: np.ndarray) -> float:
    """Order-0 (empirical marginal) entropy in bits per symbol."""
    total = counts.sum()
    if not total:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def code_usage(
    store: TokenStore, *, max_samples: int | None = None, seed: int = 0, show_progress: bool = False
) -> tuple[np.ndarray, int]:
    """Counts of every code id [K] over all samples (or a seeded random subset of ``max_samples``)."""
    n = len(store)
    if max_samples is not None and max_samples < n:
        indices = np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))
    else:
        indices = np.arange(n)
    counts = np.zeros(store.codebook_size, dtype=np.int64)
    disable = None if show_progress else True
    with progress(total=len(indices), desc="decode", unit="sample", disable=disable) as bar:
        for i in range(0, len(indices), 4096):
            ids, _ = store.get_batch(indices[i : i + 4096])
            counts += np.bincount(ids.ravel().astype(np.int64), minlength=store.codebook_size)
            bar.update(len(ids))
    return counts, len(indices)


def store_stats(
    store: TokenStore, *, max_samples: int | None = None, seed: int = 0, show_progress: bool = False
) -> dict[str, Any]:
    """:func:`store_info` plus code usage, order-0 entropy and label counts."""
    info = store_info(store)
    counts, decoded = code_usage(store, max_samples=max_samples, seed=seed, show_progress=show_progress)
    labels = store.labels
    entropy = entropy_bits(counts)
    return {
        **info,
        "decoded_samples": decoded,
        "codes_used": int((counts > 0).sum()),
        "entropy_bits_per_token": entropy,
        "bits_per_token_over_entropy": info["bits_per_token"] / entropy if entropy else None,
        "code_usage": counts.tolist(),
        "label_counts": np.bincount(labels[labels >= 0]).tolist() if (labels >= 0).any() else [],
        "unlabelled": int((labels < 0).sum()),
    }


def plot_code_usage(counts: np.ndarray, path: str | os.PathLike, title: str = "") -> None:
    """PNG with code usage by id (top) and sorted frequencies on a log scale (bottom)."""
    from matplotlib.figure import Figure

    counts = np.asarray(counts)
    k = len(counts)
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    top.stairs(counts, np.arange(k + 1), fill=True)
    top.set(xlabel="code id", ylabel="occurrences", xlim=(0, k), title=title or "code usage")
    freq = np.sort(counts)[::-1] / max(counts.sum(), 1)
    used = freq[freq > 0]
    bottom.semilogy(np.arange(1, len(used) + 1), used)
    bottom.set(xlabel="rank (most used first)", ylabel="frequency", xlim=(0, k))
    bottom.text(
        0.99,
        0.95,
        f"{len(used)}/{k} codes used, H = {entropy_bits(counts):.3f} bits",
        ha="right",
        va="top",
        transform=bottom.transAxes,
    )
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
