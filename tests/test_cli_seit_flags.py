"""SeiT's and DeiT's command lines run unchanged: every flag of their scripts means what it means there, or stops."""

import pytest

from cli_util import all_parsers
from seit.cli import build_parser, main
from seit.config import from_args
from seit.engine.config import EvalConfig, TrainConfig
from seit.errors import EXIT_USAGE, ConfigError
from seit.interop import seit_flags

# Every flag of naver-ai/seit main_seit.py, evaluate_on_images.py and facebookresearch/deit main.py (their
# get_args_parser), with a value for those that take one (None: a switch). Facts of the reference code.
MAIN_SEIT = {
    "--batch-size": "8", "--epochs": "2", "--bce-loss": None, "--unscale-lr": None, "--model": "deit_tiny_token_32",
    "--input-size": "224", "--vit-patch-size": "16", "--token-patch-size": "8", "--drop": "0.0",
    "--drop-path": "0.1", "--model-ema": None, "--no-model-ema": None, "--model-ema-decay": "0.99996",
    "--model-ema-force-cpu": None, "--opt": "adamw", "--opt-eps": "1e-8", "--opt-betas": "0.9 0.999",
    "--clip-grad": "1.0", "--momentum": "0.9", "--weight-decay": "0.1", "--sched": "cosine", "--lr": "7.5e-4",
    "--lr-noise": "0.4 0.9", "--lr-noise-pct": "0.67", "--lr-noise-std": "1.0", "--warmup-lr": "1e-6",
    "--min-lr": "1e-5", "--decay-epochs": "30", "--warmup-epochs": "5", "--cooldown-epochs": "10",
    "--patience-epochs": "10", "--decay-rate": "0.1", "--dr": "0.1", "--smoothing": "0.1", "--src": None,
    "--token-coloradapt-prob": "0.25", "--token-noise-prob": "0.5", "--token-noise-scale": "1.0",
    "--token-noise-std": "1.0", "--rrc-ratio": "0.08", "--use-entire-tokens": None, "--eda-rc-prob": "0.25",
    "--token-synonym-dict": "s.json", "--token-synonym-thres": "5", "--replace-token-prob": "0.25",
    "--eda-sc-prob": "0.25", "--swap-token-scale": "0.25", "--mixup": "0.0", "--cutmix": "1.0",
    "--cutmix-minmax": "0.2 0.8", "--mixup-prob": "1.0", "--mixup-switch-prob": "0.5", "--mixup-mode": "batch",
    "--finetune": "ft.pth", "--attn-only": None, "--codebook-path": "c.ckpt", "--train-token-file": "t.bin.gz",
    "--train-label-file": "t.txt", "--val-token-file": "v.bin.gz", "--val-label-file": "v.txt",
    "--output_dir": "out", "--device": "cpu", "--seed": "0", "--resume": "r.pth", "--start_epoch": "0",
    "--eval": None, "--dist-eval": None, "--no-eval": None, "--eval-crop-ratio": "0.875", "--num_workers": "10",
    "--pin-mem": None, "--no-pin-mem": None, "--world_size": "1", "--local_rank": "0", "--dist_on_itp": None,
    "--dist_url": "env://",
}  # fmt: skip
DEIT_ONLY = {
    "--color-jitter": "0.3", "--aa": "rand-m9-mstd0.5-inc1", "--train-interpolation": "bicubic",
    "--repeated-aug": None, "--no-repeated-aug": None, "--train-mode": None, "--no-train-mode": None,
    "--ThreeAugment": None, "--reprob": "0.25", "--remode": "pixel", "--recount": "1", "--resplit": None,
    "--teacher-model": "regnety_160", "--teacher-path": "t.pth", "--distillation-type": "none",
    "--distillation-alpha": "0.5", "--distillation-tau": "1.0", "--cosub": None, "--data-path": "imagenet",
    "--data-set": "IMNET", "--inat-category": "name", "--distributed": None,
}  # fmt: skip
EVALUATE_ON_IMAGES = {
    "--batch-size": "64", "--model": "deit_base_token_32", "--model-path": "m.ckpt", "--codebook-path": "c.ckpt",
    "--vit-input-size": "28", "--tokenizer-path": "t.ckpt", "--tokenizer-code-path": "code",
    "--tokenizer-input-size": "256", "--data-path": "images", "--nb_classes": "1000", "--seed": "0",
    "--device": "cpu", "--eval": None, "--dist-eval": None, "--num_workers": "10", "--pin-mem": None,
    "--no-pin-mem": None, "--world_size": "1", "--dist_url": "env://",
}  # fmt: skip

# SeiT++ (the same repository): every flag of main_mtm_pretrain.py and main_mtm_finetune.py
MAIN_MTM_SHARED = {
    "--batch_size": "8", "--epochs": "2", "--accum_iter": "1", "--input_size": "224", "--weight_decay": "0.05",
    "--lr": "1e-3", "--blr": "1.5e-4", "--min_lr": "0.0", "--warmup_epochs": "40", "--token_patch_size": "8",
    "--codebook-path": "c.ckpt", "--train-token-file": "t.bin.gz", "--train-label-file": "t.txt",
    "--tokenadapt-path": "ta.ckpt", "--rrc-ratio": "0.2", "--src": None, "--rrc": None,
    "--token-coloradapt-prob": "0.0", "--token-noise-prob": "0.0", "--token-noise-scale": "1.0",
    "--token-noise-std": "1.0", "--eda-rc-prob": "0.0", "--token-synonym-dict": "s.json",
    "--token-synonym-thres": "5", "--replace-token-prob": "0.25", "--eda-sc-prob": "0.0",
    "--swap-token-scale": "0.25", "--output_dir": "out", "--device": "cpu", "--seed": "0", "--resume": "r.pth",
    "--save_periods": "last2 best", "--start_epoch": "0", "--num_workers": "10", "--pin_mem": None,
    "--no_pin_mem": None, "--world_size": "1", "--local_rank": "-1", "--dist_on_itp": None,
    "--dist_url": "env://", "--print_freq": "100", "--smoothing": "0.0",
}  # fmt: skip
MAIN_MTM_PRETRAIN = {
    **MAIN_MTM_SHARED, "--model": "mtm_token_vit_tiny_test", "--mask_ratio_min": "0.4", "--mask_ratio_max": "1.0",
    "--mask_ratio_mu": "0.45", "--mask_ratio_std": "0.25", "--grad_clip": "3.0", "--flip": None, "--affine": None,
    "--bce_loss": None,
}  # fmt: skip
MAIN_MTM_FINETUNE = {
    **MAIN_MTM_SHARED, "--model": "deit_base_token_32", "--drop_path": "0.1", "--clip_grad": "1.0",
    "--layer_decay": "0.75", "--mixup": "0.0", "--cutmix": "1.0", "--cutmix-minmax": "0.2 0.8",
    "--mixup-prob": "1.0", "--mixup-switch-prob": "0.5", "--mixup-mode": "batch", "--finetune": "ft.pth",
    "--global_pool": None, "--cls_token": None, "--eval": None, "--dist_eval": None, "--val-token-file": "v.bin.gz",
    "--val-label-file": "v.txt",
}  # fmt: skip


def _config(command, argv):
    """The config `seit COMMAND argv` builds (ConfigError for a refused flag), without running anything."""
    from seit.engine.pretrain_config import PretrainConfig

    args = build_parser().parse_args([command, *(argv.split() if isinstance(argv, str) else argv)])
    table, config = {
        "train": (seit_flags.TRAIN, TrainConfig),
        "eval": (seit_flags.EVAL, EvalConfig),
        "pretrain": (seit_flags.PRETRAIN, PretrainConfig),
    }[command]
    seit_flags.apply_reference_flags(args, table, args.group_parser)
    return from_args(config, args)


@pytest.mark.parametrize(
    "command, flag, value",
    [("train", f, v) for f, v in {**MAIN_SEIT, **DEIT_ONLY, **MAIN_MTM_FINETUNE}.items()]
    + [("eval", f, v) for f, v in EVALUATE_ON_IMAGES.items()]
    + [("pretrain", f, v) for f, v in MAIN_MTM_PRETRAIN.items()],
)
def test_every_reference_flag_is_taken_or_refused_in_one_line(command, flag, value):
    argv = [flag, *(value.split() if value else [])] + (
        ["m.ckpt"] if command == "eval" and flag != "--model-path" else []
    )
    try:
        _config(command, argv)  # parses: argparse would exit 2 with "unrecognized arguments"
    except ConfigError as e:
        message = str(e)
        assert message.startswith(flag) and "\n" not in message
        row = {"train": seit_flags.TRAIN, "eval": seit_flags.EVAL, "pretrain": seit_flags.PRETRAIN}[command][flag]
        assert isinstance(row.rule, seit_flags.Refused), f"{flag} {value}: SeiT's default must be accepted"


def test_official_train_command_maps_onto_seit():
    cfg = _config(
        "train",
        "--model deit_base_token_32 --codebook-path c.ckpt --train-token-file t.bin.gz --train-label-file t.txt "
        "--val-token-file v.bin.gz --val-label-file v.txt --token-synonym-dict s.json --output_dir path/to/save "
        "--batch-size 128 --dist-eval",
    )
    assert cfg.run.output == "path/to/save" and cfg.optim.batch_size == 128 and cfg.data.val_token_file == "v.bin.gz"
    assert cfg.data.token_synonym_dict == "s.json" and cfg.data.codebook_path == "c.ckpt"


@pytest.mark.parametrize(
    "argv, field, value",
    [
        ("--token-noise-prob 0.5", "noise_prob", 0.25),  # SeiT: half of the batch, in half of the batches
        ("--token-coloradapt-prob 0.25", "color_adapt_prob", 0.125),
        ("--rrc-ratio 0.3", "rrc_scale", (0.3, 1.0)),
        ("--src", "crop", "random"),
        ("--input-size 256", "crop_size", 32),  # 256 px / 8 px per token
        ("--input-size 224 --token-patch-size 16", "crop_size", 14),
        ("--eda-rc-prob 0.1", "synonym_prob", 0.1),
        ("--token-synonym-thres 3", "synonym_topk", 3),
    ],
)
def test_seit_values_mean_what_they_mean_in_seit(argv, field, value):
    assert getattr(_config("train", argv.split()).augment, field) == value


def test_pixel_baseline_reads_input_size_as_the_image_side():
    assert _config("train", "--images imgs --input-size 160").data.image_size == 160
    with pytest.raises(ConfigError, match="--token-patch-size applies to tokens"):
        _config("train", "--images imgs --token-patch-size 8")


def test_no_eval_drops_the_validation_data():
    cfg = _config("train", "--val-token-file v.bin.gz --val-label-file v.txt --val-store vs --no-eval")
    assert cfg.data.val_token_file is None and cfg.data.val_label_file is None and cfg.data.val_store is None


def test_a_seit_flag_and_its_seit_spelling_cannot_disagree():
    with pytest.raises(ConfigError, match="--rrc-ratio and --rrc-scale"):
        _config("train", "--rrc-ratio 0.2 --rrc-scale 0.1 1.0")
    with pytest.raises(ConfigError, match="--model-path and CHECKPOINT"):
        _config("eval", "a.ckpt --model-path b.ckpt")
    assert _config("train", "--rrc-ratio 0.2 --rrc-scale 0.2 1.0").augment.rrc_scale == (0.2, 1.0)


def test_official_eval_command_maps_onto_seit():
    cfg = _config(
        "eval",
        "--model deit_base_token_32 --model-path W/trained-vit.ckpt --codebook-path W/codebook.ckpt "
        "--tokenizer-path W/tokenizer.ckpt --tokenizer-code-path repo --data-path test --dist-eval",
    )
    assert (cfg.checkpoint, cfg.tokenizer, cfg.images) == ("W/trained-vit.ckpt", "W/tokenizer.ckpt", "test")
    assert cfg.codebook_path == "W/codebook.ckpt" and cfg.model == "deit_base_token_32"
    assert _config("eval", "m.ckpt --vit-input-size 30").crop_size == 30
    with pytest.raises(ConfigError, match=r"CHECKPOINT \(SeiT: --model-path\)"):
        _config("eval", [])


def test_no_parser_takes_abbreviations():
    parsers = list(all_parsers(build_parser()))
    assert len(parsers) > 20 and not [p.prog for p in parsers if p.allow_abbrev]


def test_drop_is_not_drop_path_and_eval_is_not_eval_every(capsys):
    assert main(["train", "--drop", "0.5"]) == EXIT_USAGE  # DeiT's dropout: seit has none, so refused
    assert "--drop 0.5 is not supported" in capsys.readouterr().err
    assert _config("train", ["--drop", "0"]).model.drop_path == 0.1  # DeiT's default: accepted, drop-path untouched
    assert main(["train", "--eval"]) == EXIT_USAGE  # DeiT's evaluate-only switch, not --eval-every
    assert "--eval (SeiT/DeiT) is not supported" in capsys.readouterr().err
    for abbreviation in (["--drop-pat", "0.2"], ["--eval-ev", "2"], ["--batch", "8"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(["train", *abbreviation])
        assert e.value.code == EXIT_USAGE
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "m.ckpt", "--tok", "t"])


def test_every_row_of_the_tables_is_a_flag_of_the_reference_scripts():
    """The tables hold SeiT/DeiT flags only; an invented one would be a flag no user ever typed."""
    assert set(seit_flags.TRAIN) <= set(MAIN_SEIT) | set(DEIT_ONLY) | set(MAIN_MTM_FINETUNE)
    assert set(seit_flags.PRETRAIN) <= set(MAIN_MTM_PRETRAIN) | set(MAIN_SEIT) | set(DEIT_ONLY)
    assert set(seit_flags.EVAL) <= set(EVALUATE_ON_IMAGES) | set(MAIN_SEIT) | set(DEIT_ONLY)
