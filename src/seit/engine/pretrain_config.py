"""Typed config of `seit pretrain` (SeiT++'s masked token modeling); no torch import (the CLI builds flags here).

The data and augmentation sections take the fields of `seit train`'s that mean the same thing here (the same
flags, help and checks; see :func:`subset`); the rest are SeiT++'s ``main_mtm_pretrain.py`` defaults.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from seit.augment.config import AugmentConfig
from seit.config import Checked, at_least, between, field, non_negative, positive
from seit.engine.config import DataConfig, RunConfig
from seit.errors import ConfigError


def subset(cls: type, name: str, names: tuple[str, ...], **defaults: Any) -> type:
    """A dataclass with the fields ``names`` of the config ``cls`` (their flags, help and checks), some defaults
    changed; ``.full(**fixed)`` builds ``cls`` from it (with ``cls``'s own cross-field checks)."""
    hints = typing.get_type_hints(cls)
    chosen = []
    for f in dataclasses.fields(cls):
        if f.name in names:
            default = defaults.get(f.name, f.default)
            chosen.append((f.name, hints[f.name], dataclasses.field(default=default, metadata=f.metadata)))

    def full(self, **fixed: Any) -> Any:
        return cls(**dataclasses.asdict(self), **fixed)

    return dataclasses.make_dataclass(name, chosen, bases=(Checked,), namespace={"full": full, "__module__": __name__})


# what masked token modeling reads: token ids and the codebook, no validation split; labels are never read (a store
# may hold none; --train-label-file is accepted for SeiT++'s command line and ignored)
PretrainDataConfig = subset(
    DataConfig,
    "PretrainDataConfig",
    (
        "store",
        "train_token_file",
        "train_label_file",
        "codebook_path",
        "token_synonym_dict",
        "streaming",
        "verify_shards",
        "shuffle",
        "num_workers",
    ),
)

# SeiT++'s pre-training augmentation: RRC (scale 0.2..1), optional Token-EDA, Emb-Noise and ColorAdapt;
# no flip, Mixup, CutMix or label smoothing (:meth:`PretrainConfig.augment_config` fixes those off)
PretrainAugmentConfig = subset(
    AugmentConfig,
    "PretrainAugmentConfig",
    (
        "crop",
        "crop_size",
        "crop_ratio",
        "rrc_scale",
        "rrc_aspect",
        "synonym_prob",
        "synonym_token_prob",
        "synonym_topk",
        "swap_prob",
        "swap_scale",
        "noise_prob",
        "noise_scale",
        "noise_std",
        "color_adapt_prob",
    ),
    rrc_scale=(0.2, 1.0),
    synonym_prob=0.0,
    swap_prob=0.0,
    noise_prob=0.0,
    color_adapt_prob=0.0,
)


@dataclass
class MTMConfig(Checked):
    model: str = field(
        "mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32",
        help="MTM model (SeiT++'s; mtm_token_vit_tiny_test for smoke runs)",
    )
    embed_dim: int | None = field(None, help="override the encoder's width", check=at_least(1))
    depth: int | None = field(None, help="override the encoder's number of blocks", check=at_least(1))
    num_heads: int | None = field(None, help="override the encoder's number of attention heads", check=at_least(1))
    mask_ratio_min: float = field(
        0.4,
        help="masking ratio: lower bound; also the share of patches dropped from the encoder's input",
        check=between(0, 1),
    )
    mask_ratio_max: float = field(1.0, help="masking ratio: upper bound", check=between(0, 1))
    mask_ratio_mu: float = field(
        0.45, help="masking ratio: mean of the truncated normal drawn once per step", check=between(0, 1)
    )
    mask_ratio_std: float = field(0.25, help="masking ratio: std of the truncated normal", check=positive)
    smoothing: float = field(
        0.0, help="label smoothing of the loss over the codebook (masked tokens)", check=between(0, 1)
    )
    bce_loss: bool = field(False, help="per-code binary cross-entropy instead of cross-entropy")
    tokenadapt: str | None = field(
        None,
        help="TokenAdapt pair (SeiT++'s tokenadapt.ckpt): half of each batch gets flip, affine and resized crop in "
        "its feature space instead of the plain crop",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embed_dim is not None and self.num_heads is not None and self.embed_dim % self.num_heads:
            raise ConfigError(f"--embed-dim {self.embed_dim} must be divisible by --num-heads {self.num_heads}")
        lo, hi, mu = self.mask_ratio_min, self.mask_ratio_max, self.mask_ratio_mu
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"need 0 < --mask-ratio-min ({lo}) <= --mask-ratio-max ({hi}) <= 1")
        if not lo <= mu <= hi:
            raise ConfigError(f"--mask-ratio-mu {mu} must lie in [--mask-ratio-min, --mask-ratio-max] = [{lo}, {hi}]")

    def size_overrides(self) -> dict[str, int]:
        sizes = {"embed_dim": self.embed_dim, "depth": self.depth, "num_heads": self.num_heads}
        return {k: v for k, v in sizes.items() if v is not None}


@dataclass
class PretrainOptimConfig(Checked):
    epochs: int = field(400, help="pre-training epochs", check=at_least(1))
    batch_size: int = field(
        128,
        help="batch size per process and accumulation step (effective: x --accum-iter x processes)",
        check=at_least(1),
    )
    accum_iter: int = field(1, help="gradient accumulation: micro-batches per optimizer step", check=at_least(1))
    lr: float | None = field(
        None, help="absolute learning rate (default: --blr x effective batch / 256)", check=positive
    )
    blr: float = field(1.5e-4, help="base learning rate, scaled by the effective batch / 256", check=positive)
    min_lr: float = field(0.0, help="final learning rate of the cosine schedule", check=non_negative)
    warmup_epochs: float = field(40.0, help="linear warm-up epochs (from 0)", check=non_negative)
    weight_decay: float = field(0.05, help="AdamW weight decay (not on biases and norms)", check=non_negative)
    clip_grad: float | None = field(
        None, help="clip the gradient norm (SeiT++ defines --grad_clip 3.0 but never applies it)", check=positive
    )


# the run section of `seit train`, less what has no meaning without a validation set
PretrainRunConfig = subset(
    RunConfig,
    "PretrainRunConfig",
    (
        "output",
        "resume",
        "restart",
        "seed",
        "device",
        "amp",
        "compile",
        "log_every",
        "ckpt_every",
        "max_steps",
        "tensorboard",
    ),
    output="runs/pretrain",
)


@dataclass
class PretrainConfig(Checked):
    data: PretrainDataConfig = field(PretrainDataConfig, help="data")  # type: ignore[valid-type]
    model: MTMConfig = field(MTMConfig, help="model (SeiT++'s masked token modeling)")
    optim: PretrainOptimConfig = field(PretrainOptimConfig, help="optimisation (SeiT++'s recipe)")
    augment: PretrainAugmentConfig = field(PretrainAugmentConfig, help="augmentation")  # type: ignore[valid-type]
    run: PretrainRunConfig = field(PretrainRunConfig, help="run")  # type: ignore[valid-type]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.augment_config()  # its cross-field checks, now

    def augment_config(self) -> AugmentConfig:
        """`seit train`'s augmentation config of this run: no flip, Mixup, CutMix or label smoothing."""
        return self.augment.full(hflip_prob=0.0, mixup=0.0, cutmix=0.0, smoothing=0.0)

    def data_config(self) -> DataConfig:
        return self.data.full()
