"""`seit scenario ...`: the paper's practical scenarios, end to end on the built-in data, with a report."""

from __future__ import annotations

import argparse

from seit.config import add_dataclass_args, from_args
from seit.scenarios.pretrain import StoragePretrainConfig

STORAGE_PRETRAIN_EPILOG = """\
examples:
  seit scenario storage-pretrain --output runs/pretrain             # the quick demo's classes, 4 subset sizes
  seit scenario storage-pretrain --fractions 0.05 0.5 --tokenizer seit-demo/tokenizer/tokenizer.safetensors
  seit scenario storage-pretrain --pretrain-steps 2000 --output runs/pretrain   # redoes pre-training + fine-tunes
  seit scenario storage-pretrain --size tiny --fractions 0.1 0.5 --output /tmp/smoke

what it does: each labelled subset (--fractions of the train images, nested) is kept as pixels; every
train image outside the largest subset is kept only as tokens (a token store) and pre-trains a token ViT
for --pretrain-steps. For each subset the same pixel ViT trains on the subset's pixels from scratch and,
with the same recipe and budget (--labelled-steps), from the token ViT (`seit train --finetune`: the
transformer carries over, the patch embedding is new). Every model is evaluated on the same held-out
images. OUT/report/ holds report.md, report.json and accuracy.png (top-1 against the labelled-set size).
A rerun reuses every finished stage and resumes an interrupted one; a new --pretrain-steps redoes the
pre-training and the fine-tuned rows only.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "scenario",
        help="the paper's practical scenarios end to end on the built-in data, with a report",
        description="SeiT's practical scenarios, each run end to end on the demo's data with a report.",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(group_parser=p)
    cmds = p.add_subparsers(title="scenarios", metavar="SCENARIO")
    pretrain = cmds.add_parser(
        "storage-pretrain",
        help="pre-train on tokens, fine-tune on a few pixels, vs pixels from scratch",
        description="Storage-efficient pre-training: a pixel ViT fine-tuned from a token ViT (pre-trained on the\n"
        "images kept only as tokens) against the same pixel ViT from scratch, at several labelled-set sizes.",
        epilog=STORAGE_PRETRAIN_EPILOG,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(pretrain, StoragePretrainConfig)
    pretrain.set_defaults(run=_storage_pretrain, group_parser=pretrain)


def _storage_pretrain(args: argparse.Namespace) -> int:
    from seit.cli import stopped_by_signal
    from seit.scenarios.pretrain import run_storage_pretrain
    from seit.tradeoff.stages import Stopped

    try:
        run_storage_pretrain(from_args(StoragePretrainConfig, args))
    except Stopped as e:  # a training row, or a stage shared with seit tradeoff (the tokenizer, tokenizing)
        return stopped_by_signal(e.saved, e.where, rerun="the same command")
    return 0
