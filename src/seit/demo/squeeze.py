"""Pixels squeezed to a byte budget: the paper's baselines for a storage / accuracy trade-off.

SeiT compares tokens with the same images stored in fewer bytes: JPEG at a low quality, and images
downsampled before storing. Both are re-encodings of an image folder into a new ImageFolder tree with the
same relative paths and labels; the pixel baseline then trains on it as on any folder (its random resized
crop scales every image back to the model's input size), and is evaluated on the full-quality held-out images.

``match_budget`` picks the setting whose bytes per image come closest to a target from below (never more
bytes than the target, unless even the smallest setting is above it: then the smallest).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from seit.errors import SeitError
from seit.images import ImageSkipped, list_images, open_rgb
from seit.utils.io import atomic_write_bytes, atomic_write_json

MANIFEST = "squeeze.json"  # written last: a folder without it is incomplete and is rebuilt
PARTIAL = ".squeeze-partial.json"  # present while a folder is being written
JPEG_QUALITIES = tuple(range(1, 96))
# the downsampled row's codec: WebP keeps a few dozen header bytes per file where JPEG needs ~300, so it is
# the stronger pixel baseline at budgets of a few hundred bytes per image
DOWNSAMPLE_FORMAT, DOWNSAMPLE_QUALITY = "webp", 80
MIN_SIDE = 8


@dataclass(frozen=True)
class Squeeze:
    """One way to store an image in fewer bytes: a codec and quality, optionally after downsampling.

    ``side`` is the shorter side after a bicubic downsample (aspect kept; never upsampled); None keeps the
    original size.
    """

    format: str  # "jpeg" or "webp"
    quality: int
    side: int | None = None

    def __post_init__(self) -> None:
        if self.format not in ("jpeg", "webp"):
            raise SeitError(f"squeeze: format must be jpeg or webp, got {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise SeitError(f"squeeze: quality must be in 1..100, got {self.quality}")
        if self.side is not None and self.side < 1:
            raise SeitError(f"squeeze: side must be >= 1, got {self.side}")

    @property
    def suffix(self) -> str:
        return ".jpg" if self.format == "jpeg" else ".webp"

    def describe(self) -> str:
        codec = f"{self.format.upper()} quality {self.quality}"
        return codec if self.side is None else f"downsampled to {self.side} px (shorter side), {codec}"

    def encode(self, image: Image.Image) -> bytes:
        """The bytes of ``image`` (RGB) stored this way."""
        if self.side is not None and min(image.size) > self.side:
            scale = self.side / min(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.BICUBIC)
        buf = io.BytesIO()
        if self.format == "jpeg":
            image.save(buf, format="JPEG", quality=self.quality, optimize=True)
        else:
            image.save(buf, format="WEBP", quality=self.quality)
        return buf.getvalue()


def _open(path: Path) -> Image.Image:
    try:
        return open_rgb(path)
    except ImageSkipped as e:
        raise SeitError(f"{path}: cannot be read ({e.reason}); remove it from the image folder") from e


def mean_bytes(paths: Sequence[Path], squeeze: Squeeze) -> float:
    """Mean encoded size of ``paths`` stored as ``squeeze``."""
    return sum(len(squeeze.encode(_open(p))) for p in paths) / len(paths)


def match_budget(
    paths: Sequence[Path], budget: float, settings: Sequence[Squeeze], measure: Callable[..., float] = mean_bytes
) -> tuple[Squeeze, float]:
    """The setting of ``settings`` (ordered by growing bytes) with the most bytes per image <= ``budget``.

    Bisection over the ordered settings, each measured on ``paths`` (a sample of the folder); when even the
    first exceeds the budget, the first. Returns the setting and its measured bytes per image.
    """
    if not settings:
        raise SeitError("squeeze: no settings to choose from")
    lo, hi = 0, len(settings) - 1
    lo_bytes = measure(paths, settings[0])
    if lo_bytes > budget:
        return settings[0], lo_bytes
    while lo < hi:  # invariant: settings[lo] fits the budget
        mid = (lo + hi + 1) // 2
        size = measure(paths, settings[mid])
        if size <= budget:
            lo, lo_bytes = mid, size
        else:
            hi = mid - 1
    return settings[lo], lo_bytes


def jpeg_settings() -> list[Squeeze]:
    return [Squeeze("jpeg", q) for q in JPEG_QUALITIES]


def downsample_settings(max_side: int) -> list[Squeeze]:
    return [Squeeze(DOWNSAMPLE_FORMAT, DOWNSAMPLE_QUALITY, side) for side in range(MIN_SIDE, max_side + 1)]


def _encode_one(job: tuple[str, str, Squeeze]) -> int:
    src, dst, squeeze = job
    data = squeeze.encode(_open(Path(src)))
    atomic_write_bytes(Path(dst), data)
    return len(data)


def squeeze_folder(src: str | os.PathLike, dst: str | os.PathLike, squeeze: Squeeze, num_workers: int = 0) -> int:
    """Re-encode the images of ``src`` (an ImageFolder tree) into ``dst``; returns the bytes written.

    A finished folder (its manifest names the same setting and source) is reused as it is; one of another
    setting, or left unfinished, is rebuilt from scratch. Any other existing folder is refused.
    """
    src, dst = Path(src), Path(dst)
    manifest, partial = dst / MANIFEST, dst / PARTIAL
    wanted = {"source": str(src.resolve()), "squeeze": dataclasses.asdict(squeeze)}
    if manifest.exists():
        done = json.loads(manifest.read_text())
        if {k: done.get(k) for k in wanted} == wanted:
            return int(done["bytes"])
    if dst.exists() and any(dst.iterdir()):
        if not (manifest.exists() or partial.exists()):
            raise SeitError(f"{dst}: exists and is not a folder of squeezed images; give another output folder")
        shutil.rmtree(dst)
    atomic_write_json(partial, wanted)
    listing = list_images(src)
    jobs = []
    for sample in listing.samples:
        rel = Path(sample.path).relative_to(src)
        jobs.append((str(sample.path), str((dst / rel).with_suffix(squeeze.suffix)), squeeze))
    if num_workers > 0 and len(jobs) > 64:
        with ProcessPoolExecutor(num_workers) as pool:
            total = sum(pool.map(_encode_one, jobs, chunksize=32))
    else:
        total = sum(_encode_one(job) for job in jobs)
    atomic_write_json(manifest, {**wanted, "bytes": total, "images": len(jobs)})
    partial.unlink()
    return total
