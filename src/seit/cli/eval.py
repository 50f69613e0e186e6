"""`seit eval`: top-1/top-5, per-class accuracy and a confusion matrix, on tokens or on images."""

from __future__ import annotations

import argparse
import json

from seit.config import add_dataclass_args, from_args
from seit.engine.config import EvalConfig

EXAMPLES = """\
examples:
  # a training run's folder: the classifier its best.json names (model or EMA weights, whichever did better)
  seit eval runs/s32 --store data/val.store --output runs/s32/eval
  # SeiT's evaluate_on_images: tokenize on the fly, centre-crop the grid, classify
  seit eval runs/s32 --images photos/val --tokenizer runs/tok/tokenizer.safetensors
  # the pixel baseline on the same images; or name a file
  seit eval runs/pixel/model_ema.safetensors --images photos/val
  # a released SeiT classifier on SeiT's released validation tokens
  seit eval trained-vit.ckpt --token-file imagenet1k-val-token.data.bin.gz --label-file imagenet1k-val-label.txt \\
      --codebook-path codebook.ckpt
  # SeiT's own evaluate_on_images.py command, with seit's launcher (its flags are listed below)
  torchrun --nproc-per-node 8 -m seit eval --model deit_base_token_32 --model-path trained-vit.ckpt \\
      --codebook-path codebook.ckpt --tokenizer-path tokenizer.ckpt --allow-legacy-pickle --data-path val --dist-eval
  # many processes: every sample is counted exactly once
  torchrun --nproc-per-node 4 -m seit eval model.safetensors --store data/val.store

prints a JSON summary; --output writes eval.json (with per-class accuracy and the confusion matrix)
and confusion.png.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "eval",
        help="evaluate a classifier on a token store, SeiT's token files, or images (via a tokenizer)",
        description="Evaluate a trained classifier. Token classifiers read the codebook and crop geometry stored in\n"
        "their file; on images, each image is tokenized with --tokenizer, its ids are mapped into the\n"
        "classifier's (pruned) codebook and the grid is centre-cropped, as SeiT's evaluate_on_images.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    from seit.interop import seit_flags

    add_dataclass_args(p, EvalConfig, seit_flags.aliases(seit_flags.EVAL))
    seit_flags.add_reference_flags(p, seit_flags.EVAL, "SeiT's evaluate_on_images.py")
    p.set_defaults(run=_run, group_parser=p)


def _run(args: argparse.Namespace) -> int:
    from seit.interop import seit_flags

    seit_flags.apply_reference_flags(args, seit_flags.EVAL, args.group_parser)
    cfg = from_args(EvalConfig, args)
    from seit.engine.eval_job import run_eval
    from seit.utils.dist import current

    result = run_eval(cfg)
    if current().is_main:
        print(json.dumps(result.summary(), indent=1))
    return 0
