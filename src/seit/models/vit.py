"""Token ViTs (``deit_{tiny,small,base}_token_{32,4}``) and their pixel baselines, in timm's registry.

A token model is timm's ``VisionTransformer`` with three choices fixed by SeiT: the Stem-Adaptor as patch
embedding, global average pooling over the patch tokens (the class token is kept but excluded from the
pool, as in SeiT), and the final LayerNorm applied after the pool (timm's ``fc_norm``). The suffix is the
codebook dimension, i.e. the input channels (32 for ViT-VQGAN codes, 4 for SeiT's 4-dim codebook).
``img_size`` is the token-crop size m (default 28 = SeiT's crop of a 32x32 grid).

The stem's stride 2 suits SeiT's 32x32 grids; a small grid then gives the transformer few patches (an 8x8
grid -> 7x7 crop -> 3x3 patches). ``deit_{tiny,small,base}_token_{32,4}_s1`` are the same models with a
stride-1 stem (kernel 3, padding 1), one patch per code: a 16x16 grid's 14x14 crop gives SeiT's 196 patches
(default ``img_size`` 14). :func:`token_patch_side` gives the patch side for a model and crop, and
:func:`check_token_patches` is ``seit train``'s rule: fewer than 2x2 patches is an error, fewer than 4x4 a
warning, each naming the ``--model`` that fits.

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
STRIDE1_SUFFIX = "_s1"
STRIDE1_CROP = 14  # a 16x16 grid cropped to 14x14: 196 patches at stride 1, as SeiT's 28x28 at stride 2
STRIDE1_TOKEN_MODELS = tuple(name + STRIDE1_SUFFIX for name in TOKEN_MODELS)
MIN_PATCH_SIDE = 2  # fewer patches per side than this: the transformer has no spatial layout left to attend to
FEW_PATCH_SIDE = 4  # fewer than this: the stride-1 variant is worth naming
PIXEL_PATCHES = (16, 8)
PIXEL_MODELS = tuple(f"deit_{size}_pixel_{patch}" for patch in PIXEL_PATCHES for size in DEIT_SIZES)


def _token_cfg(in_chans: int, crop: int = TOKEN_CROP) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (in_chans, crop, crop),
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
        **{name + STRIDE1_SUFFIX: _token_cfg(int(name.rsplit("_", 1)[1]), STRIDE1_CROP) for name in TOKEN_MODELS},
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
    deit = re.fullmatch(r"deit_(tiny|small|base)_(token|pixel)_\d+(_s1)?", name)
    if deit and (embed_dim is None) != (num_heads is None):  # one given: the other is the architecture's
        default_dim, default_heads = DEIT_SIZES[deit.group(1)]
        dim, heads = embed_dim or default_dim, num_heads or default_heads
        if dim % heads:
            raise ConfigError(
                f"--embed-dim {dim} must be divisible by --num-heads {heads} ({name} has {default_dim} and "
                f"{default_heads}); set both"
            )


def token_stem_stride(name: str) -> int | None:
    """The Stem-Adaptor stride of a registered token model name (None: not one of seit's token ViTs)."""
    if name in TOKEN_MODELS:
        return 2
    if name in STRIDE1_TOKEN_MODELS:
        return 1
    return None


def token_patch_side(name: str, crop: int) -> int | None:
    """Patches per side the transformer of token model ``name`` sees on a ``crop`` x ``crop`` token crop."""
    stride = token_stem_stride(name)
    return None if stride is None else crop // stride


def check_token_patches(name: str, crop: int, grid: tuple[int, ...]) -> str | None:
    """``seit train``'s rule for a token model on a grid: an error below 2x2 patches, a warning (returned) below 4x4.

    The message names the ``--model`` that gives the most patches (the stride-1 variant).
    """
    side = token_patch_side(name, crop)
    if side is None or side >= FEW_PATCH_SIDE:
        return None
    finer = None if name in STRIDE1_TOKEN_MODELS else name + STRIDE1_SUFFIX
    where = f"{'x'.join(map(str, grid))} token grid ({crop}x{crop} crop)"
    fix = (
        f"use --model {finer} (a stride-1 stem: {crop}x{crop} patches)"
        if finer and crop >= MIN_PATCH_SIDE
        else "use a store with a larger grid or a larger --crop-size"
    )
    message = f"--model {name} sees only {side}x{side} patches of this {where}; {fix}"
    if side < MIN_PATCH_SIDE:
        raise ConfigError(message)
    return message


def _token_args(size: str, stride: int = 2) -> dict[str, Any]:
    embed_dim, num_heads = DEIT_SIZES[size]
    return dict(
        embed_layer=StemAdaptor,
        patch_size=stride,
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
def deit_tiny_token_32_s1(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """deit_tiny_token_32 with a stride-1 stem (one patch per code): for small token grids."""
    return _create("deit_tiny_token_32_s1", pretrained, _token_args("tiny", 1), kwargs)


@register_model
def deit_tiny_token_4_s1(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """deit_tiny_token_4 with a stride-1 stem (one patch per code): for small token grids."""
    return _create("deit_tiny_token_4_s1", pretrained, _token_args("tiny", 1), kwargs)


@register_model
def deit_small_token_32_s1(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """deit_small_token_32 with a stride-1 stem (one patch per code): for small token grids."""
    return _create("deit_small_token_32_s1", pretrained, _token_args("small", 1), kwargs)


@register_model
def deit_small_token_4_s1(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """deit_small_token_4 with a stride-1 stem (one patch per code): for small token grids."""
    return _create("deit_small_token_4_s1", pretrained, _token_args("small", 1), kwargs)


@register_model
def deit_base_token_32_s1(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """deit_base_token_32 with a stride-1 stem (one patch per code): for small token grids."""
    return _create("deit_base_token_32_s1", pretrained, _token_args("base", 1), kwargs)


@register_model
def deit_base_token_4_s1(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """deit_base_token_4 with a stride-1 stem (one patch per code): for small token grids."""
    return _create("deit_base_token_4_s1", pretrained, _token_args("base", 1), kwargs)


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
