"""The token-augmentation recipe as a typed config; the engine turns each field into a CLI flag."""

from __future__ import annotations

from dataclasses import dataclass

from seit.config import Checked, at_least, between, field, flag_name, non_negative, probability
from seit.errors import ConfigError, SeitError


class AugmentError(SeitError):
    """An augmentation setting or input batch that cannot work; the message names the flag and the fix."""


@dataclass
class AugmentConfig(Checked):
    """SeiT's defaults (main.py / main_seit.py); every probability is per sample unless it says per token."""

    crop: str = field(
        "rrc",
        help="training crop of the token map: 'rrc' = random resized crop (bicubic on the one-hot map, SeiT), "
        "'random' = plain m x m random crop (SeiT --src)",
        choices=("rrc", "random"),
    )
    crop_size: int | None = field(
        None,
        help="side m of the crop fed to the model; default round(crop_ratio * grid side), 28 for 32x32 grids",
        check=at_least(1),
    )
    crop_ratio: float = field(
        0.875,
        help="m / grid side when --crop-size is not given (SeiT: --input-size / 8 of a 32-token grid)",
        check=probability,
    )
    rrc_scale: tuple[float, float] = field(
        (0.08, 1.0),
        help="RRC area range as fractions of the grid (of the image for the pixel baseline; SeiT --rrc-ratio sets "
        "the minimum)",
    )
    rrc_aspect: tuple[float, float] = field(
        (3 / 4, 4 / 3), help="RRC aspect-ratio (width / height) range, torchvision's default as in SeiT"
    )
    hflip_prob: float = field(
        0.0, help="horizontal flip probability (SeiT does not flip token maps)", check=probability
    )
    synonym_prob: float = field(
        0.25,
        help="Token-EDA: probability a sample gets synonym replacement",
        check=probability,
    )
    synonym_token_prob: float = field(
        0.25,
        help="per-token replacement probability inside such a sample",
        check=probability,
    )
    synonym_topk: int = field(
        5,
        help="replacement is drawn uniformly from the first k synonyms (SeiT's table starts with the code itself)",
        check=at_least(1),
    )
    swap_prob: float = field(
        0.25,
        help="Token-EDA: probability a sample gets a patch swap instead",
        check=probability,
    )
    swap_scale: float = field(
        0.25,
        help="patch-swap side is int(U(0, scale) * grid side)",
        check=between(0, 1, include_hi=False),
    )
    noise_prob: float = field(
        0.25,
        help="Emb-Noise probability per sample (SeiT++ noises half the batch in half of the batches; the SeiT "
        "paper used 0.5 and no ColorAdapt)",
        check=probability,
    )
    noise_scale: float = field(1.0, help="std of the per-channel noise offset", check=non_negative)
    noise_std: float = field(1.0, help="std of the per-element noise", check=non_negative)
    color_adapt_prob: float = field(
        0.125,
        help="ColorAdapt probability per sample: its channel mean/std are replaced by its partner sample's "
        "(SeiT++: half the batch in a quarter of the batches)",
        check=probability,
    )
    mixup: float = field(0.0, help="Mixup alpha (on if > 0)", check=non_negative)
    cutmix: float = field(1.0, help="CutMix alpha (on if > 0)", check=non_negative)
    cutmix_minmax: tuple[float, float] | None = field(None, help="CutMix box size range; overrides --cutmix")
    mixup_prob: float = field(1.0, help="probability of mixing a batch", check=probability)
    mixup_switch_prob: float = field(
        0.5, help="probability of CutMix instead of Mixup when both are on", check=probability
    )
    mixup_mode: str = field("batch", help="mix params per 'batch', 'pair' or 'elem'", choices=("batch", "pair", "elem"))
    smoothing: float = field(0.1, help="label smoothing folded into the soft targets", check=probability)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("rrc_scale", "rrc_aspect", "cutmix_minmax"):
            value = getattr(self, name)
            if value is not None and len(value) != 2:
                raise ConfigError(f"{flag_name(name)} takes two numbers (min max), got {list(value)}")
        if self.crop_ratio == 0:
            raise ConfigError("--crop-ratio must be > 0, got 0")
        if self.synonym_prob + self.swap_prob > 1.0:
            raise ConfigError("--synonym-prob + --swap-prob must be <= 1 (a sample gets one Token-EDA op at most)")
        if self.noise_prob + self.color_adapt_prob > 1.0:
            raise ConfigError("--noise-prob + --color-adapt-prob must be <= 1 (a sample gets one of them at most)")
        lo, hi = self.rrc_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"--rrc-scale must satisfy 0 < min <= max <= 1, got {list(self.rrc_scale)}")
        if not 0.0 < self.rrc_aspect[0] <= self.rrc_aspect[1] < float("inf"):
            raise ConfigError(f"--rrc-aspect must satisfy 0 < min <= max, got {list(self.rrc_aspect)}")
        if self.cutmix_minmax is not None and not 0.0 < self.cutmix_minmax[0] < self.cutmix_minmax[1] <= 1.0:
            raise ConfigError(f"--cutmix-minmax must satisfy 0 < min < max <= 1, got {list(self.cutmix_minmax)}")

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0 or self.cutmix_minmax is not None

    def crop_side(self, height: int, width: int) -> int:
        """The model's input side m for a token grid of ``height`` x ``width``."""
        side = self.crop_size if self.crop_size is not None else round(self.crop_ratio * min(height, width))
        if not 1 <= side <= min(height, width):
            raise AugmentError(
                f"crop side {side} does not fit a {height}x{width} token grid; set --crop-size between 1 and "
                f"{min(height, width)}"
            )
        return side


@dataclass(frozen=True)
class BatchSlice:
    """Rows [start, start + size) of a step's global batch of ``total`` samples: one process's part of it.

    Every process seeds the step's draws alike, draws them for the whole global batch and keeps its rows, so
    a sample's augmentation depends on its position in the global batch, not on how many processes share it.
    The cost: each process draws the global batch's random numbers (its augmentation work stays its own rows).
    """

    start: int
    size: int
    total: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.start + self.size <= self.total:
            raise AugmentError(f"batch slice {self.start}:{self.stop} outside a global batch of {self.total}")

    @classmethod
    def whole(cls, size: int) -> BatchSlice:
        return cls(0, size, size)

    @property
    def stop(self) -> int:
        return self.start + self.size
