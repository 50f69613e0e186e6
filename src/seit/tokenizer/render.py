"""Ids back to pictures: decoding to uint8 images, PNG files and side-by-side comparison grids."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from seit.tokenizer.model import Tokenizer
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
