"""Tokenizer files: our own format (safetensors + config) and every foreign form a user may hold.

Our format is one ``.safetensors`` file whose metadata holds the :class:`TokenizerConfig` as JSON (a
directory holding ``tokenizer.safetensors`` works too). Also read: our training checkpoints,
enhancing-transformers Lightning ``.ckpt`` files (dimensions from ``--config yaml`` or inferred from the
shapes), bare ViTVQ state dicts, and, only with ``allow_legacy_pickle=True``, SeiT's pickled module.
Nothing is unpickled with code: torch files load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seit.config import from_dict, to_dict
from seit.interop import enhancing, legacy
from seit.tokenizer.config import TokenizerConfig, TokenizerError
from seit.tokenizer.model import Tokenizer, count_parameters
from seit.utils.serialization import (
    LEGACY_PICKLE_HINT,
    CheckpointError,
    read_safetensors,
    safe_torch_load,
    save_weights,
)

FORMAT = "seit-tokenizer/1"
TRAIN_FORMAT = "seit-tokenizer-train/1"
FILE_NAME = "tokenizer.safetensors"


@dataclass
class TokenizerSource:
    """What a tokenizer file held: its config, its weights and a one-line description of the form."""

    config: TokenizerConfig
    state_dict: dict[str, torch.Tensor]
    kind: str


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> Path:
    """Write ``tokenizer`` atomically as safetensors with its config; a directory gets ``tokenizer.safetensors``."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / FILE_NAME
    metadata = {"format": FORMAT, "config": json.dumps(to_dict(tokenizer.config))}
    save_weights(tokenizer.state_dict(), path, metadata=metadata)
    return path


def read_tokenizer(
    path: str | os.PathLike, *, config: str | os.PathLike | None = None, allow_legacy_pickle: bool = False
) -> TokenizerSource:
    """Config and weights from any supported tokenizer file, without building the model."""
    path = Path(path)
    if path.is_dir():
        inner = path / FILE_NAME
        if not inner.is_file():
            raise TokenizerError(f"{path}: a tokenizer folder must hold {FILE_NAME} (as seit tokenizer train writes)")
        path = inner
    if not path.is_file():
        raise TokenizerError(f"{path}: no such tokenizer file")
    yaml_config = enhancing.config_from_yaml(config) if config is not None else None
    if is_safetensors(path):
        return _read_safetensors(path, yaml_config)
    try:
        obj = safe_torch_load(path, code_hint=LEGACY_PICKLE_HINT)
    except CheckpointError:
        if not allow_legacy_pickle:
            raise
        return _read_legacy(path, yaml_config)
    if isinstance(obj, dict) and obj.get("format") == TRAIN_FORMAT:
        return TokenizerSource(_config_from_json(obj["config"], path), obj["model"], "seit training checkpoint")
    sd = enhancing.vitvq_state_dict(obj, path)
    kind = "enhancing-transformers Lightning checkpoint" if "state_dict" in obj else "ViTVQ state dict"
    return TokenizerSource(yaml_config or enhancing.config_from_state_dict(sd, path), sd, kind)


def load_tokenizer(
    path: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    allow_legacy_pickle: bool = False,
    device: str | torch.device = "cpu",
) -> Tokenizer:
    """A ready tokenizer (eval mode) from any file :func:`read_tokenizer` understands.

    ``config``: an enhancing-transformers yaml giving the dimensions of a foreign checkpoint.
    ``allow_legacy_pickle``: admit SeiT's pickled module through the allow-listed unpickler.
    """
    src = read_tokenizer(path, config=config, allow_legacy_pickle=allow_legacy_pickle)
    with torch.device("meta"):
        model = Tokenizer(src.config)
    _check_keys(model, src, path)
    model.load_state_dict(src.state_dict, strict=True, assign=True)
    return model.to(device).eval()


def _check_keys(model: Tokenizer, src: TokenizerSource, path: str | os.PathLike) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in src.state_dict.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            details.append(f"{len(wrong)} with other shapes (e.g. {k}: file {found[k]}, config {expected[k]})")
        raise TokenizerError(
            f"{path}: weights do not fit the config {src.config} ({'; '.join(details)}); "
            "pass the yaml the model was trained with (--config) or check the file"
        )


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30)


def _read_safetensors(path: Path, yaml_config: TokenizerConfig | None) -> TokenizerSource:
    sd, metadata = read_safetensors(path)
    if yaml_config is not None:
        return TokenizerSource(yaml_config, enhancing.vitvq_state_dict(sd, path), "safetensors with yaml config")
    if "config" in metadata:
        return TokenizerSource(_config_from_json(metadata["config"], path), sd, "seit tokenizer")
    sd = enhancing.vitvq_state_dict(sd, path)
    return TokenizerSource(enhancing.config_from_state_dict(sd, path), sd, "safetensors ViTVQ weights")


def _read_legacy(path: Path, yaml_config: TokenizerConfig | None) -> TokenizerSource:
    obj = legacy.load_legacy_pickle(path)
    sd = enhancing.vitvq_state_dict(legacy.module_state_dict(obj), path)
    kind = f"legacy pickled module ({legacy.root_class_path(obj)})"
    return TokenizerSource(yaml_config or enhancing.config_from_state_dict(sd, path), sd, kind)


def _config_from_json(data: Any, path: Path) -> TokenizerConfig:
    try:
        return from_dict(TokenizerConfig, json.loads(data) if isinstance(data, str) else data)
    except (ValueError, TypeError) as e:
        raise TokenizerError(f"{path}: tokenizer config unreadable ({e}); was it written by a newer seit?") from e


def describe_tokenizer(
    path: str | os.PathLike, *, config: str | os.PathLike | None = None, allow_legacy_pickle: bool = False
) -> dict[str, Any]:
    """File, format, config, id grid and parameter counts of a tokenizer file (JSON-ready)."""
    src = read_tokenizer(path, config=config, allow_legacy_pickle=allow_legacy_pickle)
    with torch.device("meta"):
        model = Tokenizer(src.config)
    _check_keys(model, src, path)
    return {
        "file": str(path),
        "format": src.kind,
        "config": to_dict(src.config),
        "grid_shape": list(src.config.grid_shape),
        "parameters": count_parameters(model),
    }
