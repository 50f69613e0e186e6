"""SeiT's classifier checkpoints (timm 0.5.4, ``{"model": state_dict, ...}``) as timm >= 1.0 token ViTs.

SeiT's ``TokenVisionTransformer`` pooled the patch tokens and then applied ``norm``; timm >= 1.0 expresses
the same model as ``global_pool="avg"`` with the LayerNorm after the pool named ``fc_norm`` (its ``norm``
is then an Identity). Every other key (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.N.*``,
``head``) is named the same in both versions. Checkpoints are read with ``weights_only=True``; the only
non-tensor class admitted is ``argparse.Namespace``, which SeiT's training checkpoints store as ``args``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from seit.utils.serialization import CheckpointError, safe_torch_load

# SeiT (timm 0.5.4) name -> timm >= 1.0 name, for the keys that moved.
SEIT_TO_TIMM = {"norm.weight": "fc_norm.weight", "norm.bias": "fc_norm.bias"}
TIMM_TO_SEIT = {v: k for k, v in SEIT_TO_TIMM.items()}
_STATE_KEYS = ("model", "model_ema", "state_dict")  # where training checkpoints keep the weights
_HEAD_DIM = 64  # DeiT's attention head width: num_heads = embed_dim // 64
_SIZE_NAMES = {192: "tiny", 384: "small", 768: "base"}


def read_seit_state_dict(
    source: str | os.PathLike | Mapping[str, Any], key: str | None = None
) -> dict[str, torch.Tensor]:
    """The classifier weights inside a SeiT checkpoint file or loaded dict.

    Accepts ``trained-vit.ckpt`` / ``checkpoint.pth`` (``{"model": ...}``), a bare state dict, and DDP-saved
    ``module.`` prefixes. ``key`` picks the entry (e.g. ``"model_ema"``); by default ``model``.
    """
    name = str(source) if isinstance(source, str | os.PathLike) else "state dict"
    if isinstance(source, str | os.PathLike):
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = safe_torch_load(Path(source))
    else:
        obj = source
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: expected a dict of weights, found {type(obj).__name__}")
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"{name}: has no entry {key!r}; entries: {sorted(map(str, obj))}")
        obj = obj[key]
    else:
        for candidate in _STATE_KEYS:
            if isinstance(obj.get(candidate), Mapping):
                obj = obj[candidate]
                break
    tensors = {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if "patch_embed.proj.weight" not in tensors:
        raise CheckpointError(
            f"{name}: not a ViT classifier state dict (no patch_embed.proj.weight; keys: {sorted(tensors)[:8]}...). "
            "Pass key='model' / 'model_ema' if the weights sit under another entry."
        )
    return tensors


def convert_seit_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SeiT / timm 0.5.4 key names -> timm >= 1.0 names (``norm`` after the pool -> ``fc_norm``)."""
    return {SEIT_TO_TIMM.get(k, k): v for k, v in state_dict.items()}


def to_seit_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`convert_seit_state_dict`: weights SeiT's own ``models.py`` can load."""
    return {TIMM_TO_SEIT.get(k, k): v for k, v in state_dict.items() if k not in ("norm.weight", "norm.bias")}


def infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> tuple[str | None, dict[str, Any]]:
    """Registered model name and constructor arguments that reproduce a checkpoint's shapes.

    The name is ``None`` when the width is not a DeiT size (then the caller names a model family and gives
    ``num_heads``, which shapes cannot reveal).
    """
    proj = state_dict["patch_embed.proj.weight"]
    embed_dim, in_chans, kernel = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[-1])
    token = kernel != 16 or in_chans != 3
    stride = 2 if token else 16
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
    name = f"deit_{size}_token_{in_chans}" if token else f"deit_{size}_pixel_16"
    return name, args


def load_seit_classifier(
    source: str | os.PathLike | Mapping[str, Any],
    model_name: str | None = None,
    *,
    key: str | None = None,
    **model_kwargs: Any,
) -> torch.nn.Module:
    """A timm token ViT holding the weights of a SeiT classifier checkpoint, in eval mode.

    ``model_name`` defaults to the architecture inferred from the shapes (``deit_{small,base}_token_{32,4}``
    for the released models); ``model_kwargs`` override constructor arguments, e.g. ``img_size=29`` for an
    odd crop (shapes give only ``2 * grid``) or ``num_heads`` for a non-DeiT width.
    """
    import timm

    import seit.models  # registers the token models

    name = str(source) if isinstance(source, str | os.PathLike) else "state dict"
    state = convert_seit_state_dict(read_seit_state_dict(source, key=key))
    inferred_name, args = infer_architecture(state)
    model_name = model_name or inferred_name
    args.update(model_kwargs)
    if model_name is None:
        raise CheckpointError(
            f"{name}: width {args['embed_dim']} is not a DeiT size (192/384/768); name the model family and the "
            "head count, e.g. load_seit_classifier(path, 'deit_tiny_token_32', num_heads=...)"
        )
    if "num_heads" not in args:
        raise CheckpointError(f"{name}: width {args['embed_dim']} is not a DeiT size; pass num_heads=...")
    if not timm.is_model(model_name):
        raise CheckpointError(f"{model_name}: unknown model; token models: {', '.join(seit.models.TOKEN_MODELS)}")
    channels = timm.models.get_pretrained_cfg(model_name).input_size[0]
    if "in_chans" not in model_kwargs and args["in_chans"] != channels:
        raise CheckpointError(
            f"{name}: holds a stem for {args['in_chans']} input channels but {model_name} takes {channels}; "
            f"leave model_name out to infer it, or name the matching *_{args['in_chans']} model"
        )
    try:
        model = timm.create_model(model_name, **args)
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{name}: does not fit {model_name} ({args}): {str(e).splitlines()[0]}") from e
    return model.eval()
