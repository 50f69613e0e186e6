"""Image collections on disk: listing, robust decoding, and SeiT's preprocessing.

Listing gives a stable, sorted list of :class:`Sample` (path, label, key) from an ImageFolder tree
(class = first-level folder, classes sorted as torchvision's ImageFolder does), a flat folder (label -1),
or a list file of ``path [label]`` lines. Decoding turns anything PIL can read into 8-bit RGB:

- EXIF orientation is applied (``ImageOps.exif_transpose``);
- transparency (RGBA, LA, palette with a transparent colour) is composited on **white**, the way
  a page shows it; SeiT's ImageFolder loader would instead expose the hidden colour under the alpha;
- 16-bit grayscale is scaled to 8 bits (``round(v / 257)``), not clipped; CMYK, grayscale, bilevel and
  other modes are converted by PIL; animated files use their first frame;
- images above ``max_pixels`` (PIL's decompression-bomb limit by default) are decoded at a reduced
  scale when they are JPEGs (``draft``), otherwise skipped.

Files that cannot be used (empty, not an image, truncated or corrupt, too large) raise
:class:`ImageSkipped` with a short ``kind`` and a readable reason; callers record and report them.
This module needs only PIL and numpy, so DataLoader workers stay light.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from seit.errors import SeitError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
UNLABELED = -1
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
RESIZE_MODES = ("squash", "crop")
BACKGROUND = (255, 255, 255)


class ImageListError(SeitError):
    """An image folder or list file that cannot be listed; names the file and the fix."""


class ImageSkipped(Exception):
    """One image that cannot be used; ``kind`` is a short category, ``reason`` says why."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind, self.reason = kind, reason


@dataclass(frozen=True)
class Sample:
    path: str  # where to read it
    label: int  # class index, or -1 when unlabelled
    key: str  # path relative to the collection root, '/'-separated: the sample's name in a store


@dataclass
class ImageList:
    samples: list[Sample]
    classes: list[str]  # class index -> folder name (empty for flat folders and list files)
    root: Path


def list_images(source: str | os.PathLike, *, root: str | os.PathLike | None = None) -> ImageList:
    """Samples of an ImageFolder tree, a flat folder, or a list file, sorted by key.

    A folder is an ImageFolder tree when it holds sub-folders and no images directly, else a flat
    (unlabelled, recursive) folder. A list file has ``path [label]`` per line (``#`` comments allowed);
    relative paths are taken from ``root`` (default: the list file's folder).
    """
    source = Path(source)
    if source.is_file():
        return _read_list_file(source, Path(root) if root is not None else source.parent)
    if not source.is_dir():
        raise ImageListError(f"{source}: no such folder or list file")
    top_dirs = sorted(e.name for e in os.scandir(source) if e.is_dir() and not e.name.startswith("."))
    if top_dirs and not any(_is_image(Path(e.path)) for e in os.scandir(source) if e.is_file()):
        samples = [
            Sample(str(p), label, p.relative_to(source).as_posix())
            for label, name in enumerate(top_dirs)
            for p in _walk_images(source / name)
        ]
        classes = top_dirs
    else:
        samples = [Sample(str(p), UNLABELED, p.relative_to(source).as_posix()) for p in _walk_images(source)]
        classes = []
    if not samples:
        raise ImageListError(f"{source}: no images found (extensions: {' '.join(sorted(IMAGE_EXTENSIONS))})")
    samples.sort(key=lambda s: s.key)
    return ImageList(samples, classes, source)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _walk_images(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if _is_image(Path(f)))
    return found


def _read_list_file(path: Path, root: Path) -> ImageList:
    samples, seen = [], set()
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ImageListError(f"{path}: cannot read the list file ({e})") from e
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        label = UNLABELED
        if len(parts) == 2 and _is_int(parts[1]):
            name, label = parts[0], int(parts[1])
        else:
            name = line
        if name in seen:
            raise ImageListError(f"{path}:{n}: {name!r} is listed twice; every image must appear once")
        seen.add(name)
        file = Path(name) if os.path.isabs(name) else root / name
        samples.append(Sample(str(file), label, Path(name).as_posix()))
    if not samples:
        raise ImageListError(f"{path}: the list file names no images (expected 'path [label]' per line)")
    samples.sort(key=lambda s: s.key)
    return ImageList(samples, [], root)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def shard(samples: list[Sample], rank: int, world_size: int) -> list[Sample]:
    """This rank's contiguous share of ``samples`` (rank 0 first; sizes differ by at most one)."""
    n = len(samples)
    return samples[rank * n // world_size : (rank + 1) * n // world_size]


def open_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``path`` to an 8-bit RGB image, upright, transparency on white; raises :class:`ImageSkipped`."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (our handle, closed by the with below once the pixels are loaded)
    except OSError as e:
        raise ImageSkipped("missing", f"cannot open: {e.strerror or e}") from None
    with warnings.catch_warnings(), f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ImageSkipped("empty", "empty file (0 bytes)")
        warnings.simplefilter("ignore")  # PIL's bomb warning (we check ourselves) and EXIF chatter
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            img = Image.open(f)
        except Image.UnidentifiedImageError:
            raise ImageSkipped("unidentified", "not an image PIL can identify") from None
        except Exception as e:
            raise ImageSkipped("corrupt", f"cannot open: {type(e).__name__}: {e}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        try:
            _limit_pixels(img, max_pixels)
            img.load()
            return _to_rgb(_upright(img))
        except ImageSkipped:
            raise
        except Exception as e:  # truncated data, bad headers, decoder errors: PIL raises many types
            raise ImageSkipped("corrupt", f"truncated or corrupt image data: {type(e).__name__}: {e}") from None


def _limit_pixels(img: Image.Image, max_pixels: int) -> None:
    w, h = img.size
    if w * h <= max_pixels:
        return
    if img.format == "JPEG":
        scale = next((s for s in (2, 4, 8) if math.ceil(w / s) * math.ceil(h / s) <= max_pixels), None)
        if scale is not None:
            img.draft(None, (math.ceil(w / scale), math.ceil(h / scale)))
            return
    raise ImageSkipped(
        "too-large",
        f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} (decompression-bomb guard; "
        "raise --max-pixels if you trust the file)",
    )


def _upright(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block: keep the pixels as stored
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.asarray(img, dtype=np.int64).clip(0, 65535)
        img = Image.fromarray(((wide + 128) // 257).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


def resize(img: Image.Image, size: int, mode: str = "squash") -> Image.Image:
    """``squash``: bicubic to size x size as SeiT does; ``crop``: shorter side to size, then center crop."""
    if mode == "squash":
        return img.resize((size, size), Image.Resampling.BICUBIC)
    if mode != "crop":
        raise ValueError(f"resize mode {mode!r} not in {RESIZE_MODES}")
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    left, top = round((new_w - size) / 2.0), round((new_h - size) / 2.0)
    if new_w * new_h <= 16 * size * size:  # as torchvision: resize the whole image, then crop
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        return img.crop((left, top, left + size, top + size))
    # A sliver (e.g. 1x5000): resample only the source box of the crop instead of a huge intermediate.
    sx, sy = w / new_w, h / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return img.resize((size, size), Image.Resampling.BICUBIC, box=box)


def load_image(
    path: str | os.PathLike, size: int, mode: str = "squash", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decoded and resized image as uint8 [size, size, 3]; raises :class:`ImageSkipped`."""
    return np.asarray(resize(open_rgb(path, max_pixels), size, mode), dtype=np.uint8)


@dataclass
class ImageDataset:
    """Map-style dataset for DataLoader workers: ``i -> (i, uint8 [3, S, S] or None, skip kind, reason)``."""

    samples: list[Sample]
    size: int
    resize: str = "squash"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str, str]:
        try:
            image = load_image(self.samples[i].path, self.size, self.resize, self.max_pixels)
        except ImageSkipped as e:
            return i, None, e.kind, e.reason
        return i, np.ascontiguousarray(image.transpose(2, 0, 1)), "", ""
