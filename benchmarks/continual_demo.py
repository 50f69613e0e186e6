"""Continual learning on the demo data: token memory vs pixel (JPEG) memory at equal bytes, on a CPU budget.

Builds the demo's data, tokenizer and token stores with the demo's own stages (10 classes, fewer images), then
runs `seit continual` on both memories and prints its report; process CPU seconds of each stage are printed
(wall time on a shared machine is noise). Rerunning reuses what is built and resumes the continual runs.

    PYTHONPATH=src python benchmarks/continual_demo.py --output bench-continual
    # the budget of BENCHMARKS.md: seit demo --quick's data, 2 steps of 2 classes, 600 optimizer steps each
    PYTHONPATH=src python benchmarks/continual_demo.py --quick --tasks 2 --epochs 40 --memory-bytes 100000 --output cb
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shlex
import sys
from pathlib import Path


def cpu_seconds() -> float:
    """This process's and its finished workers' CPU time."""
    return sum(
        u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="bench-continual")
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=30)
    parser.add_argument("--tokenizer-steps", type=int, default=300)
    parser.add_argument("--memory-bytes", type=int, default=150_000)
    parser.add_argument("--classes", type=int, default=None, help="the first N classes of the seeded order")
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--selection", default="herding")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the data, tokenizer and stores of `seit demo --quick` (its 4 classes, 250 + 50 images each); "
        "--train-per-class, --val-per-class and --tokenizer-steps are then ignored",
    )
    args = parser.parse_args()

    from seit.cli import main as seit_main
    from seit.cli import setup_logging
    from seit.demo.config import SIZES, DemoConfig, DemoSize
    from seit.demo.run import PIXEL_MODEL, _make_data, _Paths, _tokenize, _train_tokenizer

    setup_logging(0)
    out = Path(args.output)
    paths = _Paths(out)
    size = (
        dataclasses.replace(SIZES["quick"], epochs=args.epochs)
        if args.quick
        else DemoSize(
            classes=10,
            train_per_class=args.train_per_class,
            val_per_class=args.val_per_class,
            tokenizer_steps=args.tokenizer_steps,
            epochs=args.epochs,
        )
    )
    demo = DemoConfig(out=str(out), device="cpu")
    for stage, done, build in (
        ("data", paths.data / "demo-dataset.json", lambda: _make_data(paths, size, demo)),
        ("tokenizer", paths.tokenizer, lambda: _train_tokenizer(paths, size, demo)),
        ("tokenize", paths.val_store / "manifest.json", lambda: _tokenize(paths, size, demo)),
    ):
        if not done.exists():
            before = cpu_seconds()
            build()
            print(f"[bench] {stage}: {cpu_seconds() - before:.0f} CPU s", flush=True)
    classes = args.classes or size.classes
    run = out / f"continual-{classes}c{args.tasks}t{args.epochs}e-{args.memory_bytes}-{args.selection}"
    argv = [
        "continual",
        "--store", str(paths.train_store), "--val-store", str(paths.val_store),
        "--images", str(paths.data / "train"), "--val-images", str(paths.data / "val"),
        *(["--classes", str(args.classes)] if args.classes else []),
        "--tasks", str(args.tasks), "--memory-bytes", str(args.memory_bytes), "--selection", args.selection,
        "--token-model", "deit_tiny_token_32", "--pixel-model", PIXEL_MODEL,
        "--image-size", str(size.image_size * 7 // 16),  # the demo's pixel crops: the token ViT's 7x7 sequence
        "--embed-dim", str(size.embed_dim), "--depth", str(size.depth), "--num-heads", str(size.num_heads),
        "--epochs", str(args.epochs), "--batch-size", "32", "--lr", str(size.lr),
        "--cutmix", "0", "--rrc-scale", *map(str, size.crop_scale), "--hflip-prob", "0.5",
        "--device", "cpu", "--output", str(run), "--resume", "auto",
    ]  # fmt: skip
    print("[bench] seit " + shlex.join(argv), flush=True)
    before = cpu_seconds()
    code = seit_main(argv)
    print(f"[bench] continual (both memories): {cpu_seconds() - before:.0f} CPU s", flush=True)
    if code == 0:
        print((run / "report.md").read_text())
    sys.exit(code)


if __name__ == "__main__":
    main()
