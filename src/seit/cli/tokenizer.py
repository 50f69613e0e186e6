"""`seit tokenizer {train,eval,info,convert}`: the ViT-VQGAN that turns images into code ids."""

from __future__ import annotations

import argparse
import json
import sys

from seit.cli import emit_json
from seit.config import add_dataclass_args, from_args, to_dict
from seit.tokenizer.config import PRESETS, ConvertConfig, EvalConfig, InfoConfig, TrainConfig

TRAIN_EXAMPLES = """\
examples:
  seit tokenizer train data/train --preset vitvq-tiny --image-size 64 --steps 5000 --output runs/tok
  torchrun --nproc-per-node 8 -m seit tokenizer train /data/imagenet/train --preset vitvq-base \\
      --batch-size 8 --perceptual-weights vgg16-397923af.pth --disc-start 50000 --output runs/vitvq-base
  seit tokenizer train data/train --output runs/tok --resume auto   # continue after a crash or preemption
  seit tokenizer train data/train --output runs/tok --restart       # start over (the old run -> runs/tok.old-1)

Presets: {presets}.
The run writes OUT/checkpoint.pt (resumable; also on Ctrl-C, SIGTERM or SIGUSR1, which then exit with
status 75), OUT/metrics.jsonl, OUT/tb/ (TensorBoard), OUT/samples/*.png and, when done,
OUT/tokenizer.safetensors for `seit tokenizer eval/info` and `seit tokenize`.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "tokenizer",
        help="train, evaluate and inspect ViT-VQGAN tokenizers",
        description="The ViT-VQGAN tokenizer (enhancing-transformers layout, SeiT's tokenizer): images in [0, 1]\n"
        "-> a grid of codebook ids (256 px -> 32x32 ids for the ImageNet presets).",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(group_parser=p)
    cmds = p.add_subparsers(title="commands", metavar="COMMAND")

    train = cmds.add_parser(
        "train",
        help="train a tokenizer on a folder of images (torchrun for many GPUs)",
        description="Train a ViT-VQGAN: L2 (+L1) reconstruction, codebook/commitment loss on L2-normalised codes,\n"
        "optional perceptual loss (your VGG16 weights) and PatchGAN loss, dead-code restarts, an optional EMA\n"
        "codebook (--codebook-ema), AMP, DDP.",
        epilog=TRAIN_EXAMPLES.format(presets=", ".join(PRESETS)),
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(train, TrainConfig)
    train.set_defaults(run=_train)

    ev = cmds.add_parser(
        "eval",
        help="PSNR, SSIM and code usage of a tokenizer on images",
        description="Encode and decode images; report PSNR, SSIM (Gaussian window 11, sigma 1.5), codebook usage\n"
        "and perplexity as JSON on stdout; optionally a PNG of originals over reconstructions.",
        epilog="example:\n  seit tokenizer eval data/val --tokenizer runs/tok --max-images 500 --grid val.png",
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(ev, EvalConfig)
    ev.set_defaults(run=_eval)

    info = cmds.add_parser(
        "info",
        help="print a tokenizer's config and parameter counts",
        description="Read any tokenizer file (ours, an enhancing-transformers Lightning .ckpt or state dict, or\n"
        "with --allow-legacy-pickle SeiT's pickled module) and print its config and parameter counts.",
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(info, InfoConfig)
    info.set_defaults(run=_info)

    convert = cmds.add_parser(
        "convert",
        help="rewrite a foreign tokenizer checkpoint in our safe format (safetensors + config)",
        description="Read a tokenizer file once (e.g. SeiT's tokenizer.ckpt with --allow-legacy-pickle) and write\n"
        "it as safetensors with its config, which loads without pickle from then on.",
        epilog="example:\n  seit tokenizer convert weights/tokenizer.ckpt --allow-legacy-pickle \\\n"
        "      --output tok.safetensors",
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(convert, ConvertConfig)
    convert.set_defaults(run=_convert)


def _train(args: argparse.Namespace) -> int:
    cfg = from_args(TrainConfig, args)
    from seit.tokenizer.train import train

    result = train(cfg)
    if not result.finished:
        from seit.cli import stopped_by_signal

        return stopped_by_signal(result.checkpoint, f"at step {result.step}")
    if result.tokenizer_path is not None:
        print(f"tokenizer written to {result.tokenizer_path}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    cfg = from_args(EvalConfig, args)
    from seit.tokenizer.evaluate import evaluate_images

    report = evaluate_images(cfg)
    print(json.dumps(report.to_json(), indent=1))
    return 0


def _info(args: argparse.Namespace) -> int:
    from seit.tokenizer.checkpoint import describe_tokenizer

    cfg = from_args(InfoConfig, args)
    description = describe_tokenizer(cfg.tokenizer, config=cfg.config, allow_legacy_pickle=cfg.allow_legacy_pickle)
    if emit_json(cfg.json, description):
        return 0
    print(f"file:        {description['file']}")
    print(f"format:      {description['format']}")
    print(f"image size:  {description['config']['image_size']} px, patch {description['config']['patch_size']}")
    print(f"ids grid:    {description['grid_shape'][0]}x{description['grid_shape'][1]}")
    print(f"codebook:    {description['config']['codebook_size']} codes of dim {description['config']['code_dim']}")
    for side in ("encoder", "decoder"):
        print(f"{side + ':':<13}{json.dumps(description['config'][side])}")
    print("parameters:  " + ", ".join(f"{k} {v:,}" for k, v in description["parameters"].items()))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from seit.tokenizer.checkpoint import load_tokenizer, save_tokenizer

    cfg = from_args(ConvertConfig, args)
    tokenizer = load_tokenizer(cfg.tokenizer, config=cfg.config, allow_legacy_pickle=cfg.allow_legacy_pickle)
    path = save_tokenizer(tokenizer, cfg.out)
    print(json.dumps({"written": str(path), "config": to_dict(tokenizer.config)}, indent=1))
    return 0
