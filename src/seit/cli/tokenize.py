"""`seit tokenize`: images -> token store (a thin shell over seit.tokenizer.tokenize)."""

from __future__ import annotations

import argparse
import os
import sys

from seit.config import add_dataclass_args, from_args
from seit.tokenizer.config import TokenizeConfig

DESCRIPTION = """\
Encode images with a ViT-VQGAN tokenizer into a token store, the dataset every later stage reads.

Input: an ImageFolder tree (class = first-level folder, classes sorted), a flat folder (unlabelled), or a
list file of 'path [label]' lines. Each image is decoded to RGB (EXIF orientation applied, transparency on
white), resized to the tokenizer's image size (--resize) and encoded to a grid of code ids.

Output STORE/: the ids with labels and keys (paths relative to IMAGES) in sorted order; the tokenizer's
L2-normalised codebook and code_ids (which tokenizer code each id is); the tokenizer config, the sha256
of its file and the preprocessing in the manifest; skipped.jsonl, one line per image that could not be
used (empty, not an image, truncated, too large, ...) with the reason. Bad images never stop the run.

--prune keeps only the codes the images use, renumbered in tokenizer-id order (SeiT: 8192 -> 391 on
ImageNet); tokenize the other splits with --codes-from TRAIN_STORE so their ids mean the same codes.

Resumable: after a crash, kill or preemption rerun the same command with --resume auto; durable shards
are kept and the rest is encoded. A used OUTPUT is refused without --resume (--restart moves it aside).
Parallel: under torchrun every process takes a contiguous share of the sorted images and writes its own
part, and rank 0 merges the parts: the result is the store one process would write.
"""

EPILOG = """\
examples:
  seit tokenize data/imagenet/train --tokenizer tok.safetensors --output tokens/train --prune --synonyms 10
  seit tokenize data/imagenet/val --tokenizer tok.safetensors --output tokens/val --codes-from tokens/train
  torchrun --nproc-per-node 8 -m seit tokenize /data/imagenet/train --tokenizer tok.safetensors \\
      --output /data/tokens/train --prune --synonyms 10    # one node, 8 GPUs
  torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
      -m seit tokenize /shared/imagenet/train --tokenizer tok.safetensors --output /shared/tokens/train
  seit tokenize list.txt --root /data/images --tokenizer runs/tok --output tokens/mine --resize crop

The tokenizer: our .safetensors (or the folder `seit tokenizer train` wrote), an enhancing-transformers
Lightning .ckpt (with --config its yaml if needed), or SeiT's pickled tokenizer.ckpt with
--allow-legacy-pickle (trusted files only; `seit tokenizer convert` turns it into a safe file once).
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "tokenize",
        help="encode images into a token store (resumable, torchrun, --prune)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(p, TokenizeConfig)
    p.set_defaults(run=run, group_parser=p)


def run(args: argparse.Namespace) -> int:
    cfg = from_args(TokenizeConfig, args)  # flag values are checked before torch is imported
    from seit.errors import EXIT_PREEMPTED
    from seit.tokenizer import tokenize

    result = tokenize(cfg)
    if os.environ.get("RANK", "0") != "0":
        return EXIT_PREEMPTED if not result.finished else 0
    if not result.finished:
        from seit.cli import stopped_by_signal

        return stopped_by_signal(result.store, f"after {result.samples:,} images")
    print(result.summary())
    if not result.samples:
        print(f"seit: error: no image could be encoded; see {result.skip_report}", file=sys.stderr)
        return 1
    return 0
