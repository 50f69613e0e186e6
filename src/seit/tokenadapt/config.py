"""Configs of TokenAdapt's geometric augmentation and of ``seit tokenadapt train`` (torch-free: the CLI
builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass

from seit.config import (
    Checked,
    at_least,
    between,
    each,
    field,
    non_negative,
    positive,
    probability,
    restart_field,
    resume_field,
)
from seit.errors import ConfigError
from seit.images import RESIZE_MODES


@dataclass(frozen=True)
class GeometryConfig(Checked):
    """The random geometric transform SeiT++ applies in TokenAdapt's converted space (``token_transform.py``
    ``build_geo_transform(True)``): a horizontal flip, then with ``affine_prob`` each of rotation, x/y
    translation and x/y shear with ``op_prob``, then a random resized crop. Drawn per sample (SeiT++ draws
    one per batch; per sample gives the same distribution with more variety)."""

    hflip_prob: float = field(0.5, help="horizontal flip probability", check=probability)
    affine_prob: float = field(
        0.5, help="probability the affine group (rotate, translate, shear) is tried at all", check=probability
    )
    op_prob: float = field(0.5, help="probability of each affine operation inside the group", check=probability)
    rotate: float = field(30.0, help="rotation range in degrees, uniform in [-r, r]", check=between(0, 180))
    translate: float = field(0.2, help="translation range as a fraction of the side, per axis", check=between(0, 1))
    shear: float = field(15.0, help="shear range in degrees, per axis", check=between(0, 60))
    rrc_scale: tuple[float, float] = field(
        (0.2, 1.0),
        help="random resized crop area range as fractions of the map (SeiT++ --rrc-ratio: the minimum)",
        check=each(between(0, 1, include_lo=False)),
    )
    rrc_aspect: tuple[float, float] = field(
        (3 / 4, 4 / 3), help="random resized crop aspect-ratio range (width / height)", check=each(positive)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("rrc_scale", "rrc_aspect"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"--{name.replace('_', '-')} must be a (low, high) range, got {[lo, hi]}")

    @classmethod
    def identity(cls) -> GeometryConfig:
        """No flip, no affine, the whole map: the transform that must give the input codes back."""
        return cls(hflip_prob=0.0, affine_prob=0.0, rrc_scale=(1.0, 1.0), rrc_aspect=(1.0, 1.0))


@dataclass
class TokenAdaptTrainConfig(Checked):
    """``seit tokenadapt train``: learn a TokenAdapt pair for a tokenizer from a folder of images."""

    images: str = field(help="training images: an ImageFolder tree, a flat folder or a list file", positional=True)
    tokenizer: str = field(help="the tokenizer whose codes the pair adapts (seit's file or folder)", metavar="PATH")
    out: str = field(
        help="output folder (checkpoint.pt, metrics.jsonl, tb/, tokenadapt.safetensors)",
        metavar="DIR",
        flag="output",
    )
    crop: int | None = field(
        None,
        help="token grid side the reverse writes (default: 7/8 of the tokenizer's grid, SeiT++'s 28 of 32)",
        check=at_least(1),
    )
    dim: int = field(384, help="transformer width of both maps (SeiT++: 384)", check=at_least(4))
    depth: int = field(1, help="transformer blocks of each map", check=at_least(1))
    heads: int = field(6, help="attention heads (64 wide each)", check=at_least(1))
    mlp_dim: int = field(1536, help="MLP hidden width", check=at_least(1))
    geometry: GeometryConfig = field(GeometryConfig, help="the random transforms trained for (SeiT++'s by default)")
    recon_weight: float = field(
        1.0,
        help="weight of the untransformed reconstruction term (reverse(convert(codes)) = codes)",
        check=non_negative,
    )
    resize: str = field(
        "squash", help="squash: resize to a square; crop: shorter side + center crop", choices=RESIZE_MODES
    )
    steps: int = field(2000, help="optimizer steps in total (a resumed run continues up to this)", check=at_least(1))
    batch_size: int = field(32, help="images per step", check=at_least(1))
    lr: float = field(5e-4, help="peak learning rate (AdamW, betas 0.9/0.95)", check=positive)
    min_lr: float = field(1e-5, help="learning rate at the end of the cosine decay", check=non_negative)
    warmup_steps: int = field(100, help="linear warm-up steps", check=non_negative)
    weight_decay: float = field(0.05, help="AdamW weight decay on weight matrices", check=non_negative)
    log_every: int = field(10, help="append a metrics.jsonl record every this many steps", check=at_least(1))
    save_every: int = field(200, help="write checkpoint.pt every this many steps", check=at_least(1))
    num_workers: int | None = field(
        None, help="image-decoding worker processes (default: up to 8 cores)", check=non_negative
    )
    device: str | None = field(None, help="cuda, cuda:N or cpu (default: a GPU if any)", metavar="DEVICE")
    seed: int = field(0, help="seed for the initial weights, data order and transforms", check=non_negative)
    resume: str | None = resume_field("checkpoint.pt")
    restart: bool = restart_field()
    tensorboard: bool = field(True, help="write TensorBoard event files to OUTPUT/tb")
