"""Generated images and tiny model configs shared by the tokenizer tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures" / "seit-reference" / "tokenizer"

# A ViTVQ small enough to train for hundreds of steps inside a unit test: 32 px, 8x8 ids, 64 codes.
TINY32_YAML = """\
model:
  target: enhancing.modules.stage1.vitvqgan.ViTVQ
  params:
    image_key: image
    image_size: 32
    patch_size: 4
    encoder: {dim: 64, depth: 1, heads: 2, mlp_dim: 128}
    decoder: {dim: 64, depth: 1, heads: 2, mlp_dim: 128}
    quantizer: {embed_dim: 16, n_embed: 64}
"""


def synthetic_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A gradient with two flat rectangles: simple structure a tiny tokenizer can learn."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.random() * 2 * np.pi
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / (t.max() - t.min() + 1e-9)
    img = rng.random(3) * (1 - t[..., None]) + rng.random(3) * t[..., None]
    for _ in range(2):
        x0, y0 = rng.integers(0, size - 8, 2)
        w, h = rng.integers(6, size // 2, 2)
        img[y0 : y0 + h, x0 : x0 + w] = rng.random(3)
    return (img * 255).astype(np.uint8)


def write_image_folder(root: Path, n: int, size: int, classes: int = 0, seed: int = 0) -> list[Path]:
    """PNG images, flat or split round-robin over ``classes`` class folders."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        folder = root / f"class{i % classes}" if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img{i:03d}.png"
        Image.fromarray(synthetic_image(rng, size)).save(path)
        paths.append(path)
    return paths


def write_problem_images(root: Path) -> tuple[dict[str, np.ndarray], set[str]]:
    """One file of each awkward kind; returns (good key -> expected RGB pixels, bad keys)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (24, 36, 3), dtype=np.uint8)
    good: dict[str, np.ndarray] = {}

    Image.fromarray(base).save(root / "plain.png")
    good["plain.png"] = base

    gray = base[..., 0]
    Image.fromarray(gray).save(root / "gray.png")
    good["gray.png"] = np.repeat(gray[..., None], 3, axis=2)

    wide = rng.integers(0, 65536, (20, 20), dtype=np.uint16)
    Image.fromarray(wide).save(root / "sixteen.png")
    good["sixteen.png"] = np.repeat(np.round(wide / 257).astype(np.uint8)[..., None], 3, axis=2)

    palette = Image.fromarray(base).quantize(colors=8)
    index = np.asarray(palette)
    palette.save(root / "palette-alpha.png", transparency=int(index[0, 0]))
    colours = np.asarray(palette.convert("RGB"))
    good["palette-alpha.png"] = np.where((index == index[0, 0])[..., None], 255, colours).astype(np.uint8)

    Image.fromarray(base).convert("CMYK").save(root / "cmyk.jpg", quality=100)
    good["cmyk.jpg"] = np.asarray(Image.open(root / "cmyk.jpg").convert("RGB"))

    rotated = Image.fromarray(base)
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored pixels must be turned 90 degrees clockwise to display
    rotated.save(root / "exif-rotated.png", exif=exif)
    good["exif-rotated.png"] = np.rot90(base, k=-1)

    Image.new("RGB", (1, 1), (10, 200, 30)).save(root / "one-pixel.png")
    good["one-pixel.png"] = np.array([[[10, 200, 30]]], dtype=np.uint8)

    big = np.full((1200, 1600, 3), (40, 90, 160), dtype=np.uint8)
    Image.fromarray(big).save(root / "large.jpg", quality=95)
    good["large.jpg"] = big  # over the test's pixel limit: decoded at a reduced scale (JPEG draft)

    buf = io.BytesIO()
    Image.fromarray(base).save(buf, format="JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "random-bytes.jpg").write_bytes(rng.bytes(500))
    (root / "empty.jpg").write_bytes(b"")
    Image.fromarray(big).save(root / "large.png")  # over the limit and not a JPEG: skipped
    return good, {"truncated.jpg", "random-bytes.jpg", "empty.jpg", "large.png"}


PIXEL_LIMIT = 1_000_000  # max_pixels for the problem folder: large.* exceed it


def save_tiny_tokenizer(path: Path, seed: int = 0, codes: int = 64) -> Path:
    """A randomly initialised 32 px tokenizer (4x4 patches -> 8x8 ids, ``codes`` codes of dim 8) as our file."""
    import torch

    from seit.tokenizer import Tokenizer, TokenizerConfig, TransformerConfig, save_tokenizer

    side = TransformerConfig(dim=32, depth=1, heads=2, mlp_dim=64, dim_head=16)
    torch.manual_seed(seed)
    return save_tokenizer(Tokenizer(TokenizerConfig(32, 4, side, side, codes, 8)), path)


def write_labelled_tree(root: Path, n: int = 6) -> tuple[dict[str, int], set[str]]:
    """An ImageFolder tree: class 0 (``a``) of ``n`` generated images, class 1 (``b``) of every awkward file kind.

    Returns (good key -> label, bad keys); decode it with ``max_pixels=PIXEL_LIMIT``.
    """
    write_image_folder(root / "a", n, 40)
    good, bad = write_problem_images(root / "b")
    labels = {f"a/img{i:03d}.png": 0 for i in range(n)} | {f"b/{key}": 1 for key in good}
    return labels, {f"b/{key}" for key in bad}
