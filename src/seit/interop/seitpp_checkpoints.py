"""SeiT++'s checkpoints: the MTM pre-training model and the TokenAdapt pair (``tokenadapt.ckpt``).

SeiT++ saves ``{"model": state_dict, "optimizer", "epoch", "scaler", "args"}`` from ``main_mtm_pretrain.py``;
its MTM model also carries the TokenAdapt pair (``conversion_function.*``, ``reverse_transform.*``), which
seit keeps in its own module: :func:`mtm_checkpoint_filter_fn` returns the MTM weights for
:class:`seit.models.mtm.MaskedTokenViT` and :func:`tokenadapt_state_dict` the pair for
:class:`seit.models.tokenadapt.TokenAdapt`. ``tokenadapt.ckpt`` is the pair alone, loaded by SeiT++ with
``load_state_dict(strict=False)`` into the MTM model, so either file gives a TokenAdapt. All names are
SeiT++'s; files are read with ``weights_only=True`` (``argparse.Namespace`` admitted, for ``args``).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from seit.models.tokenadapt import TokenAdapt, TokenAdaptConfig
from seit.utils.serialization import CheckpointError, safe_torch_load

TOKENADAPT_PREFIXES = ("conversion_function.", "reverse_transform.")
_STATE_KEYS = ("model", "state_dict")
_HEAD_DIM = 64  # enhancing-transformers' attention head width


def _tensors(checkpoint: Any, name: str) -> dict[str, torch.Tensor]:
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{name}: expected a dict of weights, found {type(checkpoint).__name__}")
    for key in _STATE_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    return {str(k).removeprefix("module."): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def mtm_checkpoint_filter_fn(checkpoint: Mapping[str, Any], *, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The MTM model's weights of a SeiT++ pre-training checkpoint (as loaded), without the TokenAdapt pair."""
    tensors = _tensors(checkpoint, name)
    if "mask_token_label" not in tensors or "decoder_embed.weight" not in tensors:
        raise CheckpointError(
            f"{name}: not a SeiT++ MTM pre-training checkpoint (no mask_token_label / decoder_embed; keys: "
            f"{sorted(tensors)[:6]}...); a fine-tuned classifier loads with seit.models.load_classifier"
        )
    return {k: v for k, v in tensors.items() if not k.startswith(TOKENADAPT_PREFIXES)}


def tokenadapt_state_dict(checkpoint: Mapping[str, Any], *, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The TokenAdapt pair of ``tokenadapt.ckpt`` or of a SeiT++ MTM checkpoint, in SeiT++'s names."""
    pair = {k: v for k, v in _tensors(checkpoint, name).items() if k.startswith(TOKENADAPT_PREFIXES)}
    if not pair:
        raise CheckpointError(
            f"{name}: holds no TokenAdapt weights (no conversion_function.* / reverse_transform.* keys); "
            "give SeiT++'s tokenadapt.ckpt or a SeiT++ MTM checkpoint"
        )
    return pair


def tokenadapt_config(state_dict: Mapping[str, torch.Tensor], *, name: str = "checkpoint") -> TokenAdaptConfig:
    """The sizes that reproduce a TokenAdapt state dict's shapes."""
    conv, dec = "conversion_function.0", "conversion_function.1"
    try:
        lift = state_dict[f"{conv}.weight"]
        grid_cells = int(state_dict[f"{dec}.de_pos_embedding"].shape[1])
        crop_cells = int(state_dict["reverse_transform.0.en_pos_embedding"].shape[1])
        head = state_dict[f"{dec}.to_pixel.1.weight"]
        qkv = state_dict[f"{dec}.transformer.layers.0.0.fn.to_qkv.weight"]
        mlp = state_dict[f"{dec}.transformer.layers.0.1.fn.net.0.weight"]
        codebook_size = int(state_dict["reverse_transform.1.weight"].shape[0])
    except KeyError as e:
        raise CheckpointError(f"{name}: TokenAdapt weights incomplete (missing {e.args[0]})") from None
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(rf"{dec}\.transformer\.layers\.(\d+)\.", k)))
    grid, crop = round(grid_cells**0.5), round(crop_cells**0.5)
    if grid * grid != grid_cells or crop * crop != crop_cells:
        raise CheckpointError(f"{name}: TokenAdapt position tables are not square grids ({grid_cells}, {crop_cells})")
    return TokenAdaptConfig(
        code_dim=int(lift.shape[1]),
        codebook_size=codebook_size,
        grid=grid,
        crop=crop,
        dim=int(lift.shape[0]),
        depth=depth,
        heads=int(qkv.shape[0]) // (3 * _HEAD_DIM),
        mlp_dim=int(mlp.shape[0]),
        scale=int(head.shape[-1]),
    )


def tokenadapt_from_state_dict(
    state: Mapping[str, torch.Tensor], *, name: str = "checkpoint", config: TokenAdaptConfig | None = None
) -> TokenAdapt:
    """A TokenAdapt pair (eval mode) from its state dict in SeiT++'s names; sizes read from the shapes unless
    ``config`` gives them."""
    model = TokenAdapt(config or tokenadapt_config(state, name=name))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        problem = str(e).splitlines()[-1].strip()
        raise CheckpointError(f"{name}: TokenAdapt weights do not fit one pair of sizes ({problem})") from None
    return model.eval()


def load_tokenadapt(path: str | os.PathLike) -> TokenAdapt:
    """A TokenAdapt pair from SeiT++'s ``tokenadapt.ckpt`` (or its MTM checkpoint), sizes read from the shapes.

    :func:`seit.tokenadapt.load_tokenadapt` reads these and seit's own files."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = safe_torch_load(path)
    return tokenadapt_from_state_dict(tokenadapt_state_dict(obj, name=str(path)), name=str(path))
