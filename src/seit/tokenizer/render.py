"""Ids back to pictures: decoding to uint8 images, PNG files, comparison grids, and a store's samples."""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from seit.store import TokenStore
from seit.tokenizer.checkpoint import load_tokenizer
from seit.tokenizer.config import DecodeConfig, TokenizerError
from seit.tokenizer.model import Tokenizer
from seit.utils.dist import resolve_device
from seit.utils.io import atomic_write_bytes


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images [B, 3, H, W] about [0, 1] -> uint8 [B, H, W, 3] (clamped, rounded)."""
    return images.detach().float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.inference_mode()
def decode_to_images(
    tokenizer: Tokenizer,
    ids: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Ids [B, h, w] (any integer dtype) -> uint8 images [B, H, W, 3], decoded ``batch_size`` at a time."""
    ids = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids).long()
    device = torch.device(device) if device is not None else next(tokenizer.parameters()).device
    out = [to_uint8(tokenizer.decode(ids[i : i + batch_size].to(device))) for i in range(0, len(ids), batch_size)]
    size = tokenizer.config.image_size
    return np.concatenate(out) if out else np.zeros((0, size, size, 3), np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """One uint8 image [H, W, 3] (or [H, W]) as a PNG, written atomically."""
    atomic_write_bytes(path, png_bytes(image))


def image_grid(rows: Sequence[np.ndarray], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Rows of uint8 images ([n, H, W, 3] each, same n and size) tiled into one image with ``pad`` gaps."""
    n, h, w, c = rows[0].shape
    grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, c), fill, dtype=np.uint8)
    for r, row in enumerate(rows):
        for i, image in enumerate(row):
            top, left = pad + r * (h + pad), pad + i * (w + pad)
            grid[top : top + h, left : left + w] = image
    return grid


def write_comparison(path: str | os.PathLike, originals: np.ndarray, reconstructions: np.ndarray) -> None:
    """A PNG with originals on the top row and their reconstructions below."""
    write_png(path, image_grid([originals, reconstructions]))


def store_ids_to_tokenizer(store: TokenStore, tokenizer: Tokenizer, ids: np.ndarray) -> np.ndarray:
    """Stored ids -> the tokenizer's ids (through the store's ``code_ids`` when it was pruned).

    Checks that ``tokenizer`` is the one that made the store: same grid, and the store's codebook rows
    point the same way as the tokenizer's rows they stand for.
    """
    where = store.files.url
    if tuple(store.grid_shape) != tuple(tokenizer.grid_shape):
        raise TokenizerError(
            f"{where}: holds {'x'.join(map(str, store.grid_shape))} id grids, the tokenizer makes "
            f"{'x'.join(map(str, tokenizer.grid_shape))}: pass the tokenizer that made the store"
        )
    code_ids = store.code_ids
    if code_ids is None:
        if store.codebook_size != tokenizer.codebook_size:
            raise TokenizerError(
                f"{where}: ids of {store.codebook_size} codes and no code_ids saying which tokenizer codes they are "
                f"(the tokenizer has {tokenizer.codebook_size}); such a store (e.g. imported from SeiT's files) "
                "cannot be decoded"
            )
        code_ids = np.arange(store.codebook_size)
    if code_ids.max() >= tokenizer.codebook_size:
        raise TokenizerError(
            f"{where}: refers to tokenizer code {code_ids.max()}, the tokenizer has {tokenizer.codebook_size} codes: "
            "pass the tokenizer that made the store"
        )
    if store.codebook is not None:
        mine = tokenizer.codebook_vectors().float()[torch.from_numpy(code_ids)]
        theirs = F.normalize(torch.from_numpy(store.codebook).float(), dim=1)
        if mine.shape != theirs.shape or not torch.allclose(mine, theirs, atol=1e-4):
            raise TokenizerError(f"{where}: the store's codebook is not this tokenizer's: pass the one that made it")
    return code_ids[np.asarray(ids, dtype=np.int64)]


def spread_indices(total: int, count: int) -> np.ndarray:
    """``count`` indices evenly spread over ``range(total)`` (all of them when count >= total)."""
    if count >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, num=max(count, 0)).round().astype(np.int64))


def png_name(index: int, key: str) -> str:
    """A file name for sample ``index`` that shows its key and is safe in any folder."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", re.sub(r"\.[A-Za-z0-9]{1,5}$", "", key)).strip("._")
    return f"{index:07d}-{stem[:80]}.png" if stem else f"{index:07d}.png"


def grid_of(images: np.ndarray, columns: int | None = None, fill: int = 255) -> np.ndarray:
    """uint8 images [n, H, W, 3] tiled into one near-square grid (blank cells filled with ``fill``)."""
    n = len(images)
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    padded = np.full((rows * columns, *images.shape[1:]), fill, dtype=np.uint8)
    padded[:n] = images
    return image_grid([padded[r * columns : (r + 1) * columns] for r in range(rows)], fill=fill)


@dataclass
class DecodeResult:
    indices: list[int]
    files: list[Path]  # one PNG per sample (empty without an output folder)
    grid: Path | None


def decode_samples(cfg: DecodeConfig) -> DecodeResult:
    """``seit decode``: decode stored samples with the tokenizer; PNG files and/or one grid PNG."""
    if cfg.out is None and cfg.grid is None:
        raise TokenizerError("nothing to write: give --output DIR (one PNG per sample) and/or --grid PNG")
    with TokenStore.open(cfg.store) as store:
        n = len(store)
        indices = np.asarray(cfg.indices if cfg.indices else spread_indices(n, cfg.count), dtype=np.int64)
        bad = indices[(indices < 0) | (indices >= n)]
        if bad.size:
            raise TokenizerError(f"{cfg.store}: sample index {int(bad[0])} out of range (the store holds {n} samples)")
        if not indices.size:
            raise TokenizerError(f"{cfg.store}: the store holds no samples to decode")
        device = resolve_device(cfg.device)
        tokenizer = load_tokenizer(cfg.tokenizer, config=cfg.config, allow_legacy_pickle=cfg.allow_legacy_pickle)
        ids = store_ids_to_tokenizer(store, tokenizer, store.get_batch(indices)[0])
        keys = [store.key(int(i)) for i in indices]
    images = decode_to_images(tokenizer.to(device), ids, batch_size=cfg.batch_size, device=device)
    files = []
    if cfg.out is not None:
        for index, key, image in zip(indices.tolist(), keys, images):
            files.append(Path(cfg.out) / png_name(index, key))
            write_png(files[-1], image)
    if cfg.grid is not None:
        write_png(cfg.grid, grid_of(images))
    return DecodeResult(indices.tolist(), files, None if cfg.grid is None else Path(cfg.grid))
