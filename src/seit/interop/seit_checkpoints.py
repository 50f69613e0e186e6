"""SeiT's classifier checkpoints (timm 0.5.4, ``{"model": state_dict, ...}``) as timm >= 1.0 token ViTs.

SeiT's ``TokenVisionTransformer`` pooled the patch tokens and then applied ``norm``; timm >= 1.0 expresses
the same model as ``global_pool="avg"`` with the LayerNorm after the pool named ``fc_norm`` (its ``norm``
is then an Identity). Every other key (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.N.*``,
``head``) is named the same in both versions. Checkpoints are read with ``weights_only=True``; the only
non-tensor class admitted is ``argparse.Namespace``, which SeiT's training checkpoints store as ``args``.
:func:`seit.models.load_classifier` reads them through :func:`checkpoint_filter_fn`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from seit.utils.serialization import CheckpointError

# SeiT (timm 0.5.4) name -> timm >= 1.0 name, for the keys that moved.
SEIT_TO_TIMM = {"norm.weight": "fc_norm.weight", "norm.bias": "fc_norm.bias"}
TIMM_TO_SEIT = {v: k for k, v in SEIT_TO_TIMM.items()}
_STATE_KEYS = ("model", "model_ema", "state_dict")  # where training checkpoints keep the weights
_HEAD_DIM = 64  # DeiT's attention head width: num_heads = embed_dim // 64
_SIZE_NAMES = {192: "tiny", 384: "small", 768: "base"}


def checkpoint_filter_fn(
    checkpoint: Mapping[str, Any], *, key: str | None = None, name: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The classifier weights of a SeiT checkpoint, in timm >= 1.0 names (timm's checkpoint-filter idiom).

    Accepts ``trained-vit.ckpt`` / ``checkpoint.pth`` as loaded (``{"model": ...}``), a bare state dict, and
    DDP-saved ``module.`` prefixes; renames by :data:`SEIT_TO_TIMM`. ``key`` picks the entry (e.g.
    ``"model_ema"``); by default ``model``. ``name`` is the file, for messages.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{name}: expected a dict of weights, found {type(checkpoint).__name__}")
    if key is not None:
        if key not in checkpoint:
            raise CheckpointError(f"{name}: has no entry {key!r}; entries: {sorted(map(str, checkpoint))}")
        checkpoint = checkpoint[key]
    else:
        for candidate in _STATE_KEYS:
            if isinstance(checkpoint.get(candidate), Mapping):
                checkpoint = checkpoint[candidate]
                break
    tensors = {str(k).removeprefix("module."): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if "patch_embed.proj.weight" not in tensors:
        raise CheckpointError(
            f"{name}: not a ViT classifier state dict (no patch_embed.proj.weight; keys: {sorted(tensors)[:8]}...)"
        )
    return {SEIT_TO_TIMM.get(k, k): v for k, v in tensors.items()}


def to_seit_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`checkpoint_filter_fn`'s renaming: weights SeiT's own ``models.py`` can load."""
    return {TIMM_TO_SEIT.get(k, k): v for k, v in state_dict.items() if k not in ("norm.weight", "norm.bias")}


def infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> tuple[str | None, dict[str, Any]]:
    """Registered model name and constructor arguments that reproduce a checkpoint's shapes.

    The name is ``None`` when the width is not a DeiT size (then the caller names a model family and gives
    ``num_heads``, which shapes cannot reveal).
    """
    proj = state_dict["patch_embed.proj.weight"]
    embed_dim, in_chans, kernel = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[-1])
    token = kernel != 16 or in_chans != 3
    stride = 16 if not token else 1 if kernel == 3 else 2  # kernel 3: seit's stride-1 stem (``..._s1``)
    depth = 1 + max((int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    grid = int(state_dict["pos_embed"].shape[1]) - 1  # one class token
    side = round(grid**0.5)
    if side * side != grid:
        raise CheckpointError(f"pos_embed holds {grid} patch positions, not a square grid")
    args: dict[str, Any] = {
        "in_chans": in_chans,
        "img_size": side * stride,
        "embed_dim": embed_dim,
        "depth": depth,
        "mlp_ratio": int(state_dict["blocks.0.mlp.fc1.weight"].shape[0]) / embed_dim,
        "num_classes": int(state_dict["head.weight"].shape[0]) if "head.weight" in state_dict else 0,
    }
    size = _SIZE_NAMES.get(embed_dim)
    if size is None:
        return None, args
    args["num_heads"] = embed_dim // _HEAD_DIM
    name = f"deit_{size}_token_{in_chans}{'_s1' if stride == 1 else ''}" if token else f"deit_{size}_pixel_16"
    return name, args
