"""`seit tradeoff`: how many bytes does my dataset need? Top-1 against bytes per image, tokens vs pixels."""

from __future__ import annotations

import argparse

from seit.config import add_dataclass_args, from_args
from seit.tradeoff.config import TradeoffConfig

EPILOG = """\
examples:
  # a token store (a tokenizer trained on your images), the images as stored, three JPEG qualities
  seit tradeoff photos/train --val photos/val --jpeg-qualities 1 5 20 --output runs/tradeoff

  # more rows later: only the new ones train, the others come from their cached results
  seit tradeoff photos/train --val photos/val --jpeg-qualities 1 5 20 --downsample 16 24 32 \\
      --tokens grid=16,codes=512,dim=32 grid=8,codes=512,dim=32 --output runs/tradeoff

  # a tokenizer you already have; pixels squeezed to its bytes per image (seit demo's rows)
  seit tradeoff photos/train --val photos/val --tokenizer runs/tok/tokenizer.safetensors --match-tokens

rows: one per --tokens spec (a vitvq-tiny tokenizer of grid*8 px trained on IMAGES, then a pruned token store;
by default grid=16,codes=512,dim=32 unless --tokenizer is given),
one per --tokenizer file, `stored` (IMAGES as they are; --no-stored drops it), one per --jpeg-qualities value,
one per --downsample side (WebP), and with --match-tokens the JPEG quality and downsampled side closest to the
first token row's bytes per image from below. Every row trains the same ViT with the same recipe and budget
and is evaluated on the full-quality --val images (token rows through their tokenizer).

outputs (in --output): report/report.md, report/report.json and report/frontier.png (top-1 against bytes per
image, log scale, the Pareto front marked); rows/<row>-<hash>/ per row (its training data, run/, result.json).
Every row is cached: a rerun reuses the finished ones, trains the new ones and continues a stopped one from its
checkpoint (Ctrl-C, SIGTERM or SIGUSR1 exit 75: rerun the same command). A used --output that is not a tradeoff
folder is refused; --restart moves it aside.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "tradeoff",
        help="how many bytes does my dataset need: top-1 against bytes per image, tokens vs pixels stored many ways",
        description="Train the same ViT with the same recipe and budget on your images kept as token stores (several\n"
        "grid and codebook sizes), as stored, as JPEG at several qualities and downsampled; evaluate each on the\n"
        "same held-out images; report top-1 against bytes per image with the Pareto front.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(p, TradeoffConfig)
    p.set_defaults(run=_run, group_parser=p)


def _run(args: argparse.Namespace) -> int:
    from seit.cli import stopped_by_signal

    cfg = from_args(TradeoffConfig, args)  # flag values and specs are checked before torch is imported
    from seit.tradeoff.run import run_tradeoff
    from seit.tradeoff.stages import Stopped

    try:
        run_tradeoff(cfg)
    except Stopped as e:
        return stopped_by_signal(e.saved, e.where, rerun="the same command")
    return 0
