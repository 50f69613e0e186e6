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

Files that cannot be used (empty, not an image, truncated or corrupt, too large, a header declaring far
more pixels than the file could hold) raise :class:`ImageSkipped` with a short ``kind`` and a readable
reason; callers record and report them. Listing enters each real folder once (a link to a parent or to a
folder already listed is skipped, not multiplied), and skips with a reason, in ``ImageList.skipped``,
what is no regular file (FIFOs, devices, sockets, broken links) and names a store key cannot hold
(not UTF-8, or holding a line break), so nothing fails after the work is done.
This module needs only PIL and numpy, so DataLoader workers stay light.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from seit.errors import SeitError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
UNLABELED = -1
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# No codec PIL reads packs more pixels into a byte of a whole file (deflate's 1032:1 on 1-bit rows is about
# 8256): a header declaring more is truncated or forged, and is skipped before anything is sized by it.
MAX_PIXELS_PER_BYTE = 1 << 14
_SMALL_IMAGE = 1 << 22  # pixels below which the ratio is not checked: decoding them is cheap either way
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
class SkipRecord:
    """An entry left out, as written to ``STORE/skipped.jsonl``."""

    key: str
    path: str
    kind: str  # e.g. corrupt | too-large | implausible | not-a-file | repeated-folder | bad-name (see docs)
    reason: str


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
    skipped: list[SkipRecord] = field(default_factory=list)  # entries left out while listing, with the reason


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
    walk = _Walk(source)
    top = walk.entries(source)
    top_dirs = [e for e in top if e.is_dir()]
    if top_dirs and not any(e.is_file() and _is_image(Path(e.name)) for e in top):
        classes = [e.name for e in top_dirs if walk.admit(e)]
        samples = [
            Sample(str(p), label, walk.key(p)) for label, name in enumerate(classes) for p in walk.images(source / name)
        ]
    else:
        classes = []
        samples = [Sample(str(p), UNLABELED, walk.key(p)) for p in walk.images(source)]
    if walk.skipped:
        kinds = Counter(r.kind for r in walk.skipped)
        first = walk.skipped[0]
        logger.warning(
            "%s: %d entries left out while listing (%s), e.g. %r: %s",
            source,
            len(walk.skipped),
            ", ".join(f"{n} {k}" for k, n in kinds.items()),
            first.key,
            first.reason,
        )
    if not samples:
        raise ImageListError(f"{source}: no images found (extensions: {' '.join(sorted(IMAGE_EXTENSIONS))})")
    samples.sort(key=lambda s: s.key)
    return ImageList(samples, classes, source, sorted(walk.skipped, key=lambda r: r.key))


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


class _Walk:
    """One listing of a folder tree: each real folder entered once, every entry left out recorded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        st = os.stat(root)
        self.seen = {(st.st_dev, st.st_ino)}
        self.skipped: list[SkipRecord] = []

    def key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def skip(self, path: Path, kind: str, reason: str) -> None:
        self.skipped.append(SkipRecord(self.key(path), str(path), kind, reason))

    def entries(self, folder: Path) -> list[os.DirEntry]:
        """The visible entries of ``folder``, sorted by name; an unreadable folder is recorded."""
        try:
            with os.scandir(folder) as it:
                return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as e:
            self.skip(folder, "unreadable", f"cannot list the folder: {e.strerror or e}")
            return []

    def admit(self, entry: os.DirEntry) -> bool:
        """Whether to use a name (a store key must hold it) and, for a folder, enter it (once per real folder)."""
        path = Path(entry.path)
        problem = _name_problem(entry.name)
        if problem:
            self.skip(path, "bad-name", f"{problem}; a store key cannot hold it (rename the file or folder)")
            return False
        try:
            st = entry.stat()  # follows a link: what it points at is what is read
        except OSError as e:
            self.skip(path, "missing", f"a broken link or unreadable entry ({e.strerror or e})")
            return False
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in self.seen:
                self.skip(path, "repeated-folder", f"links to {os.path.realpath(path)!r}, a folder already listed")
                return False
            self.seen.add((st.st_dev, st.st_ino))
            return True
        if not stat.S_ISREG(st.st_mode):
            self.skip(path, "not-a-file", f"a {_file_type(st.st_mode)}, not a regular file")
            return False
        return True

    def images(self, folder: Path) -> list[Path]:
        """The image files under ``folder`` (already admitted), depth first."""
        found, stack = [], [folder]
        while stack:
            below = []
            for entry in self.entries(stack.pop()):
                is_image = _is_image(Path(entry.name))
                if not (is_image or entry.is_dir()) or not self.admit(entry):
                    continue
                if entry.is_dir():
                    below.append(Path(entry.path))
                else:
                    found.append(Path(entry.path))
            stack.extend(reversed(below))
        return found


def _name_problem(name: str) -> str:
    if "\n" in name or "\r" in name:
        return f"the name {name!r} holds a line break"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"the name {name!r} is not valid UTF-8"
    return ""


def _file_type(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"))
    return next((name for test, name in kinds if test(mode)), "block device" if stat.S_ISBLK(mode) else "special file")


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
    try:  # non-blocking: a FIFO named x.png must not wait forever for a writer
        f = os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb")
    except OSError as e:
        raise ImageSkipped("missing", f"cannot open: {e.strerror or e}") from None
    with warnings.catch_warnings(), f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ImageSkipped("not-a-file", f"a {_file_type(st.st_mode)}, not a regular file")
        if st.st_size == 0:
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
            _limit_pixels(img, max_pixels, st.st_size)
            img.load()
            return _to_rgb(_upright(img))
        except ImageSkipped:
            raise
        except Exception as e:  # truncated data, bad headers, decoder errors: PIL raises many types
            raise ImageSkipped("corrupt", f"truncated or corrupt image data: {type(e).__name__}: {e}") from None


def _limit_pixels(img: Image.Image, max_pixels: int, file_bytes: int) -> None:
    w, h = img.size
    if w * h > max(_SMALL_IMAGE, file_bytes * MAX_PIXELS_PER_BYTE):
        raise ImageSkipped(
            "implausible",
            f"its header declares {w}x{h} pixels, more than {MAX_PIXELS_PER_BYTE} per byte of its {file_bytes} "
            "bytes (truncated or forged)",
        )
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
