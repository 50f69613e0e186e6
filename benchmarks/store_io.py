"""Token store I/O benchmark: random-access batches, open cost, streaming and index overhead.

Every figure is measured in one run against baselines measured in the same run:
- the reference loader: SeiT's released files decoded one sample at a time with a per-byte Python loop, as
  the official ``datasets.TokenDataset`` does (re-implemented here, same algorithm);
- ``SeitReleaseDataset`` (the same files, vectorised per-sample decode);
- an in-RAM numpy array of all ids (the ceiling for any loader).

Run: ``PYTHONPATH=src python benchmarks/store_io.py [--samples 20000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seit.interop.seit_release import SeitReleaseDataset, encode_stream
from seit.store import StoreWriter, TokenDataset, TokenStore, TokenStream
from seit.store.stats import store_info

GRID, K, BATCH = (32, 32), 391, 256


def make_ids(n: int, seed: int) -> np.ndarray:
    """Token grids with a skewed code marginal (content does not matter for I/O; size per sample does)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, K + 1) ** 0.7
    return rng.choice(K, size=(n, *GRID), p=p / p.sum()).astype(np.int16)


def write_release(directory: Path, ids: np.ndarray, labels: np.ndarray) -> Path:
    data, offsets = encode_stream(ids)
    prefix = directory / "bench"
    Path(f"{prefix}-token.data.bin.gz").write_bytes(gzip.compress(data, compresslevel=6))
    buf = io.BytesIO()
    np.save(buf, offsets)
    Path(f"{prefix}-token.index.npy.gz").write_bytes(gzip.compress(buf.getvalue()))
    Path(f"{prefix}-label.txt").write_text("".join(f"{x}\n" for x in labels))
    return prefix


def reference_getitem(stream: bytes, starts: np.ndarray, index: int) -> torch.Tensor:
    """One sample as the official loader decodes it: a Python loop over the bytes, then a LongTensor."""
    out, pending = [], 0
    for byte in stream[starts[index] : starts[index + 1]]:
        if byte == 255:
            pending = 255
            continue
        out.append(byte + pending)
        pending = 0
    return torch.LongTensor(out).reshape(*GRID)


def rate(fn, batches: list[np.ndarray], repeats: int = 3, min_seconds: float = 0.5) -> float:
    """Samples per second of ``fn(batch)`` over ``batches``: the best of ``repeats`` timed rounds (shared machine)."""
    best = 0.0
    for _ in range(repeats):
        done, start = 0, time.perf_counter()
        while True:
            for b in batches:
                fn(b)
                done += len(b)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, done / elapsed)
    return best


def best_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def imagenet_like_metadata(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Class-sorted labels and ``nXXXXXXXX/nXXXXXXXX_NNNN.JPEG`` keys, like ImageNet's train list."""
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, 1000, n))
    wnids = rng.integers(1_000_000, 15_000_000, 1000)
    keys = [f"n{wnids[c]:08d}/n{wnids[c]:08d}_{rng.integers(1, 50000)}.JPEG" for c in labels]
    return labels, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codec", default="raw", help="codec of the stores (default raw; stores default to ctx-ans)")
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("SEIT_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        figures = run(Path(tmp), args.samples, args.seed, args.codec)
    figures["machine"] = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


def run(tmp: Path, n: int, seed: int, codec: str) -> dict:
    ids = make_ids(n, seed)
    labels, keys = imagenet_like_metadata(n, seed)

    t = time.perf_counter()
    with StoreWriter(tmp / "store", grid_shape=GRID, codebook_size=K, shard_bytes=8 << 20, codec=codec) as w:
        for i in range(0, n, 1024):
            w.append_batch(ids[i : i + 1024], labels[i : i + 1024], keys[i : i + 1024])
    write_rate = n / (time.perf_counter() - t)
    with StoreWriter(tmp / "small", grid_shape=GRID, codebook_size=K, shard_bytes=8 << 20, codec=codec) as w:
        w.append_batch(ids[:1000], labels[:1000], keys[:1000])
    prefix = write_release(tmp, ids, labels)

    store = TokenStore.open(tmp / "store")
    info = store_info(store)
    rng = np.random.default_rng(seed + 1)
    batches = [rng.integers(0, n, BATCH) for _ in range(50)]
    store.get_batch(np.arange(n))  # warm-up: maps and checks every shard once

    dataset = TokenDataset(tmp / "store")
    dataset.__getitems__(np.arange(n))
    release = SeitReleaseDataset(f"{prefix}-token.data.bin.gz", labels=f"{prefix}-label.txt")
    in_ram = torch.from_numpy(ids)
    label_tensor = torch.from_numpy(labels)

    access = {
        "in-RAM numpy array (ceiling)": rate(lambda b: (in_ram[b], label_tensor[b]), batches),
        "TokenStore.get_batch": rate(store.get_batch, batches),
        "TokenDataset.__getitems__": rate(dataset.__getitems__, batches),
        "SeitReleaseDataset.__getitems__": rate(release.__getitems__, batches),
        "reference loader (per-byte Python loop)": rate(
            lambda b: [reference_getitem(release.data, release.offsets, int(i)) for i in b], batches[:4]
        ),
    }

    def stream_rate(shuffle: str) -> float:
        stream = TokenStream(tmp / "store", BATCH, shuffle=shuffle, chunk_size=4096)
        return n // BATCH * BATCH / best_time(lambda: sum(len(ids) for ids, _ in stream), repeats=3)

    streaming = {mode: stream_rate(mode) for mode in ("global", "chunk", "none")}

    first_times = {
        size: best_time(lambda p=path: TokenStore.open(tmp / p, verify=False).get_batch([0]))
        for size, path in (("1k", "small"), (n, "store"))
    }
    open_times = {
        size: best_time(lambda p=path: TokenStore.open(tmp / p)) for size, path in (("1k", "small"), (n, "store"))
    }
    release_load = best_time(lambda: SeitReleaseDataset(f"{prefix}-token.data.bin.gz"), repeats=2)

    baseline = access["reference loader (per-byte Python loop)"]
    grid = f"{GRID[0]}x{GRID[1]}"
    print(f"token store I/O, {n} samples of {grid} ids, {K} codes, {codec} codec, random batches of {BATCH}")
    print(f"{'random access':<42}{'samples/s':>12}{'x reference':>14}{'x in-RAM':>10}")
    for name, r in access.items():
        print(f"{name:<42}{r:>12,.0f}{r / baseline:>14.1f}{r / access['in-RAM numpy array (ceiling)']:>10.2f}")
    print(f"{'TokenStream (1 process)':<42}{'samples/s':>12}{'x get_batch':>14}")
    for mode, r in streaming.items():
        print(f"{'  shuffle=' + mode:<42}{r:>12,.0f}{r / access['TokenStore.get_batch']:>14.2f}")
    print(
        f"open (manifest only): 1k samples {open_times['1k'] * 1e3:.2f} ms, {n} samples {open_times[n] * 1e3:.2f} ms; "
        f"open + first sample: {first_times['1k'] * 1e3:.2f} ms vs {first_times[n] * 1e3:.2f} ms; "
        f"loading the SeiT files: {release_load * 1e3:.0f} ms ({release_load / first_times[n]:.0f}x)"
    )
    print(
        f"index: {info['index_bytes_per_sample']:.2f} B/sample (uint32 offset, zstd labels, zstd keys such as "
        f"{keys[0]!r}); writer {write_rate:,.0f} samples/s"
    )
    return {
        "samples": n,
        "codec": codec,
        "random_access_samples_per_s": access,
        "stream_samples_per_s": streaming,
        "open_seconds": {str(k): v for k, v in open_times.items()},
        "open_and_first_sample_seconds": {str(k): v for k, v in first_times.items()},
        "seit_release_load_seconds": release_load,
        "index_bytes_per_sample": info["index_bytes_per_sample"],
        "writer_samples_per_s": write_rate,
    }


if __name__ == "__main__":
    main()
