"""Fitting a checkpoint to a model of another grid size or class count (the engine's ``--finetune``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from torch import nn

from seit.utils.serialization import CheckpointError


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """Position embeddings [1, prefix + h*w, D] resized to ``new_grid``, prefix (class) tokens unchanged.

    Bicubic, align_corners=False, no antialiasing: what SeiT's and DeiT's fine-tuning scripts do.
    """
    n = pos_embed.shape[1] - num_prefix_tokens
    side = round(n**0.5)
    if side * side != n:
        raise ValueError(f"pos_embed has {n} patch positions, not a square grid")
    return resample_abs_pos_embed(
        pos_embed,
        new_size=list(new_grid),
        old_size=[side, side],
        num_prefix_tokens=num_prefix_tokens,
        interpolation="bicubic",
        antialias=False,
    )


def reset_head(model: nn.Module, num_classes: int, std: float = 0.02) -> None:
    """A fresh classifier for ``num_classes`` (trunc-normal weights, zero bias as timm's ViT init)."""
    model.reset_classifier(num_classes)
    if isinstance(model.head, nn.Linear):
        trunc_normal_(model.head.weight, std=std)
        nn.init.zeros_(model.head.bias)


def adapt_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A copy of ``state_dict`` that loads into ``model``: returns it and the keys dropped.

    Drops the head (other class count) and the stem (other input channels / kernel) when their shapes
    differ, as SeiT does, and resamples ``pos_embed`` to the model's patch grid.
    """
    own = model.state_dict()
    out = dict(state_dict)
    dropped = []
    for key in ("head.weight", "head.bias", "patch_embed.proj.weight", "patch_embed.proj.bias"):
        if key in out and key in own and out[key].shape != own[key].shape:
            dropped.append(key)
            del out[key]
    if "pos_embed" in out and out["pos_embed"].shape != own["pos_embed"].shape:
        out["pos_embed"] = resample_pos_embed(
            out["pos_embed"], tuple(model.patch_embed.grid_size), model.num_prefix_tokens
        )
    return out, dropped


def load_for_finetune(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Load a pretrained ``state_dict`` into ``model`` for fine-tuning; returns the keys left at their init.

    Anything missing other than the dropped head / stem is an error, so a wrong checkpoint cannot
    silently train from scratch.
    """
    adapted, dropped = adapt_state_dict(state_dict, model)
    try:
        result = model.load_state_dict(adapted, strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint does not fit the model: {str(e).splitlines()[0]}") from e
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if k not in dropped]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not fit the model: missing {missing[:6]}, unexpected {unexpected[:6]} "
            "(is it a classifier of the same family? SeiT checkpoints go through seit.interop.seit_checkpoints)"
        )
    if "head.weight" in dropped:
        reset_head(model, model.num_classes)
    return dropped


# What a masked-token-modeling encoder gives a token ViT. The MTM model's stem reads a learned embedding of the
# ids through a kernel-2 convolution, seit's token ViTs read the codebook's vectors through the Stem-Adaptor
# (kernel 4): there is no stem to carry, so the stem and the head start fresh.
MTM_REINITIALISED = ("patch_embed.proj.weight", "patch_embed.proj.bias", "head.weight", "head.bias")


def mtm_encoder_state(mtm_state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The MTM encoder's weights in ``model``'s names: class token, position table (resampled to the model's
    grid), blocks, and the final norm as the norm after the pool (``fc_norm``, where SeiT++'s classifier applies
    it). The decoder, the token embedding, the mask token and the stem are left behind."""
    out = {k: v for k, v in mtm_state.items() if k.startswith("blocks.") or k in ("cls_token", "pos_embed")}
    pooled_norm = "fc_norm" if isinstance(getattr(model, "fc_norm", None), nn.LayerNorm) else "norm"
    out.update({f"{pooled_norm}.{k[5:]}": v for k, v in mtm_state.items() if k.startswith("norm.")})
    own = model.state_dict()
    if "pos_embed" in out and "pos_embed" in own and out["pos_embed"].shape[1] != own["pos_embed"].shape[1]:
        out["pos_embed"] = resample_pos_embed(out["pos_embed"], tuple(model.patch_embed.grid_size))
    return out


def load_mtm_encoder(model: nn.Module, mtm_state: Mapping[str, torch.Tensor]) -> list[str]:
    """Load an MTM encoder into a token ViT of the same width and depth; returns what starts fresh."""
    try:
        result = model.load_state_dict(mtm_encoder_state(mtm_state, model), strict=False)
    except RuntimeError as e:
        detail = [line.strip() for line in str(e).splitlines() if line.strip()][-1][:300]
        raise CheckpointError(
            f"the pre-trained encoder does not fit the model ({detail}): fine-tune a model of the encoder's width, "
            "depth and heads (--embed-dim, --depth, --num-heads)"
        ) from None
    missing = [k for k in result.missing_keys if k not in MTM_REINITIALISED]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"the pre-trained encoder does not fit the model: missing {missing[:6]}, unexpected "
            f"{list(result.unexpected_keys)[:6]}: fine-tune a model of the encoder's depth (--depth)"
        )
    reset_head(model, model.num_classes)
    return list(MTM_REINITIALISED)


def load_pretrained(model: nn.Module, path: str) -> list[str]:
    """`seit train --finetune PATH`: a classifier (seit's or SeiT's, see ``load_classifier``), or an MTM model
    (`seit pretrain`'s last.pt, or SeiT++'s pre-training checkpoint); returns the keys left at their init."""
    import argparse
    from pathlib import Path

    from seit.interop.seitpp_checkpoints import mtm_checkpoint_filter_fn
    from seit.models.checkpoint import load_classifier
    from seit.utils.serialization import safe_torch_load

    file = Path(path)
    if file.is_file() and file.suffix != ".safetensors":
        with torch.serialization.safe_globals([argparse.Namespace]):  # SeiT++'s checkpoints hold their args
            obj = safe_torch_load(file)
        if isinstance(obj, Mapping) and (obj.get("kind") == "seit.pretrain" or "mask_token_label" in _weights(obj)):
            return load_mtm_encoder(model, mtm_checkpoint_filter_fn(obj, name=str(file)))
    return load_for_finetune(model, load_classifier(path).model.state_dict())


def _weights(obj: Mapping) -> Mapping:
    inner = obj.get("model")
    return inner if isinstance(inner, Mapping) else obj
