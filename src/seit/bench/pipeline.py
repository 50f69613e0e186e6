"""Benchmark (a): the input pipeline, token ids -> augmented batch ready for the model, per CPU core."""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from typing import TYPE_CHECKING, Any

from seit.config import arg_type, at_least, non_negative

if TYPE_CHECKING:  # torch and numpy load inside the functions, so `seit --help` stays fast
    import numpy as np
    import torch

DESCRIPTION = """\
Input pipeline: stored token ids -> augmented training batch ready for the model, per CPU core.

seit: DataLoader batches carry int16 ids; TokenAugment does Token-EDA, the codebook lookup, the
random resized crop (on embeddings), ColorAdapt / Emb-Noise and CutMix for the whole batch.
Baseline: a faithful rebuild of SeiT's pipeline (datasets.py, token_transform.py, engine_seit.py):
per sample a Python synonym loop or patch swap, a float one-hot map [K, H, W], a bicubic resized crop
on all K channels, then a stacked float batch, the codebook product, noise / ColorAdapt and CutMix.

Both read the same tokens from their own format (seit: a token store, memory-mapped shards and batched
decode; SeiT: its decompressed release byte stream, decoded per sample in Python) and run on one torch
thread on the CPU, in alternating rounds of the same run. Rates are samples per CPU-second of this
process (robust on shared machines, where other jobs take wall-clock time) and per wall-clock second;
also bytes per sample sent to the device.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch-size",
        type=arg_type(int, at_least(1)),
        default=256,
        help="samples per batch for both pipelines (default: 256)",
    )
    p.add_argument(
        "--rounds",
        type=arg_type(int, at_least(1)),
        default=5,
        help="alternating measurement rounds; medians reported (default: 5)",
    )
    p.add_argument(
        "--seit-batches", type=arg_type(int, at_least(1)), default=4, help="seit batches per round (default: 4)"
    )
    p.add_argument(
        "--baseline-samples",
        type=arg_type(int, at_least(2)),
        default=64,
        help="baseline samples per round (default: 64)",
    )
    p.add_argument("--grid", type=arg_type(int, at_least(2)), default=32, help="token grid side H = W (default: 32)")
    p.add_argument(
        "--codes",
        type=arg_type(int, at_least(2)),
        default=391,
        help="codebook size K (default: 391, SeiT's pruned codebook)",
    )
    p.add_argument("--dim", type=arg_type(int, at_least(1)), default=32, help="code dimension D (default: 32)")
    p.add_argument("--classes", type=arg_type(int, at_least(1)), default=1000, help="number of classes (default: 1000)")
    p.add_argument(
        "--seed",
        type=arg_type(int, non_negative),
        default=0,
        help="seed of the synthetic ids and both pipelines (default: 0)",
    )
    p.add_argument(
        "--allocator",
        choices=("caching", "system"),
        default="caching",
        help="'caching': glibc keeps freed memory (mallopt), like the caching allocator a GPU run uses; "
        "'system': glibc defaults, where re-faulting freed buffers adds kernel time to both (default: caching)",
    )


def in_memory_ids(num_samples: int, grid: int, synonyms: torch.Tensor, seed: int) -> np.ndarray:
    """The tokens both pipelines read (each from its own format): int16 id grids [N, grid, grid].

    Realistic layout: codes are constant over 4x4 blocks (VQ tokens of one object part repeat) and 30%
    of tokens are swapped for a near synonym, as neighbouring tokens of real images differ slightly.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    num_codes = synonyms.shape[0]
    coarse = rng.integers(0, num_codes, size=(num_samples, (grid + 3) // 4, (grid + 3) // 4))
    ids = coarse.repeat(4, axis=1).repeat(4, axis=2)[:, :grid, :grid]
    near = synonyms.numpy()[ids, rng.integers(1, synonyms.shape[1], size=ids.shape)]
    return np.where(rng.random(ids.shape) < 0.3, near, ids).astype(np.int16)


class SeitReferencePipeline:
    """SeiT's per-sample pipeline, rebuilt for measurement (not used for training).

    Worker side per sample: RandomChoice(synonym replacement 0.25 | patch swap 0.25 | none), one-hot
    float map [K, H, W], RandomResizedCrop to m x m with F.interpolate(bicubic); default collation.
    Device side per batch: codebook product, RandomChoice(noise on half the batch 0.5 | ColorAdapt on
    half the batch 0.25 | none), timm Mixup (CutMix 1.0, smoothing 0.1).
    """

    def __init__(
        self, codebook: torch.Tensor, synonyms: torch.Tensor, num_classes: int, side: int, topk: int = 5
    ) -> None:
        from timm.data import Mixup

        self.codebook = codebook
        self.side = side
        self.synonym_lists = {str(i): row.tolist() for i, row in enumerate(synonyms)}
        self.topk = topk
        self.mixup = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=num_classes)

    # --- worker side, one sample ---
    def sample(self, ids_2d: np.ndarray) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        tokens = torch.LongTensor(ids_2d.astype("int64"))
        op = random.choices(("synonym", "swap", "none"), weights=(0.25, 0.25, 0.5))[0]
        if op == "synonym":
            tokens = self._replace(tokens)
        elif op == "swap":
            tokens = self._swap(tokens)
        onehot = F.one_hot(tokens, self.codebook.shape[0]).float().permute(2, 0, 1)
        top, left, h, w = self._rrc_box(onehot.shape[-2], onehot.shape[-1])
        crop = onehot[:, top : top + h, left : left + w]
        return F.interpolate(crop.unsqueeze(0), size=(self.side, self.side), mode="bicubic").squeeze(0)

    def _replace(self, tokens: torch.Tensor) -> torch.Tensor:
        import torch

        out = []
        for code in tokens.flatten():
            if torch.empty(1).uniform_(0, 1) < 0.25:
                out.append(random.choice(self.synonym_lists[str(code.item())][: self.topk]))
            else:
                out.append(code.item())
        return torch.LongTensor(out).reshape(tokens.shape)

    def _swap(self, tokens: torch.Tensor) -> torch.Tensor:
        import torch

        h, w = tokens.shape
        size = int(min(h, w) * torch.empty(1).uniform_(0, 0.25).item())
        while True:
            y0, x0 = random.randint(0, h - size - 1), random.randint(0, w - size - 1)
            y1, x1 = random.randint(0, h - size - 1), random.randint(0, w - size - 1)
            if math.hypot(y1 - y0, x1 - x0) > size:
                break
        out = tokens.clone()
        out[y0 : y0 + size, x0 : x0 + size] = tokens[y1 : y1 + size, x1 : x1 + size]
        out[y1 : y1 + size, x1 : x1 + size] = tokens[y0 : y0 + size, x0 : x0 + size]
        return out

    def _rrc_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        import torch

        area = height * width
        log_ratio = torch.log(torch.tensor((3 / 4, 4 / 3)))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(0.08, 1.0).item()
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = torch.randint(0, height - h + 1, size=(1,)).item()
                left = torch.randint(0, width - w + 1, size=(1,)).item()
                return top, left, h, w
        return 0, 0, height, width

    # --- device side, one batch ---
    def batch(self, maps: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        x = (maps.permute(0, 2, 3, 1) @ self.codebook).permute(0, 3, 1, 2)
        op = random.choices(("noise", "adapt", "none"), weights=(0.5, 0.25, 0.25))[0]
        b, c, h, w = x.shape
        if op == "noise":
            noise = torch.randn(b, c, 1, 1) + torch.randn(b, c, h, w)
            noise[torch.randperm(b)[b // 2 :]] = 0.0
            x += noise
        elif op == "adapt":
            mean, std = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True)
            adapted = (x - mean) / std * x.flip(0).std(dim=(2, 3), keepdim=True) + x.flip(0).mean(
                dim=(2, 3), keepdim=True
            )
            rows = torch.randperm(b)[: b // 2]
            x[rows] = adapted[rows]
        return self.mixup(x, labels)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from seit.errors import SeitError

    if args.batch_size < 2 or args.batch_size % 2:
        raise SeitError(f"--batch-size must be even and >= 2 (CutMix pairs samples), got {args.batch_size}")

    cached = args.allocator == "caching" and keep_freed_memory()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per CPU core
    try:
        figures = _measure(args)
    finally:
        torch.set_num_threads(threads)
    figures["allocator"] = "caching" if cached else "system"
    return figures


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel (no-op elsewhere).

    Both pipelines allocate megabytes per batch or sample; by default glibc unmaps such blocks on free
    and every reuse page-faults them back in, which is kernel time, not pipeline work. Irreversible for
    the process, so only the benchmark command does it.
    """
    import ctypes
    import ctypes.util

    path = ctypes.util.find_library("c")
    try:
        mallopt = getattr(ctypes.CDLL(path), "mallopt", None) if path else None
    except OSError:
        mallopt = None
    if mallopt is None:  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


def write_store(path, ids, labels, codes: int):
    """The benchmark's token store (the default codec), opened for reading."""
    from seit.store import StoreWriter, TokenStore

    with StoreWriter(path, grid_shape=ids.shape[1:], codebook_size=codes) as writer:
        writer.append_batch(ids, labels, [str(i) for i in range(len(ids))])
    store = TokenStore.open(path)
    store.get_batch(range(len(ids)))  # first read checks every shard's sha256: not part of the rate
    return store


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from seit.augment import AugmentConfig, TokenAugment, synonyms_from_codebook
    from seit.interop.seit_release import decode_sample, encode_stream

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    codebook = torch.randn(args.codes, args.dim, generator=torch.Generator().manual_seed(args.seed))
    synonyms = synonyms_from_codebook(codebook, 10)
    pool = max(4 * args.batch_size, args.baseline_samples)
    source = in_memory_ids(pool, args.grid, synonyms, args.seed)
    labels = np.random.default_rng(args.seed).integers(0, args.classes, size=pool)

    config = AugmentConfig()
    side = config.crop_side(args.grid, args.grid)
    ours = TokenAugment(config, codebook, synonyms, num_classes=args.classes, seed=args.seed)
    baseline = SeitReferencePipeline(codebook, synonyms, args.classes, side)
    order = np.random.default_rng(args.seed + 1)
    # Both read the same tokens from their own format: a seit store (memory-mapped shards, batched decode)
    # and SeiT's decompressed release stream (a Python decode per sample, as its dataset does).
    tmp = tempfile.TemporaryDirectory(prefix="seit-bench-pipeline-")
    store = write_store(Path(tmp.name) / "store", source, labels, args.codes)
    stream, offsets = encode_stream(source)
    numel = args.grid * args.grid

    def seit_round() -> tuple[int, int]:
        for _ in range(args.seit_batches):
            ids, y = store.get_batch(order.integers(0, pool, size=args.batch_size))
            ids, y = torch.from_numpy(ids), torch.from_numpy(y)  # what the DataLoader hands over
            ours.train(ids, y)
        return args.seit_batches * args.batch_size, ids.nbytes // args.batch_size

    def baseline_round() -> tuple[int, int]:
        done, nbytes = 0, 0
        while done < args.baseline_samples:
            n = min(args.batch_size, args.baseline_samples - done)
            n -= n % 2  # timm's Mixup needs even batches
            idx = order.integers(0, pool, size=n)
            grids = [
                decode_sample(stream[offsets[i] : offsets[i + 1]], numel).reshape(args.grid, args.grid) for i in idx
            ]
            maps = torch.stack([baseline.sample(g) for g in grids])  # the DataLoader's collation
            nbytes = maps.nbytes // n
            baseline.batch(maps, torch.from_numpy(labels[idx]))
            done += n
        return done, nbytes

    seit_round()  # warm-up: allocator, first-call dispatch
    baseline_round()
    rates: dict[str, dict[str, list[float]]] = {"seit": {"cpu": [], "wall": []}, "baseline": {"cpu": [], "wall": []}}
    for _ in range(args.rounds):
        for name, one_round in (("seit", seit_round), ("baseline", baseline_round)):
            cpu, wall = time.process_time(), time.perf_counter()
            samples, nbytes = one_round()
            rates[name]["cpu"].append(samples / (time.process_time() - cpu))
            rates[name]["wall"].append(samples / (time.perf_counter() - wall))
            if name == "seit":
                seit_bytes = nbytes
            else:
                base_bytes = nbytes
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in rates.items()}
    best = {name: max(r["cpu"]) for name, r in rates.items()}  # least disturbed round: noise only slows down
    figures = {
        "seit_samples_per_cpu_s": round(med["seit"]["cpu"], 1),
        "baseline_samples_per_cpu_s": round(med["baseline"]["cpu"], 1),
        "speedup": round(med["seit"]["cpu"] / med["baseline"]["cpu"], 1),
        "speedup_best_rounds": round(best["seit"] / best["baseline"], 1),
        "seit_samples_per_wall_s": round(med["seit"]["wall"], 1),
        "baseline_samples_per_wall_s": round(med["baseline"]["wall"], 1),
        "speedup_wall": round(med["seit"]["wall"] / med["baseline"]["wall"], 1),
        "rounds": {name: {k: [round(x, 1) for x in v] for k, v in r.items()} for name, r in rates.items()},
        "seit_bytes_per_sample": seit_bytes,
        "baseline_bytes_per_sample": base_bytes,
        "bytes_ratio": round(base_bytes / seit_bytes, 1),
        "batch_size": args.batch_size,
        "grid": args.grid,
        "crop": side,
        "codes": args.codes,
        "dim": args.dim,
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"input pipeline, stored {args.grid}x{args.grid} ids -> [B, {args.dim}, {side}, {side}], 1 torch thread, "
        f"batch {args.batch_size}, {args.rounds} alternating rounds, {args.allocator} allocator"
    )
    header = ("samples/CPU-s", "best round", "samples/wall-s", "bytes/sample")
    print(f"  {'':20s}" + "".join(f"{h:>16s}" for h in header))
    for label, name, nbytes in (("seit TokenAugment", "seit", seit_bytes), ("SeiT per-sample", "baseline", base_bytes)):
        row = (med[name]["cpu"], best[name], med[name]["wall"])
        print(f"  {label:20s}" + "".join(f"{v:16.1f}" for v in row) + f"{nbytes:16d}")
    print(
        f"  speedup {figures['speedup']}x per CPU-second, median of rounds ({figures['speedup_best_rounds']}x best "
        f"rounds, {figures['speedup_wall']}x wall clock); {figures['bytes_ratio']}x fewer bytes per sample"
    )
    tmp.cleanup()
    return figures
