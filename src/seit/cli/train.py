"""`seit train`: train a token ViT (or the pixel baseline) with SeiT's recipe; torchrun for many processes."""

from __future__ import annotations

import argparse

from seit.config import add_dataclass_args, from_args
from seit.engine.config import TrainConfig

EXAMPLES = """\
examples:
  # one process (CPU or one GPU)
  seit train --store data/train.store --val-store data/val.store --model deit_small_token_32 --output runs/s32

  # 8 GPUs on one node; 2 nodes: add --nnodes 2 --node-rank R --rdzv-endpoint HOST:29500
  torchrun --nproc-per-node 8 -m seit train --store s3://bucket/train.store --streaming \\
      --val-store data/val.store --model deit_base_token_32 --batch-size 128 --output runs/b32

  # SeiT's released ImageNet tokens, without conversion (SeiT's own flags)
  seit train --train-token-file imagenet1k-train-token.data.bin.gz --train-label-file imagenet1k-train-label.txt \\
      --val-token-file imagenet1k-val-token.data.bin.gz --val-label-file imagenet1k-val-label.txt \\
      --codebook-path codebook.ckpt --token-synonym-dict synonyms.json --model deit_base_token_32

  # resume after a preemption (Ctrl-C, SIGTERM or SIGUSR1 save OUTPUT/last.pt and exit with code 75)
  seit train ... --output runs/b32 --resume auto
  # start over in the same folder (the old run is moved to runs/b32.old-1, not deleted)
  seit train ... --output runs/b32 --restart

  # the pixel baseline: the same ViT on images
  seit train --images photos/train --val-images photos/val --model deit_small_pixel_16 --image-size 224

outputs (in --output): last.pt (resumable checkpoint), model.safetensors and model_ema.safetensors
(weights + codebook + metadata, for `seit eval`), best.json (which of the two did better on the
validation set at the end; `seit eval OUTPUT` uses that one), metrics.jsonl, tb/ (TensorBoard).
An EMA whose horizon 1/(1 - decay) exceeds the run's steps lags the model: the run says so at start.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "train",
        help="train a classifier on token ids (or the pixel baseline); torchrun-ready",
        description="Train a token ViT from a token store with SeiT's recipe (AdamW, cosine, CutMix, EMA, token\n"
        "augmentation on the device). Defaults are SeiT's ImageNet settings. Under torchrun every process\n"
        "takes its share of each global batch (DDP; gloo on CPU, NCCL on GPU).",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    from seit.interop import seit_flags

    p.add_argument("--list-models", action="store_true", help="list the registered token and pixel ViTs and exit")
    add_dataclass_args(p, TrainConfig, seit_flags.aliases(seit_flags.TRAIN))
    seit_flags.add_reference_flags(p, seit_flags.TRAIN, "SeiT's main_seit.py and DeiT's main.py")
    p.set_defaults(run=_run, group_parser=p)


def _run(args: argparse.Namespace) -> int:
    from seit.cli import stopped_by_signal

    if args.list_models:
        import timm

        import seit.models  # noqa: F401

        for name in timm.list_models("deit_*_token_*") + timm.list_models("deit_*_pixel_*"):
            print(name)
        return 0
    from seit.interop import seit_flags

    seit_flags.apply_reference_flags(args, seit_flags.TRAIN, args.group_parser)
    cfg = from_args(TrainConfig, args)  # flag values are checked before torch is imported
    from seit.engine.train import train

    result = train(cfg)
    if result.preempted:
        return stopped_by_signal(result.output / "last.pt", f"at step {result.global_step}")
    if result.best is not None:  # the main process: the better of model and EMA weights (best.json)
        print(f"[seit] done: {result.best}")
    return 0
