"""Typed configs of the tokenizer and of its jobs (torch-free, so building the CLI stays fast).

:class:`TokenizerConfig` describes a model and is saved inside every tokenizer file; ``PRESETS`` holds
enhancing-transformers' ImageNet sizes and small CPU sizes. :class:`TrainConfig` and
:class:`EvalConfig` describe ``seit tokenizer train`` / ``eval``, :class:`TokenizeConfig` and
:class:`DecodeConfig` ``seit tokenize`` / ``seit decode``; their fields are the CLI flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from seit.config import (
    Checked,
    ResumesInPlace,
    at_least,
    between,
    each,
    field,
    json_field,
    non_negative,
    positive,
    restart_field,
    resume_field,
    resume_in_place_field,
)
from seit.errors import SeitError
from seit.images import DEFAULT_MAX_PIXELS, RESIZE_MODES

PRECISIONS = ("auto", "bf16", "none", "fp32")  # none = fp32, the spelling `seit train --amp` uses
TOKENIZER_HELP = "tokenizer: ours (.safetensors or its folder), a Lightning .ckpt or state dict, a SeiT pickle"


class TokenizerError(SeitError):
    """A tokenizer config, file or input the user can fix; the message names it and the fix."""


@dataclass(frozen=True)
class TransformerConfig:
    """One side (encoder or decoder) of the ViT-VQGAN."""

    dim: int
    depth: int
    heads: int
    mlp_dim: int
    dim_head: int = 64  # enhancing-transformers never changes it


@dataclass(frozen=True)
class TokenizerConfig:
    """Everything needed to rebuild a tokenizer; saved inside every tokenizer file we write."""

    image_size: int
    patch_size: int
    encoder: TransformerConfig
    decoder: TransformerConfig
    codebook_size: int
    code_dim: int

    def __post_init__(self) -> None:
        if self.image_size <= 0 or self.patch_size <= 0 or self.image_size % self.patch_size:
            raise TokenizerError(
                f"image size {self.image_size} must be a positive multiple of the patch size {self.patch_size}"
            )
        for side in ("encoder", "decoder"):
            part = getattr(self, side)
            if part.dim % 4:
                raise TokenizerError(f"{side} dim {part.dim} must be a multiple of 4 (2-D sin-cos embeddings)")
            if min(part.depth, part.heads, part.mlp_dim, part.dim_head) <= 0:
                raise TokenizerError(f"{side} has a non-positive size: {part}")
        if self.codebook_size < 1 or self.code_dim < 1:
            raise TokenizerError(f"codebook {self.codebook_size}x{self.code_dim} must be non-empty")

    @property
    def grid_shape(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return (side, side)

    def replace(self, **changes) -> TokenizerConfig:
        return dataclasses.replace(self, **changes)


def _symmetric(image_size: int, patch_size: int, side: TransformerConfig, codes: int, code_dim: int = 32):
    return TokenizerConfig(image_size, patch_size, side, side, codes, code_dim)


# The ImageNet configs of enhancing-transformers (configs/imagenet_vitvq_*.yaml) and small CPU presets.
PRESETS: dict[str, TokenizerConfig] = {
    "vitvq-small": _symmetric(256, 8, TransformerConfig(512, 8, 8, 2048), 8192),
    "vitvq-base": _symmetric(256, 8, TransformerConfig(768, 12, 12, 3072), 8192),
    "vitvq-large": TokenizerConfig(
        256, 8, TransformerConfig(512, 8, 8, 2048), TransformerConfig(1280, 32, 16, 5120), 8192, 32
    ),
    # 64 px, 8x8 ids: the shape of the reference fixture; trains in minutes on two CPU cores.
    "vitvq-tiny": _symmetric(64, 8, TransformerConfig(64, 2, 2, 128), 512),
    # 128 px, 16x16 ids: a usable small-image tokenizer on a laptop.
    "vitvq-mini": _symmetric(128, 8, TransformerConfig(128, 4, 4, 512, dim_head=32), 1024),
}


def preset(name: str, **overrides) -> TokenizerConfig:
    """A preset config, optionally with ``image_size``/``codebook_size``/... replaced."""
    if name not in PRESETS:
        raise TokenizerError(f"unknown tokenizer preset {name!r}; choose one of {sorted(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return PRESETS[name].replace(**changes) if changes else PRESETS[name]


# One spelling per idea across commands (the former ones stay accepted, hidden from --help).
_OUTPUT = {"flag": "output", "hidden": ("--out",)}


def _amp_option():
    return field(
        "auto",
        help="autocast dtype: bf16, none (float32); auto = bf16 on GPU, none on CPU",
        choices=PRECISIONS,
        metavar="{auto,bf16,none}",
        flag="amp",
        hidden=("--precision",),
    )


@dataclass
class TrainConfig(Checked):
    images: str = field(help="training images: an ImageFolder tree, a flat folder or a list file", positional=True)
    out: str = field(
        help="output folder (checkpoint.pt, metrics.jsonl, tb/, samples/, tokenizer.safetensors)",
        metavar="DIR",
        **_OUTPUT,
    )
    preset: str = field("vitvq-tiny", help=f"model size: {', '.join(PRESETS)}", choices=tuple(PRESETS), metavar="NAME")
    config: str | None = field(
        None, help="enhancing-transformers ViTVQ yaml giving the model sizes (overrides --preset)", metavar="YAML"
    )
    image_size: int | None = field(None, help="train at this image size instead of the preset's", check=at_least(1))
    codebook_size: int | None = field(None, help="number of codes instead of the preset's", check=at_least(1))
    code_dim: int | None = field(
        None, help="code dimension instead of the preset's (the token ViT's input channels)", check=at_least(1)
    )
    resize: str = field(
        "squash",
        help="squash: resize to a square (SeiT); crop: shorter side + center crop",
        choices=RESIZE_MODES,
        metavar="{squash,crop}",
    )
    hflip: bool = field(True, help="random horizontal flips")
    steps: int = field(20000, help="optimizer steps in total (a resumed run continues up to this)", check=at_least(1))
    batch_size: int = field(16, help="images per step and process", check=at_least(1))
    lr: float = field(1e-4, help="peak learning rate (AdamW, betas 0.9/0.99)", check=positive)
    min_lr: float = field(1e-5, help="learning rate at the end of the cosine decay", check=non_negative)
    warmup_steps: int = field(500, help="linear warm-up steps", check=non_negative)
    weight_decay: float = field(1e-4, help="AdamW weight decay on weight matrices and kernels", check=non_negative)
    grad_clip: float = field(
        1.0,
        help="clip the gradient norm to this (0: off)",
        check=non_negative,
        flag="clip_grad",
        hidden=("--grad-clip",),
    )
    l2_weight: float = field(1.0, help="weight of the L2 reconstruction loss", check=non_negative)
    l1_weight: float = field(0.0, help="weight of an L1 reconstruction loss", check=non_negative)
    codebook_weight: float = field(1.0, help="weight of the codebook + commitment loss", check=non_negative)
    beta: float = field(
        0.25,
        help="weight of the codebook term inside that loss (as the reference; unused with --codebook-ema)",
        check=non_negative,
    )
    codebook_ema: float | None = field(
        None,
        help="move each code to an exponential moving average (this decay, e.g. 0.99) of the encoder outputs "
        "assigned to it instead of by gradient (default: by gradient)",
        metavar="DECAY",
        check=between(0, 1, include_lo=False, include_hi=False),
    )
    perceptual_weights: str | None = field(
        None, help="VGG16 weights (torchvision state dict) to add a perceptual loss", metavar="PATH"
    )
    lpips_weights: str | None = field(
        None, help="LPIPS VGG linear heads (lpips' vgg.pth) for the perceptual loss", metavar="PATH"
    )
    perceptual_weight: float = field(0.1, help="weight of the perceptual loss", check=non_negative)
    disc_start: int | None = field(
        None, help="add a PatchGAN adversarial loss from this step (default: none)", check=non_negative
    )
    adversarial_weight: float = field(
        0.1, help="weight of the adversarial loss (times the adaptive factor)", check=non_negative
    )
    disc_layers: int = field(3, help="strided layers of the PatchGAN discriminator", check=at_least(1))
    dead_code_steps: int = field(
        200, help="restart codes unused for this many steps from encoder outputs (0: off)", check=non_negative
    )
    eval_every: int = field(1000, help="evaluate and write a sample grid every this many steps", check=at_least(1))
    eval_images: int = field(16, help="images in the fixed evaluation batch", check=at_least(1))
    val_images: str | None = field(
        None, help="evaluate on these images (default: some training images)", metavar="IMAGES"
    )
    save_every: int = field(1000, help="write checkpoint.pt every this many steps", check=at_least(1))
    log_every: int = field(10, help="append a log.jsonl line every this many steps", check=at_least(1))
    num_workers: int | None = field(
        None, help="image-decoding worker processes (default: up to 8 cores)", check=non_negative
    )
    precision: str = _amp_option()
    device: str | None = field(None, help="cuda, cuda:N or cpu (default: this rank's GPU if any)", metavar="DEVICE")
    seed: int = field(0, help="seed for the initial weights, data order, flips and code restarts", check=non_negative)
    resume: str | None = resume_field("checkpoint.pt")
    restart: bool = restart_field()
    tensorboard: bool = field(True, help="write TensorBoard event files to OUTPUT/tb")

    def __post_init__(self) -> None:
        if isinstance(self.resume, bool):  # the Python API's former switch: True meant "auto"
            self.resume = "auto" if self.resume else None
        super().__post_init__()


def _yaml_option():
    return field(
        None, help="enhancing-transformers ViTVQ yaml with the dimensions of a foreign checkpoint", metavar="YAML"
    )


def _legacy_option():
    return field(
        False, help="admit SeiT's pickled tokenizer module through an allow-list unpickler (trusted files only)"
    )


@dataclass
class EvalConfig(Checked):
    images: str = field(help="images: an ImageFolder tree, a flat folder or a list file", positional=True)
    tokenizer: str = field(help=TOKENIZER_HELP, metavar="PATH")
    config: str | None = _yaml_option()
    allow_legacy_pickle: bool = _legacy_option()
    max_images: int | None = field(
        None, help="evaluate on this many images, evenly spread over the sorted list", check=at_least(1)
    )
    batch_size: int = field(32, help="images per batch", check=at_least(1))
    num_workers: int | None = field(
        None, help="image-decoding worker processes (default: up to 8 cores)", check=non_negative
    )
    resize: str = field(
        "squash",
        help="squash: resize to a square (SeiT); crop: shorter side + center crop",
        choices=RESIZE_MODES,
        metavar="{squash,crop}",
    )
    precision: str = _amp_option()
    device: str | None = field(None, help="cuda, cuda:N or cpu (default: the GPU if any)", metavar="DEVICE")
    grid: str | None = field(None, help="write a PNG of originals over reconstructions here", metavar="PNG")
    grid_images: int = field(8, help="images in that PNG", check=at_least(1))
    json: str | None = json_field("the figures (printed as JSON either way; PATH: also written there)")
    skipped: str | None = field(
        None, help="write the unreadable images (JSONL: key, path, kind, reason) here", metavar="PATH"
    )


@dataclass
class InfoConfig(Checked):
    tokenizer: str = field(help=TOKENIZER_HELP, positional=True)
    config: str | None = _yaml_option()
    allow_legacy_pickle: bool = _legacy_option()
    json: str | None = json_field("the description instead of text")


@dataclass
class ConvertConfig(Checked):
    tokenizer: str = field(help=TOKENIZER_HELP, positional=True)
    out: str = field(
        help="write our format here (.safetensors file, or a folder for tokenizer.safetensors)",
        metavar="PATH",
        **_OUTPUT,
    )
    config: str | None = _yaml_option()
    allow_legacy_pickle: bool = _legacy_option()


@dataclass
class TokenizeConfig(ResumesInPlace):
    """``seit tokenize``: images -> token store (fields are the CLI flags)."""

    images: str = field(
        help="images: an ImageFolder tree (class = first-level folder), a flat folder (unlabelled) or a list "
        "file of 'path [label]' lines",
        positional=True,
    )
    tokenizer: str = field(help=TOKENIZER_HELP, metavar="PATH")
    out: str = field(
        help="output token store directory (new, or the same directory to continue an interrupted run)",
        metavar="STORE",
        **_OUTPUT,
    )
    root: str | None = field(
        None, help="folder that relative paths of a list file start from (default: its folder)", metavar="DIR"
    )
    config: str | None = _yaml_option()
    allow_legacy_pickle: bool = _legacy_option()
    resize: str = field(
        "squash",
        help="squash: bicubic resize to the tokenizer's square image size (SeiT); crop: shorter side to that "
        "size, then center crop",
        choices=RESIZE_MODES,
        metavar="{squash,crop}",
    )
    max_pixels: int = field(
        DEFAULT_MAX_PIXELS,
        help="skip (or, for JPEG, decode at reduced scale) images with more pixels than this",
        check=at_least(1),
    )
    batch_size: int = field(64, help="images per encoder batch and process", check=at_least(1))
    num_workers: int | None = field(
        None,
        help="image-decoding worker processes per process (default: all cores, shared by the node's ranks)",
        check=non_negative,
    )
    device: str | None = field(None, help="cuda, cuda:N or cpu (default: this rank's GPU if any)", metavar="DEVICE")
    precision: str = _amp_option()
    shard_mb: float = field(128.0, help="target size of a store shard in MB", metavar="MB", check=positive)
    codec: str | None = field(
        None, help="codec of the store (default: the store's default; see docs/store-codec.md)", metavar="NAME"
    )
    prune: bool = field(
        False, help="keep only the codes the images use (SeiT's 8192 -> 391), renumbered in tokenizer-id order"
    )
    codes_from: str | None = field(
        None,
        help="map the ids onto the (pruned) codebook of this train store; codes it lacks go to the nearest "
        "kept code (cosine similarity): for validation/test splits",
        metavar="STORE",
    )
    synonyms: int | None = field(
        None,
        help="also build the top-K synonym table (Token-EDA) from the final codebook",
        metavar="K",
        check=at_least(1),
    )
    resume: str | None = resume_in_place_field("OUTPUT", kept="the durable shards in OUTPUT (a finished store: all)")
    restart: bool = restart_field()


@dataclass
class DecodeConfig(Checked):
    """``seit decode``: stored ids -> PNG images through the tokenizer's decoder."""

    store: str = field(help="token store (a directory or any fsspec URL)", positional=True)
    tokenizer: str = field(help=TOKENIZER_HELP + " (the one that made the store)", metavar="PATH")
    out: str | None = field(None, help="write one PNG per sample into this folder", metavar="DIR", **_OUTPUT)
    indices: list[int] | None = field(
        None, help="store indices of the samples to decode", metavar="I", check=each(non_negative)
    )
    count: int = field(16, help="without --indices: this many samples, evenly spread over the store", check=at_least(1))
    grid: str | None = field(None, help="also write all decoded samples as one PNG grid here", metavar="PNG")
    config: str | None = _yaml_option()
    allow_legacy_pickle: bool = _legacy_option()
    batch_size: int = field(32, help="samples per decoder batch", check=at_least(1))
    device: str | None = field(None, help="cuda, cuda:N or cpu (default: the GPU if any)", metavar="DEVICE")
