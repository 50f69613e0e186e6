"""TokenAdapt files: seit's own (safetensors + config, as tokenizers and classifiers) and SeiT++'s.

``tokenadapt.safetensors`` holds the pair's weights in SeiT++'s parameter names and the
:class:`TokenAdaptConfig` as JSON metadata. :func:`load_tokenadapt` reads it (or its folder, or a
``seit tokenadapt train`` checkpoint) and SeiT++'s ``tokenadapt.ckpt`` / MTM checkpoints, one loader for
every form.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from seit.config import from_dict, to_dict
from seit.interop.seitpp_checkpoints import load_tokenadapt as load_released
from seit.interop.seitpp_checkpoints import tokenadapt_from_state_dict
from seit.models.tokenadapt import TokenAdapt, TokenAdaptConfig
from seit.tokenizer.checkpoint import is_safetensors
from seit.utils.serialization import CheckpointError, read_safetensors, safe_torch_load, save_weights

FORMAT = "seit-tokenadapt/1"
TRAIN_FORMAT = "seit-tokenadapt-train/1"
FILE_NAME = "tokenadapt.safetensors"


def save_tokenadapt(model: TokenAdapt, path: str | os.PathLike) -> Path:
    """Write ``model`` atomically as safetensors with its config; a folder gets ``tokenadapt.safetensors``."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / FILE_NAME
    save_weights(model.state_dict(), path, metadata={"format": FORMAT, "config": json.dumps(to_dict(model.config))})
    return path


def load_tokenadapt(path: str | os.PathLike, device: str | torch.device = "cpu") -> TokenAdapt:
    """A TokenAdapt pair (eval mode) from seit's file, its folder or training checkpoint, or SeiT++'s files."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no such TokenAdapt file (seit tokenadapt train writes OUTPUT/{FILE_NAME})")
    if is_safetensors(path):
        return _read_safetensors(path).to(device)
    try:
        obj = safe_torch_load(path)
    except CheckpointError:
        obj = None  # SeiT++'s checkpoints hold argparse.Namespace: the released reader admits it
    if isinstance(obj, dict) and obj.get("format") == TRAIN_FORMAT:
        model = tokenadapt_from_state_dict(obj["model"], name=str(path), config=_config(obj["config"], path))
    else:
        model = load_released(path)
    return model.to(device)


def _read_safetensors(path: Path) -> TokenAdapt:
    state, metadata = read_safetensors(path)
    if metadata.get("format", FORMAT) != FORMAT:
        raise CheckpointError(
            f"{path}: not a seit TokenAdapt file (format {metadata['format']!r}, expected {FORMAT!r})"
        )
    config = _config(metadata["config"], path) if "config" in metadata else None
    return tokenadapt_from_state_dict(state, name=str(path), config=config)


def _config(data: str | dict, path: Path) -> TokenAdaptConfig:
    try:
        return from_dict(TokenAdaptConfig, json.loads(data) if isinstance(data, str) else data)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: TokenAdapt config unreadable ({e}); was it written by a newer seit?") from e
