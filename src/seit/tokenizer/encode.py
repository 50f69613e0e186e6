"""Batch encoding of image collections: decode in DataLoader workers, encode on the device, in order.

``encode_images`` is what ``seit tokenize`` builds on: it takes this rank's contiguous share of a
sorted sample list, skips what a resumed store already holds, decodes images in worker processes,
and yields ``(ids, labels, keys)`` batches in input order. Images that cannot be used are collected
as :class:`SkipRecord` on the job, for :func:`write_skip_report` and :func:`summarize_skips`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from seit.images import DEFAULT_MAX_PIXELS, ImageDataset, ImageList, Sample, SkipRecord, list_images, shard
from seit.runtime import ignore_stop_signals
from seit.store.codec import ids_dtype
from seit.tokenizer.amp import autocast
from seit.tokenizer.config import TokenizerError
from seit.tokenizer.model import Tokenizer
from seit.utils.dist import default_device
from seit.utils.io import atomic_open
from seit.utils.progress import progress


@dataclass
class ImageBatch:
    images: torch.Tensor  # uint8 [b, 3, S, S] of the images that decoded
    labels: np.ndarray  # int64 [b]
    keys: list[str]
    skipped: list[SkipRecord]
    count: int  # samples this batch covered, decoded or skipped


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    return min(8, cpu_count())


@contextlib.contextmanager
def cpu_threads(device: torch.device, workers: int, threads: int | None = None) -> Iterator[None]:
    """On CPU, run torch on ``threads`` threads, by default on the cores the decoding workers leave free.

    Intra-op threads plus worker processes beyond the core count make OpenMP threads wait on each
    other (see BENCHMARKS.md, tokenizer section, for what that costs).
    """
    if device.type != "cpu" or (threads is None and workers == 0):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads if threads is not None else max(1, cpu_count() - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def image_batches(
    samples: list[Sample],
    *,
    size: int,
    batch_size: int,
    num_workers: int | None = None,
    resize: str = "squash",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    pin_memory: bool = False,
) -> Iterator[ImageBatch]:
    """Decoded, resized uint8 batches of ``samples`` in order; skipped images ride along as records."""
    dataset = ImageDataset(samples, size, resize, max_pixels)
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_keep_list,
        prefetch_factor=4 if workers else None,
        worker_init_fn=ignore_stop_signals,
    )
    for items in loader:
        good = [(i, image) for i, image, _, _ in items if image is not None]
        skipped = [_skip_record(samples[i], kind, reason) for i, image, kind, reason in items if image is None]
        if good:
            images = torch.from_numpy(np.stack([image for _, image in good]))
        else:
            images = torch.empty(0, 3, size, size, dtype=torch.uint8)
        if pin_memory and good:
            images = images.pin_memory()
        labels = np.asarray([samples[i].label for i, _ in good], dtype=np.int64)
        yield ImageBatch(images, labels, [samples[i].key for i, _ in good], skipped, len(items))


def _keep_list(items: list) -> list:
    return items


def _skip_record(sample: Sample, kind: str, reason: str) -> SkipRecord:
    return SkipRecord(sample.key, sample.path, kind, reason)


@dataclass
class EncodeJob:
    """Iterate for ``(ids [b, h, w], labels [b], keys)`` batches; ``skipped`` fills in as it goes.

    Ids use the smallest integer dtype that holds the codebook (int16 up to 32768 codes).
    """

    tokenizer: Tokenizer
    samples: list[Sample]
    batch_size: int = 64
    num_workers: int | None = None
    device: torch.device = field(default_factory=default_device)
    rank: int = 0
    world_size: int = 1
    skip_keys: frozenset[str] = frozenset()
    resize: str = "squash"
    max_pixels: int = DEFAULT_MAX_PIXELS
    precision: str = "auto"
    threads: int | None = None  # torch threads on CPU (default: the cores the decoding workers leave)
    skipped: list[SkipRecord] = field(default_factory=list)
    encoded: int = 0

    def todo(self) -> list[Sample]:
        """This rank's share, without the keys already done."""
        return [s for s in shard(self.samples, self.rank, self.world_size) if s.key not in self.skip_keys]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        todo = self.todo()
        share = len(shard(self.samples, self.rank, self.world_size))  # the bar and its ETA cover the whole share
        tokenizer = self.tokenizer.to(self.device).eval()
        dtype = ids_dtype(tokenizer.codebook_size)
        workers = default_workers() if self.num_workers is None else self.num_workers
        batches = image_batches(
            todo,
            size=tokenizer.config.image_size,
            batch_size=self.batch_size,
            num_workers=workers,
            resize=self.resize,
            max_pixels=self.max_pixels,
            pin_memory=self.device.type == "cuda",
        )
        with (
            progress(total=share, initial=share - len(todo), desc="encode", unit="img") as bar,
            torch.inference_mode(),
            cpu_threads(self.device, workers, self.threads),
        ):
            for batch in batches:
                self.skipped.extend(batch.skipped)
                bar.update(batch.count)
                if batch.skipped:
                    bar.set_postfix(skipped=len(self.skipped))
                if not batch.keys:
                    continue
                images = batch.images.to(self.device, non_blocking=True).float().div_(255)
                with autocast(self.device, self.precision):
                    ids = tokenizer.encode(images)
                self.encoded += len(batch.keys)
                yield ids.cpu().numpy().astype(dtype), batch.labels, batch.keys


def encode_images(
    tokenizer: Tokenizer,
    samples: list[Sample] | ImageList | str | os.PathLike,
    *,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    rank: int = 0,
    world_size: int = 1,
    skip_keys: Iterable[str] = (),
    resize: str = "squash",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precision: str = "auto",
    threads: int | None = None,
) -> EncodeJob:
    """An :class:`EncodeJob` over this rank's share of ``samples`` (sorted list; rank 0 takes the first part).

    ``samples``: an image folder or list file (listed by :func:`seit.images.list_images`), its ``ImageList``,
    or the samples themselves. Iterate the job for ``(ids, labels, keys)`` batches in input order; read
    ``job.skipped`` afterwards.
    """
    if not isinstance(tokenizer, Tokenizer):
        raise TokenizerError(
            "encode_images takes a loaded tokenizer (seit.tokenizer.load_tokenizer(path)), got "
            f"{type(tokenizer).__name__}"
        )
    if isinstance(samples, str | os.PathLike):
        samples = list_images(samples)
    if isinstance(samples, ImageList):
        samples = samples.samples
    if not isinstance(samples, list | tuple) or not all(isinstance(s, Sample) for s in samples):
        raise TokenizerError(
            "encode_images takes an image folder, a list file, an ImageList or a list of seit.images.Sample, got "
            f"{type(samples).__name__}"
        )
    return EncodeJob(
        tokenizer,
        samples,
        batch_size=batch_size,
        num_workers=num_workers,
        device=torch.device(device) if device is not None else default_device(),
        rank=rank,
        world_size=world_size,
        skip_keys=frozenset(skip_keys),
        resize=resize,
        max_pixels=max_pixels,
        precision=precision,
        threads=threads,
    )


def write_skip_report(path: str | os.PathLike, records: Iterable[SkipRecord]) -> None:
    """One JSON object per skipped image (key, path, kind, reason), sorted by key; written atomically."""
    with atomic_open(path, "w") as f:
        for record in sorted(records, key=lambda r: r.key):
            f.write(json.dumps(asdict(record)) + "\n")


def read_skip_report(path: str | os.PathLike) -> list[SkipRecord]:
    """The records of a report written by :func:`write_skip_report` (none if the file does not exist)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    return [SkipRecord(**json.loads(line)) for line in lines if line.strip()]


def summarize_skips(records: Iterable[SkipRecord], total: int) -> str:
    """E.g. ``3 of 120 images skipped (2 corrupt, 1 empty)``."""
    kinds = Counter(r.kind for r in records)
    n = sum(kinds.values())
    if not n:
        return f"all {total} images encoded"
    detail = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
    return f"{n} of {total} images skipped ({detail})"
