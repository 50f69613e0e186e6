"""`seit demo`: the whole method end to end on a built-in dataset, with a storage / accuracy report."""

from __future__ import annotations

import argparse

from seit.config import add_dataclass_args, from_args
from seit.demo.config import DemoConfig

EPILOG = """\
what it does (each stage's artefacts are the normal commands' outputs, reusable afterwards):
  1. draws a 10-class image dataset (shapes and textures, varied sizes, colours, clutter) as JPEG files
  2. trains a small ViT-VQGAN tokenizer on the train images          (seit tokenizer train)
  3. tokenizes train and val into token stores, prunes the codebook   (seit tokenize --prune / --codes-from)
  4. re-encodes the train JPEGs to about the token store's bytes: low-quality JPEG, and downsampled (WebP)
  5. trains the same ViT, recipe and budget on each input: the token store (seit train --store), the JPEGs
     as stored and the two squeezed copies (seit train --images)
  6. evaluates every model on the same full-quality held-out images, the token model through the tokenizer
     (seit eval --images)
  7. writes OUT/report/report.md (+ report.json, tradeoff.png: top-1 against bytes per image,
     with the Pareto front, reconstructions.png, curves.png, confusion-*.png) and prints the trade-off table

A rerun continues where a previous run stopped (Ctrl-C or SIGTERM exit 75: rerun the same command).
--quick trains on 4 of the classes; the time of every stage on 2 CPU cores is in BENCHMARKS.md (the
budgets: 4 minutes for --quick, 15 for the default). The demo is a preset of `seit tradeoff`, which runs
the same comparison, with more rows, on your own images.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "demo",
        help="the whole method end to end on a built-in dataset, with a storage/accuracy report",
        description="Train on tokens instead of pixels, end to end, on a dataset seit draws itself (nothing is\n"
        "downloaded), and measure the storage / accuracy trade-off: tokens against the JPEGs as stored and\n"
        "against pixels squeezed to the tokens' bytes, the same ViT trained on each.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(p, DemoConfig)
    p.set_defaults(run=_run, group_parser=p)


def _run(args: argparse.Namespace) -> int:
    from seit.cli import stopped_by_signal
    from seit.demo.run import run_demo, summary
    from seit.tradeoff.stages import Stopped

    cfg = from_args(DemoConfig, args)
    try:
        figures = run_demo(cfg)
    except Stopped as e:
        return stopped_by_signal(e.saved, e.where, rerun="the same command")
    print(summary(figures, cfg.out))
    return 0
