"""`seit decode`: stored ids back to images (a thin shell over seit.tokenizer.render.decode_samples)."""

from __future__ import annotations

import argparse

from seit.config import add_dataclass_args, from_args
from seit.tokenizer.config import DecodeConfig

DESCRIPTION = """\
Decode samples of a token store back to images with the tokenizer's decoder, to see what the tokens
keep. Ids of a pruned store are mapped back to tokenizer codes through the store's code_ids first; the
tokenizer must be the one that made the store (checked against the store's codebook).

Output: --output DIR gets one PNG per sample, named INDEX-KEY.png; --grid writes all of them tiled into one
PNG. Samples: --indices I ..., or --count N evenly spread over the store.
"""

EPILOG = """\
examples:
  seit decode tokens/val --tokenizer tok.safetensors --grid val-decoded.png
  seit decode tokens/train --tokenizer tok.safetensors --indices 0 1 2 1000 --output decoded/
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "decode",
        help="decode stored tokens back to PNG images",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(p, DecodeConfig)
    p.set_defaults(run=run, group_parser=p)


def run(args: argparse.Namespace) -> int:
    cfg = from_args(DecodeConfig, args)
    from seit.tokenizer.render import decode_samples

    result = decode_samples(cfg)
    if result.files:
        print(f"{len(result.files)} decoded samples written to {cfg.out}")
    if result.grid is not None:
        print(f"grid of {len(result.indices)} decoded samples written to {result.grid}")
    return 0
