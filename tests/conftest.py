"""Shared test data builders (small, deterministic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_class_token_store(
    path: Path,
    n: int,
    *,
    grid: int = 8,
    codes: int = 16,
    dim: int = 4,
    classes: int = 4,
    seed: int = 0,
    noise: float = 0.15,
    labelled: bool = True,
) -> Path:
    """A token store whose classes differ in which codes they use and where: learnable in a few steps.

    Class c paints the left half of the grid with code 2c and the right half with code 2c+1, then a
    fraction ``noise`` of the tokens is replaced by random codes. ``labelled=False``: the same ids, every label -1
    and no class names (what pre-training reads).
    """
    import torch

    from seit.augment import synonyms_from_codebook
    from seit.store import StoreWriter

    codebook = np.random.default_rng(1234).normal(size=(codes, dim)).astype(np.float32)  # shared by all splits
    rng = np.random.default_rng(seed)

    synonyms = synonyms_from_codebook(torch.from_numpy(codebook), 5).numpy()
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    with StoreWriter(
        path,
        grid_shape=(grid, grid),
        codebook_size=codes,
        class_names=[f"c{i}" for i in range(classes)] if labelled else None,
        codebook=codebook,
        synonyms=synonyms,
    ) as w:
        for i, c in enumerate(labels):
            ids = np.empty((grid, grid), dtype=np.int64)
            ids[:, : grid // 2], ids[:, grid // 2 :] = 2 * c, 2 * c + 1
            flip = rng.random((grid, grid)) < noise
            ids[flip] = rng.integers(0, codes, size=int(flip.sum()))
            w.append(ids, int(c) if labelled else -1, f"s{i:05d}")
    return path


@pytest.fixture(scope="session")
def class_token_store():
    """The builder above, for tests: ``class_token_store(path, n, ...)``."""
    return write_class_token_store
