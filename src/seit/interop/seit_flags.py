"""The command-line flags of SeiT's ``main_seit.py`` / ``evaluate_on_images.py`` (and DeiT's ``main.py``) on seit's.

SeiT users arrive with the commands of the official README, so ``seit train`` and ``seit eval`` accept every
flag of those scripts. Each one is a row of one table, with SeiT's meaning:

- :class:`Alias`: the same setting under SeiT's name (``--output_dir`` is ``--output``);
- :class:`Sets`: SeiT's value converted onto seit's flags (``--rrc-ratio 0.2`` is ``--rrc-scale 0.2 1.0``);
- :class:`Ignored`: accepted and does nothing, because seit needs nothing there (``--dist-eval``: evaluation
  is always exact) or because SeiT's own code reads it nowhere;
- :class:`Only`: accepted at the value seit implements (SeiT's default), refused at any other;
- :class:`Refused`: a feature seit does not have, refused in one line naming the flag and what to use.

Nothing is reinterpreted silently: a value either means what it means in SeiT or the command stops. Flags
whose name and meaning are already seit's (``--batch-size``, ``--lr``, ``--codebook-path``, ...) need no row.
No torch here: the CLI builds its parsers from this table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from seit.errors import ConfigError


@dataclass(frozen=True)
class Alias:
    field: str  # seit's config field that takes the value as it is


@dataclass(frozen=True)
class Sets:
    convert: Callable[[Any], dict[str, Any]]  # SeiT's value -> {seit field: value}
    means: str  # the conversion in words, for --help


@dataclass(frozen=True)
class Ignored:
    why: str


@dataclass(frozen=True)
class Only:
    value: Any  # the one value seit implements
    why: str


@dataclass(frozen=True)
class Refused:
    why: str


Rule = Alias | Sets | Ignored | Only | Refused


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    rule: Rule
    type: Callable[[str], Any] | None = None  # None: a switch without a value
    nargs: str | None = None

    @property
    def dest(self) -> str:
        return "seit_flag" + self.names[0]


_EVAL_ONLY = (
    "evaluate a checkpoint with `seit eval CHECKPOINT --token-file X-token.data.bin.gz --label-file X-label.txt`"
)
_TORCHRUN = "torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) sets up the processes"
_PIXEL_AUG = "DeiT's pixel augmentation (seit augments tokens: the augmentation flags above)"


def _flags(*rows: Flag) -> dict[str, Flag]:
    return {name: row for row in rows for name in row.names}


def _per_batch_half(field: str) -> Sets:
    """SeiT picks Emb-Noise / ColorAdapt for a whole batch with probability p and applies it to half of it."""
    return Sets(lambda p: {field: p / 2}, f"--{field.replace('_', '-')} p/2 (SeiT applies it to half of a batch)")


SHARED = _flags(
    Flag(("--num_workers",), Alias("num_workers"), int),
    Flag(("--dist-eval",), Ignored("evaluation is always distributed and exact: every sample counted once")),
    Flag(("--pin-mem",), Ignored("a transfer-speed setting; seit pins batches itself where it helps")),
    Flag(("--no-pin-mem",), Ignored("a transfer-speed setting; seit pins batches itself where it helps")),
    Flag(("--world_size",), Ignored(_TORCHRUN), int),
    Flag(("--local_rank",), Ignored(_TORCHRUN), int),
    Flag(("--distributed",), Ignored(_TORCHRUN)),
    Flag(("--dist_url",), Only("env://", _TORCHRUN), str),
    Flag(("--dist_on_itp",), Refused(f"OpenMPI launch is not supported; {_TORCHRUN}")),
)

TRAIN = _flags(
    *SHARED.values(),
    # main_seit.py
    Flag(("--output_dir",), Alias("output"), str),
    Flag(("--eda-rc-prob",), Alias("synonym_prob"), float),
    Flag(("--replace-token-prob",), Alias("synonym_token_prob"), float),
    Flag(("--token-synonym-thres",), Alias("synonym_topk"), int),
    Flag(("--eda-sc-prob",), Alias("swap_prob"), float),
    Flag(("--swap-token-scale",), Alias("swap_scale"), float),
    Flag(("--token-noise-scale",), Alias("noise_scale"), float),
    Flag(("--token-noise-std",), Alias("noise_std"), float),
    Flag(("--token-noise-prob",), _per_batch_half("noise_prob"), float),
    Flag(("--token-coloradapt-prob",), _per_batch_half("color_adapt_prob"), float),
    Flag(("--rrc-ratio",), Sets(lambda v: {"rrc_scale": (v, 1.0)}, "--rrc-scale V 1.0"), float),
    Flag(("--src",), Sets(lambda v: {"crop": "random"}, "--crop random"), None),
    Flag(
        ("--input-size",),
        Sets(lambda v: {"input_size": v}, "--crop-size INPUT_SIZE // --token-patch-size (--image-size with --images)"),
        int,
    ),
    Flag(("--token-patch-size",), Sets(lambda v: {"token_patch_size": v}, "see --input-size"), int),
    Flag(
        ("--no-eval",),
        Sets(lambda v: dict.fromkeys(("val_store", "val_token_file", "val_label_file", "val_images")), "no validation"),
    ),
    Flag(("--vit-patch-size",), Ignored("SeiT's main_seit.py reads it nowhere"), int),
    Flag(("--use-entire-tokens",), Ignored("SeiT's main_seit.py reads it nowhere")),
    Flag(("--eval-crop-ratio",), Ignored("SeiT's main_seit.py reads it nowhere; seit's crop is --crop-ratio"), float),
    Flag(("--model-ema-force-cpu",), Ignored("seit keeps the EMA on the training device"), None),
    Flag(("--lr-noise-pct",), Ignored("used only with --lr-noise"), float),
    Flag(("--lr-noise-std",), Ignored("used only with --lr-noise"), float),
    Flag(("--decay-epochs",), Ignored("used only by step schedulers; SeiT's and seit's is cosine"), float),
    Flag(("--decay-rate", "--dr"), Ignored("used only by step schedulers; SeiT's and seit's is cosine"), float),
    Flag(("--patience-epochs",), Ignored("used only by the plateau scheduler; SeiT's and seit's is cosine"), int),
    Flag(("--cooldown-epochs",), Ignored("main_seit.py runs --epochs epochs of cosine and discards the cooldown"), int),
    Flag(("--drop",), Only(0.0, "seit's ViTs have no dropout besides --drop-path"), float),
    Flag(("--sched",), Only("cosine", "seit's schedule is cosine with warm-up"), str),
    Flag(("--opt-eps",), Only(1e-8, "seit uses the optimizer's default epsilon"), float),
    Flag(("--momentum",), Only(0.9, "seit uses timm's default momentum (SGD-type --opt only)"), float),
    Flag(("--start_epoch",), Only(0, "a resumed run continues where its checkpoint stopped (--resume)"), int),
    Flag(("--opt-betas",), Refused("seit uses the optimizer's default betas"), float, "+"),
    Flag(("--lr-noise",), Refused("learning-rate noise is not implemented"), float, "+"),
    Flag(
        ("--bce-loss",), Refused("seit trains with soft-target cross-entropy (SeiT's default); BCE is not implemented")
    ),
    Flag(("--attn-only",), Refused("fine-tuning only the attention layers is not implemented")),
    Flag(("--eval",), Refused(_EVAL_ONLY)),
    # DeiT's main.py, which main_seit.py dropped
    *(Flag((name,), Refused(_PIXEL_AUG), str) for name in ("--color-jitter", "--aa", "--train-interpolation")),
    *(Flag((name,), Refused(_PIXEL_AUG), str) for name in ("--reprob", "--remode", "--recount")),
    *(Flag((name,), Refused(_PIXEL_AUG)) for name in ("--repeated-aug", "--no-repeated-aug", "--ThreeAugment")),
    *(Flag((name,), Refused(_PIXEL_AUG)) for name in ("--resplit", "--train-mode", "--no-train-mode")),
    *(
        Flag((name,), Refused("knowledge distillation is not implemented"), str)
        for name in ("--teacher-model", "--teacher-path", "--distillation-type", "--distillation-alpha")
    ),
    Flag(("--distillation-tau",), Refused("knowledge distillation is not implemented"), str),
    Flag(("--cosub",), Refused("knowledge distillation is not implemented")),
    Flag(("--data-path",), Refused("give --store (or --images FOLDER for the pixel baseline) and --val-store"), str),
    Flag(("--data-set",), Refused("give --store (or --images FOLDER for the pixel baseline)"), str),
    Flag(("--inat-category",), Refused("give --store (or --images FOLDER for the pixel baseline)"), str),
)

# flags both of SeiT++'s scripts (main_mtm_pretrain.py, main_mtm_finetune.py) add to SeiT's
_NO_PIN = "a transfer-speed setting; seit pins batches itself where it helps"
SEITPP_SHARED = _flags(
    Flag(("--batch_size",), Alias("batch_size"), int),
    Flag(("--weight_decay",), Alias("weight_decay"), float),
    Flag(("--min_lr",), Alias("min_lr"), float),
    Flag(("--warmup_epochs",), Alias("warmup_epochs"), float),
    Flag(("--print_freq",), Alias("log_every"), int),
    Flag(("--input_size",), Sets(lambda v: {"input_size": v}, "--crop-size INPUT_SIZE // --token_patch_size"), int),
    Flag(("--token_patch_size",), Sets(lambda v: {"token_patch_size": v}, "see --input_size"), int),
    Flag(("--save_periods",), Ignored("seit keeps OUTPUT/last.pt, written every --ckpt-every steps"), str, "+"),
    Flag(("--pin_mem",), Ignored(_NO_PIN)),
    Flag(("--no_pin_mem",), Ignored(_NO_PIN)),
    Flag(("--rrc",), Refused("SeiT++ then crops in the data loader and again per batch; seit crops once (--crop)")),
)
_POOL = "main_mtm_finetune.py never passes it to the model; seit's token ViTs average-pool, as SeiT++'s"

# SeiT++'s main_mtm_finetune.py, on `seit train` (fine-tuning from `seit pretrain`)
_FINETUNE_LR = (
    "SeiT++'s fine-tuning lr is blr x sqrt(effective batch) / 8: give that as --lr with --unscale-lr "
    "(e.g. blr 1e-3 at 1024: --lr 4e-3 --unscale-lr)"
)
TRAIN.update(
    _flags(
        *SEITPP_SHARED.values(),
        Flag(("--layer_decay",), Alias("layer_decay"), float),
        Flag(("--drop_path",), Alias("drop_path"), float),
        Flag(("--clip_grad",), Alias("clip_grad"), float),
        Flag(("--global_pool",), Ignored(_POOL)),
        Flag(("--cls_token",), Ignored(_POOL)),
        Flag(("--dist_eval",), Ignored("evaluation is always distributed and exact: every sample counted once")),
        Flag(("--accum_iter",), Only(1, "seit train takes one optimizer step per batch"), int),
        Flag(("--blr",), Refused(_FINETUNE_LR), float),
        Flag(("--tokenadapt-path",), Refused("TokenAdapt augmentation in fine-tuning is not implemented"), str),
    )
)

EVAL = _flags(
    *SHARED.values(),
    # evaluate_on_images.py
    Flag(("--model-path",), Sets(lambda v: {"checkpoint": v}, "the CHECKPOINT argument"), str),
    Flag(("--tokenizer-path",), Alias("tokenizer"), str),
    Flag(("--data-path",), Alias("images"), str),
    Flag(("--vit-input-size",), Alias("crop_size"), int),
    Flag(("--tokenizer-code-path",), Ignored("seit reads the tokenizer file itself; no foreign code is needed"), str),
    Flag(("--tokenizer-input-size",), Ignored("images are resized to the size the tokenizer file records"), int),
    Flag(("--nb_classes",), Ignored("the class count is read from the classifier's head"), int),
    Flag(("--seed",), Ignored("evaluation draws nothing at random"), int),
    Flag(("--eval",), Ignored("seit eval only evaluates")),
)


def aliases(table: Mapping[str, Flag]) -> dict[str, tuple[str, ...]]:
    """seit field -> SeiT's spellings of it, for :func:`seit.config.add_dataclass_args`."""
    out: dict[str, tuple[str, ...]] = {}
    for name, row in table.items():
        if isinstance(row.rule, Alias):
            out[row.rule.field] = (*out.get(row.rule.field, ()), name)
    return out


def _help(row: Flag) -> str:
    rule = row.rule
    if isinstance(rule, Sets):
        return f"SeiT: = {rule.means}"
    if isinstance(rule, Ignored):
        return f"SeiT: accepted, does nothing: {rule.why}"
    if isinstance(rule, Only):
        return f"SeiT: only {rule.value!r} (its default): {rule.why}"
    return f"SeiT/DeiT: refused: {rule.why}"


def add_reference_flags(parser: argparse.ArgumentParser, table: Mapping[str, Flag], script: str) -> None:
    """A help group with every non-alias row of ``table`` (aliases sit next to seit's own flag)."""
    group = parser.add_argument_group(f"flags of {script}, for running its commands unchanged")
    done = set()
    for row in table.values():
        if isinstance(row.rule, Alias) or row.names in done:
            continue
        done.add(row.names)
        kwargs: dict[str, Any] = {"dest": row.dest, "default": argparse.SUPPRESS, "help": _help(row)}
        if row.type is None:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=row.type, nargs=row.nargs, metavar=row.names[0].lstrip("-").upper().replace("-", "_"))
        group.add_argument(*row.names, **kwargs)


def apply_reference_flags(ns: argparse.Namespace, table: Mapping[str, Flag], parser: argparse.ArgumentParser) -> None:
    """Turn the SeiT flags given in ``ns`` into seit's fields; ConfigError (one line) on a refusal or a clash."""
    given = {row.names[0]: (row, getattr(ns, row.dest)) for row in table.values() if hasattr(ns, row.dest)}
    settings: dict[str, tuple[str, Any]] = {}  # seit field -> (SeiT flag, value)
    for name, (row, value) in given.items():
        delattr(ns, row.dest)
        rule = row.rule
        if isinstance(rule, Refused):
            raise ConfigError(f"{name} (SeiT/DeiT) is not supported: {rule.why}")
        if isinstance(rule, Only) and value != rule.value:
            raise ConfigError(f"{name} {value} is not supported, only {rule.value!r}: {rule.why}")
        if isinstance(rule, Sets):
            settings.update({field: (name, v) for field, v in rule.convert(value).items()})
    patch = settings.pop("token_patch_size", ("--token-patch-size", None))
    size = settings.pop("input_size", ("--input-size", None))
    if size[1] is not None or patch[1] is not None:
        if getattr(ns, "images", None):
            if patch[1] is not None:
                raise ConfigError("--token-patch-size applies to tokens; with --images, --input-size is the image side")
            settings["image_size"] = size
        else:
            settings["crop_size"] = (size[0], (size[1] or 224) // (patch[1] or 8))
    for field, (name, value) in settings.items():
        current, default = getattr(ns, field), parser.get_default(field)
        current = tuple(current) if isinstance(current, list) else current  # nargs flags parse to lists
        if value is not None and current != default and current != value:  # (None: --no-eval clears a source)
            flag = field.upper() if field == "checkpoint" else "--" + field.replace("_", "-")
            raise ConfigError(f"{name} and {flag} both say how to set {field}: give one of them")
        setattr(ns, field, value)


def _train_rows(*names: str) -> tuple[Flag, ...]:
    """Rows of :data:`TRAIN` whose flag SeiT++'s scripts share with SeiT's, with the same meaning."""
    return tuple(dict.fromkeys(TRAIN[name] for name in names))


_NOWHERE_MTM = "SeiT++'s main_mtm_pretrain.py reads it nowhere"

# SeiT++'s main_mtm_pretrain.py on `seit pretrain`
PRETRAIN = _flags(
    *SHARED.values(),
    *_train_rows("--output_dir", "--start_epoch", "--rrc-ratio", "--token-noise-prob", "--token-coloradapt-prob"),
    *_train_rows("--token-noise-scale", "--token-noise-std", "--eda-rc-prob", "--replace-token-prob"),
    *_train_rows("--token-synonym-thres", "--eda-sc-prob", "--swap-token-scale"),
    *SEITPP_SHARED.values(),
    Flag(("--accum_iter",), Alias("accum_iter"), int),
    Flag(("--mask_ratio_min",), Alias("mask_ratio_min"), float),
    Flag(("--mask_ratio_max",), Alias("mask_ratio_max"), float),
    Flag(("--mask_ratio_mu",), Alias("mask_ratio_mu"), float),
    Flag(("--mask_ratio_std",), Alias("mask_ratio_std"), float),
    Flag(("--bce_loss",), Alias("bce_loss"), None),
    Flag(("--tokenadapt-path",), Alias("tokenadapt"), str),
    Flag(("--grad_clip",), Ignored("SeiT++ defines it but never clips; seit's --clip-grad does"), float),
    Flag(("--flip",), Ignored(_NOWHERE_MTM)),
    Flag(("--affine",), Ignored(_NOWHERE_MTM)),
    Flag(("--src",), Refused("SeiT++ then crops in the data loader and again per batch; seit crops once (--crop)")),
)
