"""`seit tokenadapt train`: learn SeiT++'s TokenAdapt pair for a tokenizer (geometric augmentation of tokens)."""

from __future__ import annotations

import argparse
import sys

from seit.config import add_dataclass_args, from_args
from seit.tokenadapt.config import TokenAdaptTrainConfig

TRAIN_EXAMPLES = """\
examples:
  seit tokenadapt train data/train --tokenizer runs/tok --output runs/tokenadapt
  seit tokenadapt train data/train --tokenizer runs/tok --dim 64 --heads 1 --mlp-dim 256 --steps 300 \\
      --batch-size 16 --device cpu --output runs/ta-small
  seit tokenadapt train data/train --tokenizer runs/tok --output runs/tokenadapt --resume auto   # continue
  seit tokenadapt train data/train --tokenizer runs/tok --output runs/tokenadapt --restart       # start over

The run writes OUT/checkpoint.pt (resumable; also on Ctrl-C, SIGTERM or SIGUSR1, which then exit with
status 75), OUT/metrics.jsonl (loss, transformed_agree: fraction of the transformed image's codes the pair
reproduces, recon_agree: the same without a transform), OUT/tb/ and, when done, OUT/tokenadapt.safetensors.
seit.tokenadapt.load_tokenadapt reads that file and SeiT++'s released tokenadapt.ckpt alike.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "tokenadapt",
        help="train SeiT++'s TokenAdapt pair (geometric augmentation of token grids)",
        description="TokenAdapt (SeiT++): a conversion network and its reverse around the codebook vectors, so that\n"
        "flips, rotations, translations, shears and resized crops can be applied to token grids.",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(group_parser=p)
    cmds = p.add_subparsers(title="commands", metavar="COMMAND")
    train = cmds.add_parser(
        "train",
        help="learn the pair for a tokenizer from a folder of images",
        description="Learn the pair so that a random transform applied in its converted space gives the codes\n"
        "the tokenizer gives the transformed image (cross-entropy over the codebook), plus a term that\n"
        "gives the codes back without a transform. The tokenizer stays frozen; targets are made on the fly.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(train, TokenAdaptTrainConfig)
    train.set_defaults(run=_train)


def _train(args: argparse.Namespace) -> int:
    cfg = from_args(TokenAdaptTrainConfig, args)
    from seit.tokenadapt.train import train_tokenadapt

    result = train_tokenadapt(cfg)
    if not result.finished:
        from seit.cli import stopped_by_signal

        return stopped_by_signal(result.checkpoint, f"at step {result.step}")
    print(f"TokenAdapt written to {result.path}", file=sys.stderr)
    return 0
