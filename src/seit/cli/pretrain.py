"""`seit pretrain`: SeiT++'s masked token modeling on a token store; torchrun for many processes."""

from __future__ import annotations

import argparse

from seit.config import add_dataclass_args, from_args
from seit.engine.pretrain_config import PretrainConfig

EXAMPLES = """\
examples:
  # pre-train, then fine-tune a token ViT of the same width and depth from its encoder
  seit pretrain --store data/train.store --output runs/mtm
  seit train --store data/train.store --val-store data/val.store --model deit_base_token_32 \\
      --finetune runs/mtm/last.pt --layer-decay 0.65 --output runs/mtm-ft

  # SeiT++'s command (main_mtm_pretrain.py's flags), on 8 GPUs
  torchrun --nproc-per-node 8 -m seit pretrain --model mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32 \\
      --codebook-path codebook.ckpt --train-token-file imagenet1k-train-token.data.bin.gz \\
      --train-label-file imagenet1k-train-label.txt --batch_size 128 --accum_iter 4 --blr 1.5e-4 \\
      --epochs 400 --output_dir runs/mtm --tokenadapt-path tokenadapt.ckpt

  # resume after a preemption (Ctrl-C, SIGTERM or SIGUSR1 save OUTPUT/last.pt and exit with code 75)
  seit pretrain ... --output runs/mtm --resume auto

outputs (in --output): last.pt (the MTM model, optimizer and position: resumable, and what
`seit train --finetune` reads), metrics.jsonl, tb/ (TensorBoard).
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter
    from seit.interop import seit_flags

    p = sub.add_parser(
        "pretrain",
        help="masked token modeling pre-training (SeiT++) on token ids; torchrun-ready",
        description="Pre-train a token ViT encoder by masked token modeling (SeiT++): per step a random share of\n"
        "the token patches is masked and the model predicts their codes. Labels are not read: the store may\n"
        "hold none, and SeiT's release tokens need no --train-label-file (one given is ignored). Defaults are\n"
        "SeiT++'s ImageNet settings. Fine-tune the result with\n"
        "`seit train --finetune OUTPUT/last.pt --layer-decay 0.65`.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(p, PretrainConfig, seit_flags.aliases(seit_flags.PRETRAIN))
    seit_flags.add_reference_flags(p, seit_flags.PRETRAIN, "SeiT++'s main_mtm_pretrain.py")
    p.set_defaults(run=_run, group_parser=p)


def _run(args: argparse.Namespace) -> int:
    from seit.cli import stopped_by_signal
    from seit.interop import seit_flags

    seit_flags.apply_reference_flags(args, seit_flags.PRETRAIN, args.group_parser)
    cfg = from_args(PretrainConfig, args)
    from seit.engine.pretrain import pretrain

    result = pretrain(cfg)
    if result.preempted:
        return stopped_by_signal(result.output / "last.pt", f"at step {result.global_step}")
    print(f"[seit] done: {result.output / 'last.pt'}")
    return 0
