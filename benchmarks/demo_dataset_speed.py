"""How fast is the demo dataset made? Parallel workers vs one process, and reuse of a complete folder.

Builds the same dataset (default 10 classes x (300 train + 100 val)) in fresh temporary folders with
one process (the baseline) and with ``--workers`` processes, alternating ``--repeats`` times so that
load from other jobs hits both alike; reports images/s, the speed-up, that both wrote identical
bytes, and how long a rerun on the complete folder takes.

    PYTHONPATH=src python benchmarks/demo_dataset_speed.py --train-per-class 300 --val-per-class 100
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import tempfile
import time
from pathlib import Path

from seit.demo.dataset import make_demo_dataset


def build(root: Path, args: argparse.Namespace, workers: int) -> float:
    start = time.perf_counter()
    make_demo_dataset(root, train_per_class=args.train_per_class, val_per_class=args.val_per_class, num_workers=workers)
    return time.perf_counter() - start


def same_tree(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    match, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    return len(match) == len(files) and not mismatch and not errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-per-class", type=int, default=300)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    os.environ.setdefault("SEIT_NO_PROGRESS", "1")
    images = 10 * (args.train_per_class + args.val_per_class)

    serial, parallel = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            serial.append(build(Path(tmp) / f"serial{r}", args, 1))
            parallel.append(build(Path(tmp) / f"parallel{r}", args, args.workers))
            print(f"repeat {r}: 1 process {images / serial[-1]:.0f} img/s, "
                  f"{args.workers} workers {images / parallel[-1]:.0f} img/s", flush=True)  # fmt: skip
        identical = same_tree(Path(tmp) / "serial0", Path(tmp) / "parallel0")
        reuse = build(Path(tmp) / "serial0", args, args.workers)
        megabytes = sum(p.stat().st_size for p in (Path(tmp) / "serial0").rglob("*.jpg")) / 1e6

    figures = {
        "images": images,
        "jpeg_megabytes": round(megabytes, 2),
        "serial_img_per_s": round(images / min(serial), 1),
        "parallel_img_per_s": round(images / min(parallel), 1),
        "workers": args.workers,
        "speedup": round(min(serial) / min(parallel), 2),
        "parallel_seconds": round(min(parallel), 2),
        "identical_bytes": identical,
        "reuse_seconds": round(reuse, 3),
        "reuse_vs_build": round(reuse / min(parallel), 4),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
