"""Options of `seit tradeoff` and its row specs (no torch import: the CLI builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass

from seit.config import Checked, at_least, between, each, field, non_negative, positive, restart_field
from seit.errors import ConfigError

TOKENIZER_PATCH = 8  # the vitvq-tiny tokenizer's patch: its image side is grid * 8
TOKENIZER_PRESET = "vitvq-tiny"
MIN_SIDE = 8  # the smallest downsampled side (seit.demo.squeeze's)
DEFAULT_TOKENS = "grid=16,codes=512,dim=32"  # the demo's tokenizer: 128 px, 16x16 ids of 512 32-d codes


@dataclass(frozen=True)
class TokenSpec:
    """One tokenizer to train: its grid of ids per image, codebook size and code dimension."""

    grid: int
    codes: int
    dim: int

    KEYS = ("grid", "codes", "dim")

    @classmethod
    def parse(cls, text: str) -> TokenSpec:
        """``grid=16,codes=512,dim=32`` (every key once); a bad spec is one line naming --tokens."""
        values: dict[str, int] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in cls.KEYS or key in values or not value.strip().isdigit():
                raise ConfigError(
                    f"--tokens {text!r}: give grid=N,codes=N,dim=N (positive integers, each once), "
                    "e.g. grid=16,codes=512,dim=32"
                )
            values[key] = int(value)
        if set(values) != set(cls.KEYS):
            missing = ", ".join(k for k in cls.KEYS if k not in values)
            raise ConfigError(f"--tokens {text!r}: missing {missing}; e.g. grid=16,codes=512,dim=32")
        spec = cls(**values)
        if spec.grid < 2 or spec.codes < 2 or spec.dim < 1:
            raise ConfigError(f"--tokens {text!r}: grid and codes must be >= 2 and dim >= 1")
        return spec

    @property
    def image_size(self) -> int:
        return self.grid * TOKENIZER_PATCH

    @property
    def name(self) -> str:
        return f"tokens-g{self.grid}-k{self.codes}-d{self.dim}"


@dataclass
class TradeoffConfig(Checked):
    images: str = field(help="training images: an ImageFolder tree (class = first-level folder)", positional=True)
    val: str = field(help="held-out images (an ImageFolder tree with the same classes): every row is evaluated on them")
    output: str = field("seit-tradeoff", help="output folder: every row's artefacts, its cached result, the report")
    tokens: tuple[str, ...] | None = field(
        None,
        help="token rows: one tokenizer trained per spec grid=N,codes=N,dim=N (grid N: the tokenizer sees N*8 px "
        f"images; default: {DEFAULT_TOKENS} unless --tokenizer is given)",
        metavar="SPEC",
    )
    tokenizer: tuple[str, ...] | None = field(
        None, help="token rows from tokenizers you already have (tokenizer.safetensors files): no training"
    )
    stored: bool = field(True, help="a row on the training images as stored")
    jpeg_qualities: tuple[int, ...] | None = field(
        None, help="a row per JPEG quality (the training images re-encoded)", check=each(between(1, 100))
    )
    downsample: tuple[int, ...] | None = field(
        None,
        help="a row per shorter side in px: the training images downsampled (bicubic), stored as WebP",
        check=each(at_least(MIN_SIDE)),
    )
    match_tokens: bool = field(
        False,
        help="two rows squeezed to the first token row's bytes per image: the JPEG quality and the downsampled "
        "side with the most bytes within them (seit demo's rows)",
    )
    tokenizer_steps: int = field(300, help="training steps of each tokenizer (batch 16)", check=at_least(1))
    embed_dim: int = field(128, help="the ViT's width (every row)", check=at_least(1))
    depth: int = field(2, help="the ViT's blocks (every row)", check=at_least(1))
    num_heads: int = field(4, help="the ViT's attention heads (every row)", check=at_least(1))
    epochs: int = field(22, help="training epochs (every row)", check=at_least(1))
    batch_size: int = field(64, help="batch size (every row)", check=at_least(1))
    lr: float = field(1e-3, help="AdamW learning rate (every row)", check=positive)
    seed: int = field(0, help="seed of every tokenizer and training run", check=non_negative)
    device: str | None = field(None, help="cuda / cpu (default: cuda if available)")
    num_workers: int = field(2, help="worker processes for image decoding", check=non_negative)
    restart: bool = restart_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"--embed-dim {self.embed_dim} must be divisible by --num-heads {self.num_heads}")
        specs = self.token_specs()
        if len(set(specs)) != len(specs):
            raise ConfigError(f"--tokens: each spec once, got {list(self.tokens or ())}")
        for flag, values in (("--jpeg-qualities", self.jpeg_qualities), ("--downsample", self.downsample)):
            if values is not None and len(set(values)) != len(values):
                raise ConfigError(f"{flag}: each value once, got {list(values)}")
        if self.match_tokens and not (specs or self.tokenizer):
            raise ConfigError("--match-tokens needs a token row (--tokens or --tokenizer) to match")
        if not (specs or self.tokenizer or self.stored or self.jpeg_qualities or self.downsample):
            raise ConfigError("no rows: give --tokens, --tokenizer, --jpeg-qualities or --downsample, or keep --stored")

    def token_specs(self) -> list[TokenSpec]:
        """The tokenizers to train: --tokens, or the default one when no --tokenizer file is given either."""
        texts = self.tokens if self.tokens is not None else () if self.tokenizer else (DEFAULT_TOKENS,)
        return [TokenSpec.parse(text) for text in texts]

    def recipe(self) -> Recipe:
        return Recipe(self.embed_dim, self.depth, self.num_heads, self.epochs, self.batch_size, self.lr)


@dataclass(frozen=True)
class Recipe:
    """The ViT and budget every row trains with (the demo's): what ``recipe_config`` reads.

    ``image_size`` is the reference tokenizer's side (128 px: 16x16 ids, whose 14x14 crop a stride-2 token ViT
    cuts into 7x7 patches); the pixel ViT sees the same 7x7 patches (``pixel_image_size``).
    """

    embed_dim: int = 128
    depth: int = 2
    num_heads: int = 4
    epochs: int = 22
    batch_size: int = 64
    lr: float = 1e-3
    crop_scale: tuple[float, float] = (0.35, 1.0)
    image_size: int = 128
