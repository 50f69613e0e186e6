"""Our classifier weights: safetensors plus the architecture in the file's metadata (no pickle)."""

from __future__ import annotations

import json
import os
from typing import Any

import safetensors
import torch
from torch import nn

from seit.utils.serialization import CheckpointError, load_weights, save_weights

FORMAT = "seit.classifier/1"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def model_config(model: nn.Module) -> dict[str, Any]:
    """The registered name and constructor arguments that rebuild ``model`` (read from the model itself)."""
    model = unwrap(model)
    block = model.blocks[0]
    return {
        "architecture": model.pretrained_cfg["architecture"],
        "img_size": list(model.patch_embed.img_size),
        "in_chans": int(model.patch_embed.proj.in_channels),
        "num_classes": int(model.num_classes),
        "embed_dim": int(model.embed_dim),
        "depth": len(model.blocks),
        "num_heads": int(block.attn.num_heads),
        "mlp_ratio": block.mlp.fc1.out_features / model.embed_dim,
        "qkv_bias": block.attn.qkv.bias is not None,
        "global_pool": model.global_pool,
    }


def save_model(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Weights as safetensors (atomically), with the architecture so :func:`load_model` needs nothing else."""
    meta = {"format": FORMAT, "config": json.dumps(model_config(model)), **(metadata or {})}
    save_weights(unwrap(model).state_dict(), path, metadata=meta)


def read_model_config(path: str | os.PathLike) -> dict[str, Any]:
    """The architecture a :func:`save_model` file records."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a seit classifier file (format {meta.get('format')!r}, expected {FORMAT!r}); SeiT's "
            "own checkpoints load with seit.interop.seit_checkpoints.load_seit_classifier"
        )
    return json.loads(meta["config"])


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", **overrides: Any) -> nn.Module:
    """Rebuild a classifier saved by :func:`save_model` (eval mode); ``overrides`` e.g. ``drop_path_rate``."""
    import timm

    import seit.models  # noqa: F401  (registers the token models)

    config = read_model_config(path)
    architecture = config.pop("architecture")
    model = timm.create_model(architecture, **{**config, **overrides})
    try:
        model.load_state_dict(load_weights(path), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {architecture}: {str(e).splitlines()[0]}") from e
    return model.to(device).eval()
