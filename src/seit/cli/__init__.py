"""The ``seit`` command: a thin shell over the Python API, one module per command group.

Group modules import heavy libraries (torch, timm) inside their handlers, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from seit import __version__
from seit.errors import SeitError

# Command groups in the order of the data flow; each module defines register(subparsers).
GROUPS = ("store", "tokenizer", "tokenize", "synonyms", "decode", "train", "eval", "demo", "bench")

DESCRIPTION = """\
seit: train image classifiers from compact VQ tokens instead of pixels (SeiT / SeiT++).

Data flow: images -> `seit tokenize` (ViT-VQGAN) -> token store -> `seit train` (token ViT)
-> `seit eval` (on token stores or on images through the tokenizer). Run `seit demo` to see
the whole method end to end on a built-in dataset.
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples; wider option column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=100)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seit", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"seit {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(f"seit.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        # A group name alone (e.g. `seit store`) prints that group's help.
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    try:
        return int(run(args) or 0)
    except SeitError as e:
        print(f"seit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("seit: interrupted", file=sys.stderr)
        return 130
