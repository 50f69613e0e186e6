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
  4. trains a token ViT on the train store                            (seit train --store)
  5. trains the same ViT on the train JPEGs with the same budget      (seit train --images)
  6. evaluates both on the held-out val images, the token model through the tokenizer (seit eval --images)
  7. writes OUT/report/report.md (+ report.json, reconstructions.png, curves.png, confusion-*.png)

A rerun continues where a previous run stopped. --quick (4 of the classes) takes about 3 minutes on 2 CPU
cores, the default about 10 minutes.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "demo",
        help="the whole method end to end on a built-in dataset, with a storage/accuracy report",
        description="Train on tokens instead of pixels, end to end, on a dataset seit draws itself (nothing is\n"
        "downloaded), and compare storage and accuracy with the same ViT trained on the JPEGs.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(p, DemoConfig)
    p.set_defaults(run=_run, group_parser=p)


def _run(args: argparse.Namespace) -> int:
    from seit.demo.run import run_demo

    run_demo(from_args(DemoConfig, args))
    return 0
