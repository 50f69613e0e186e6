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
