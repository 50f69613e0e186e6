"""The built-in demo dataset: procedural images written as a normal ImageFolder of JPEG files.

Layout: ``root/{train,val}/<class>/<index:05d>.jpg`` (quality 90) plus ``root/demo-dataset.json``, the
manifest written last. Image ``(split, class, index)`` is a pure function of ``(seed, split, class,
index)``, so a rerun reuses a complete folder, completes a partial one with the very bytes it would
have had, and a change of counts only adds or removes files. Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from seit.demo.patterns import CLASS_NAMES, render_image
from seit.errors import SeitError
from seit.utils.io import atomic_write_bytes, atomic_write_json
from seit.utils.progress import progress

GENERATOR_VERSION = 4  # bump when the pictures change: old folders are then rebuilt, not mixed
JPEG_QUALITY = 90
SPLITS = ("train", "val")
MANIFEST = "demo-dataset.json"
PARTIAL = ".demo-dataset.partial.json"  # the generation settings, present while files are being written

_IMAGE_NAME = re.compile(r"\d{5,}\.jpg")
_TEMP_NAME = re.compile(r"\..+\.tmp")  # atomic_open's temporaries left by a killed run
_SPLIT_IDS = {"train": 0, "val": 1}
_CHUNK = 40  # images per worker task: small enough to balance, large enough to amortise IPC


@dataclass(frozen=True)
class DemoDatasetInfo:
    """What :func:`make_demo_dataset` built (or found): an ImageFolder per split and its size on disk."""

    root: Path
    classes: tuple[str, ...]
    train_per_class: int
    val_per_class: int
    seed: int
    train_bytes: int  # total JPEG bytes of root/train
    val_bytes: int
    generated: int  # images written by this call (0 when a complete folder was reused)

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def val_dir(self) -> Path:
        return self.root / "val"

    @property
    def num_train(self) -> int:
        return self.train_per_class * len(self.classes)

    @property
    def num_val(self) -> int:
        return self.val_per_class * len(self.classes)


def image_rng(seed: int, split: str, class_name: str, index: int) -> np.random.Generator:
    """The generator that draws one image: independent of counts, workers and generation order."""
    return np.random.default_rng([seed, _SPLIT_IDS[split], CLASS_NAMES.index(class_name), index])


def encode_image(seed: int, split: str, class_name: str, index: int) -> bytes:
    """The JPEG bytes of one dataset image."""
    buf = io.BytesIO()
    render_image(class_name, image_rng(seed, split, class_name, index)).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def load_split(root: str | os.PathLike, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A whole split in memory at low resolution: (uint8 [N, size, size, 3], int64 labels [N], class names).

    Each image's shorter side is resized to ``image_size`` (bicubic) and the centre square kept, the
    usual evaluation transform; classes are the sorted folder names, as torchvision's ImageFolder.
    """
    folder = Path(root) / split
    classes = sorted(d.name for d in _entries(folder) if d.is_dir())
    if not classes:
        raise SeitError(f"{folder}: no class folders; build the demo dataset first (make_demo_dataset)")
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in _entries(folder / name):
            if _IMAGE_NAME.fullmatch(path.name):
                try:
                    with Image.open(path) as img:
                        images.append(_centre_square(img.convert("RGB"), image_size))
                except OSError as e:
                    raise SeitError(f"{path}: unreadable image ({e}); rerun make_demo_dataset to redraw it") from e
                labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def _centre_square(img: Image.Image, size: int) -> np.ndarray:
    scale = size / min(img.size)
    w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def _write_images(root: Path, seed: int, jobs: list[tuple[str, str, int]]) -> int:
    for split, class_name, index in jobs:
        atomic_write_bytes(root / split / class_name / f"{index:05d}.jpg", encode_image(seed, split, class_name, index))
    return len(jobs)


def make_demo_dataset(
    out_dir: str | os.PathLike,
    *,
    train_per_class: int,
    val_per_class: int,
    seed: int = 0,
    num_classes: int | None = None,
    num_workers: int | None = None,
) -> DemoDatasetInfo:
    """Write (or reuse) the demo dataset under ``out_dir`` and describe it.

    ``num_classes`` takes the first classes of :data:`CLASS_NAMES` (default: all 10). ``num_workers``
    processes render in parallel (default: one per CPU core; 0 or 1 renders in this process). Under
    torchrun, call it on one rank and let the others wait at a barrier.
    """
    root = Path(out_dir)
    classes = CLASS_NAMES if num_classes is None else CLASS_NAMES[:num_classes]
    if num_classes is not None and not 2 <= num_classes <= len(CLASS_NAMES):
        raise SeitError(f"demo dataset: num_classes must be between 2 and {len(CLASS_NAMES)}, got {num_classes}")
    if train_per_class < 1 or val_per_class < 1:
        raise SeitError(
            f"demo dataset: need at least one image per class and split, got train_per_class={train_per_class}, "
            f"val_per_class={val_per_class}"
        )
    if seed < 0:
        raise SeitError(f"demo dataset: seed must be a non-negative integer, got {seed}")
    counts = {"train": train_per_class, "val": val_per_class}
    # What an image's bytes depend on (besides its split, class and index, and the library versions).
    settings = {"generator_version": GENERATOR_VERSION, "seed": seed}

    existing = _scan(root)
    manifest = _read_json(root / MANIFEST)
    trusted = _trusted(root, settings, manifest, existing)
    wanted = {(split, name, i) for split in SPLITS for name in classes for i in range(counts[split])}
    if manifest is not None and trusted == set(existing) == wanted:
        return _info(root, manifest, generated=0)  # complete and untouched since it was written

    # Crash-safe order: no manifest while the folder changes; the settings marker before any new image.
    (root / MANIFEST).unlink(missing_ok=True)
    for key, path in existing.items():
        if key not in trusted or key not in wanted:
            path.unlink()
    for split in SPLITS:
        for class_dir in _entries(root / split):
            if class_dir.name not in classes:
                class_dir.rmdir()
    atomic_write_json(root / PARTIAL, settings)

    jobs = sorted(wanted - trusted, key=lambda key: (SPLITS.index(key[0]), classes.index(key[1]), key[2]))
    _run(root, seed, jobs, num_workers)

    manifest = {
        "format": "seit-demo-dataset",
        **settings,
        "classes": list(classes),
        "counts": counts,
        "jpeg_quality": JPEG_QUALITY,
        "bytes": {split: {name: _folder_bytes(root / split / name) for name in classes} for split in SPLITS},
        "library_versions": {"numpy": np.__version__, "pillow": PIL.__version__},
    }
    atomic_write_json(root / MANIFEST, manifest)
    (root / PARTIAL).unlink(missing_ok=True)
    return _info(root, manifest, generated=len(jobs))


def _run(root: Path, seed: int, jobs: list[tuple[str, str, int]], num_workers: int | None) -> None:
    workers = _usable_cores() if num_workers is None else num_workers
    chunks = [jobs[i : i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    with progress(total=len(jobs), desc="demo dataset", unit="img") as bar:
        if workers <= 1 or len(chunks) < 4:  # starting worker processes costs more than a few chunks
            for chunk in chunks:
                bar.update(_write_images(root, seed, chunk))
            return
        # spawn: safe even when the caller has torch (and its thread pools) loaded already
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=ctx) as pool:
            for done in pool.map(_write_images, [root] * len(chunks), [seed] * len(chunks), chunks):
                bar.update(done)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _scan(root: Path) -> dict[tuple[str, str, int], Path]:
    """Our images already under ``root``; refuses a folder holding anything that is not ours."""
    if root.exists() and not root.is_dir():
        raise SeitError(f"{root}: is a file, not a folder; choose a folder for the demo dataset")
    found: dict[tuple[str, str, int], Path] = {}
    foreign: list[Path] = []
    for entry in _entries(root):
        if entry.name in SPLITS and entry.is_dir():
            for class_dir in _entries(entry):
                if class_dir.name not in CLASS_NAMES or not class_dir.is_dir():
                    foreign.append(class_dir)
                    continue
                for f in _entries(class_dir):
                    if _IMAGE_NAME.fullmatch(f.name) and f.is_file():
                        found[(entry.name, class_dir.name, int(f.name[:-4]))] = f
                    elif _TEMP_NAME.fullmatch(f.name):
                        f.unlink()
                    else:
                        foreign.append(f)
        elif entry.name in (MANIFEST, PARTIAL):
            continue
        elif _TEMP_NAME.fullmatch(entry.name):
            entry.unlink()
        else:
            foreign.append(entry)
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise SeitError(
            f"{root}: holds files that are not part of a seit demo dataset ({shown}); nothing was changed. "
            f"Use an empty or new folder for the demo dataset, or remove those files."
        )
    return found


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # an unreadable marker only means the images are rebuilt
    return data if isinstance(data, dict) else None


def _trusted(root: Path, settings: dict, manifest: dict | None, existing: dict) -> set[tuple[str, str, int]]:
    """The existing images known to be exactly what the current settings draw.

    A folder listed in a manifest of the same settings is trusted when its file names and total size
    still match the manifest (else it is redrawn whole: something outside seit changed it). Images
    written under a progress marker of the same settings are trusted one by one, as each was written
    atomically.
    """
    if manifest is not None and all(manifest.get(k) == v for k, v in settings.items()):
        counts, sizes = manifest.get("counts", {}), manifest.get("bytes", {})
        trusted = set()
        for split in SPLITS:
            for name in manifest.get("classes", []):
                listed = {(split, name, i) for i in range(counts.get(split, 0))}
                present = {key for key in existing if key[:2] == (split, name)}
                size = sizes.get(split, {}).get(name)
                if listed and present == listed and size == _folder_bytes(root / split / name):
                    trusted |= listed
        return trusted
    marker = _read_json(root / PARTIAL)
    if marker is not None and all(marker.get(k) == v for k, v in settings.items()):
        return set(existing)
    return set()


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if _IMAGE_NAME.fullmatch(f.name))


def _info(root: Path, manifest: dict, generated: int) -> DemoDatasetInfo:
    return DemoDatasetInfo(
        root=root,
        classes=tuple(manifest["classes"]),
        train_per_class=manifest["counts"]["train"],
        val_per_class=manifest["counts"]["val"],
        seed=manifest["seed"],
        train_bytes=sum(manifest["bytes"]["train"].values()),
        val_bytes=sum(manifest["bytes"]["val"].values()),
        generated=generated,
    )
