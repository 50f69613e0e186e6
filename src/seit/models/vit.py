"""Token ViTs (``deit_{tiny,small,base}_token_{32,4}``) and their pixel baselines, in timm's registry.

A token model is timm's ``VisionTransformer`` with three choices fixed by SeiT: the Stem-Adaptor as patch
embedding, global average pooling over the patch tokens (the class token is kept but excluded from the
pool, as in SeiT), and the final LayerNorm applied after the pool (timm's ``fc_norm``). The suffix is the
codebook dimension, i.e. the input channels (32 for ViT-VQGAN codes, 4 for SeiT's 4-dim codebook).
``img_size`` is the token-crop size m (default 28 = SeiT's crop of a 32x32 grid).

The pixel baselines ``deit_{tiny,small,base}_pixel_16`` are the same transformers with a 16 px patch stem on
3-channel images and the same pooling, so a 224 px model has the same 196-token sequence as a 28x28 token
model and the two can be compared at equal compute. ``deit_*_pixel_8`` take 8 px patches (the same sequence
from images of half the side): on small budgets a plain ViT learns from 8 px patches far sooner.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import timm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

from seit.errors import ConfigError, SeitError
from seit.models.mtm import MTM_MODELS
from seit.models.stem import StemAdaptor

# DeiT widths: name -> (embed_dim, num_heads); every size has depth 12, MLP ratio 4, 64-dim heads.
DEIT_SIZES: dict[str, tuple[int, int]] = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
TOKEN_CROP = 28  # SeiT: 224 px / 8 px per token = 28 tokens, cropped from the 32x32 grid
TOKEN_MODELS = tuple(f"deit_{size}_token_{dim}" for size in DEIT_SIZES for dim in (32, 4))
PIXEL_PATCHES = (16, 8)
PIXEL_MODELS = tuple(f"deit_{size}_pixel_{patch}" for patch in PIXEL_PATCHES for size in DEIT_SIZES)


def _token_cfg(in_chans: int) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (in_chans, TOKEN_CROP, TOKEN_CROP),
        "fixed_input_size": True,
        "crop_pct": 0.875,  # SeiT's eval crop: 28 of 32 tokens
        "mean": (0.0,) * in_chans,  # inputs are codebook vectors, never normalised
        "std": (1.0,) * in_chans,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
    }


def _pixel_cfg(patch: int) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 14 * patch, 14 * patch),  # 196 patches, as SeiT's 28x28 token crop
        "fixed_input_size": True,
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
    }


default_cfgs = generate_default_cfgs(
    {
        **{name: _token_cfg(int(name.rsplit("_", 1)[1])) for name in TOKEN_MODELS},
        **{name: _pixel_cfg(int(name.rsplit("_", 1)[1])) for name in PIXEL_MODELS},
    }
)


def _create(variant: str, pretrained: bool, model_args: dict[str, Any], kwargs: dict[str, Any]) -> VisionTransformer:
    if pretrained:
        raise SeitError(
            f"{variant}: seit downloads no weights. Load a classifier file of seit's or SeiT's released "
            "checkpoint with seit.models.load_classifier(path)."
        )
    return build_model_with_cfg(VisionTransformer, variant, False, **dict(model_args, **kwargs))


def check_model_args(name: str, embed_dim: int | None = None, num_heads: int | None = None) -> None:
    """Fail early, in one line naming the flag, on a model name timm does not know or a width its heads don't divide."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"--model {name!r} is not a registered model{hint} (`seit train --list-models` lists seit's)")
    if name in MTM_MODELS:
        raise ConfigError(
            f"--model {name} is SeiT++'s masked-token pre-training model, not a classifier; train one of "
            "`seit train --list-models` (e.g. deit_base_token_32)"
        )
    deit = re.fullmatch(r"deit_(tiny|small|base)_(token|pixel)_\d+", name)
    if deit and (embed_dim is None) != (num_heads is None):  # one given: the other is the architecture's
        default_dim, default_heads = DEIT_SIZES[deit.group(1)]
        dim, heads = embed_dim or default_dim, num_heads or default_heads
        if dim % heads:
            raise ConfigError(
                f"--embed-dim {dim} must be divisible by --num-heads {heads} ({name} has {default_dim} and "
                f"{default_heads}); set both"
            )


def _token_args(size: str) -> dict[str, Any]:
    embed_dim, num_heads = DEIT_SIZES[size]
    return dict(
        embed_layer=StemAdaptor,
        patch_size=2,
        embed_dim=embed_dim,
        depth=12,
        num_heads=num_heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        global_pool="avg",
    )


def _pixel_args(size: str, patch: int = 16) -> dict[str, Any]:
    embed_dim, num_heads = DEIT_SIZES[size]
    return dict(
        img_size=14 * patch, patch_size=patch, embed_dim=embed_dim, depth=12, num_heads=num_heads, global_pool="avg"
    )


@register_model
def deit_tiny_token_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT-Ti on 32-dim codes (ViT-VQGAN), Stem-Adaptor, GAP."""
    return _create("deit_tiny_token_32", pretrained, _token_args("tiny"), kwargs)


@register_model
def deit_tiny_token_4(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT-Ti on 4-dim codes, Stem-Adaptor, GAP."""
    return _create("deit_tiny_token_4", pretrained, _token_args("tiny"), kwargs)


@register_model
def deit_small_token_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT-S on 32-dim codes (ViT-VQGAN), Stem-Adaptor, GAP (SeiT release)."""
    return _create("deit_small_token_32", pretrained, _token_args("small"), kwargs)


@register_model
def deit_small_token_4(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT-S on 4-dim codes, Stem-Adaptor, GAP (SeiT release)."""
    return _create("deit_small_token_4", pretrained, _token_args("small"), kwargs)


@register_model
def deit_base_token_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT-B on 32-dim codes (ViT-VQGAN), Stem-Adaptor, GAP (SeiT release)."""
    return _create("deit_base_token_32", pretrained, _token_args("base"), kwargs)


@register_model
def deit_base_token_4(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT-B on 4-dim codes, Stem-Adaptor, GAP (SeiT release)."""
    return _create("deit_base_token_4", pretrained, _token_args("base"), kwargs)


@register_model
def deit_tiny_pixel_16(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Pixel baseline for deit_tiny_token_*: DeiT-Ti/16 with the same GAP + fc_norm head."""
    return _create("deit_tiny_pixel_16", pretrained, _pixel_args("tiny"), kwargs)


@register_model
def deit_small_pixel_16(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Pixel baseline for deit_small_token_*: DeiT-S/16 with the same GAP + fc_norm head."""
    return _create("deit_small_pixel_16", pretrained, _pixel_args("small"), kwargs)


@register_model
def deit_base_pixel_16(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Pixel baseline for deit_base_token_*: DeiT-B/16 with the same GAP + fc_norm head."""
    return _create("deit_base_pixel_16", pretrained, _pixel_args("base"), kwargs)


@register_model
def deit_tiny_pixel_8(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """deit_tiny_pixel_16 with 8 px patches (112 px images give 196 tokens)."""
    return _create("deit_tiny_pixel_8", pretrained, _pixel_args("tiny", 8), kwargs)


@register_model
def deit_small_pixel_8(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """deit_small_pixel_16 with 8 px patches (112 px images give 196 tokens)."""
    return _create("deit_small_pixel_8", pretrained, _pixel_args("small", 8), kwargs)


@register_model
def deit_base_pixel_8(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """deit_base_pixel_16 with 8 px patches (112 px images give 196 tokens)."""
    return _create("deit_base_pixel_8", pretrained, _pixel_args("base", 8), kwargs)
