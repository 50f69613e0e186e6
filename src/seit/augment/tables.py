"""The two lookup tables augmentation needs: the codebook [K, D] and the synonym table [K, n]."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from seit.augment.config import AugmentError
from seit.utils.serialization import safe_torch_load


def load_codebook(path: str | os.PathLike) -> torch.Tensor:
    """SeiT's ``codebook.ckpt`` (``torch.save`` of a float [K, D] tensor), read with weights_only=True."""
    obj = safe_torch_load(path)
    if isinstance(obj, dict):
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor) and v.ndim == 2]
        obj = tensors[0] if len(tensors) == 1 else obj
    if not isinstance(obj, torch.Tensor) or obj.ndim != 2 or not obj.is_floating_point():
        raise AugmentError(f"{path}: expected a float [num_codes, dim] codebook tensor, found {_describe(obj)}")
    return obj.float()


def load_synonyms(path: str | os.PathLike, num_codes: int | None = None) -> torch.Tensor:
    """SeiT's ``synonyms.json`` ({"<id>": [ids, most similar first]}) as an int64 table [K, n].

    Row i lists code i's synonyms; SeiT's lists start with the code itself.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AugmentError(f"{path}: cannot read the synonym table ({e})") from e
    if not isinstance(raw, dict) or not raw:
        raise AugmentError(f'{path}: expected a JSON object {{"<id>": [ids ...]}}')
    num_codes = num_codes or len(raw)
    missing = [i for i in range(num_codes) if str(i) not in raw]
    if missing:
        raise AugmentError(f"{path}: no synonyms for codes {missing[:8]} (the table must cover all {num_codes} codes)")
    rows = [raw[str(i)] for i in range(num_codes)]
    width = min(len(r) for r in rows)
    if width == 0:
        raise AugmentError(f"{path}: a code has an empty synonym list")
    table = torch.tensor([r[:width] for r in rows], dtype=torch.int64)
    if table.min() < 0 or table.max() >= num_codes:
        raise AugmentError(
            f"{path}: synonym ids must lie in [0, {num_codes}), found {int(table.min())}..{int(table.max())}"
        )
    return table


def synonyms_from_codebook(codebook: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Each code's k most similar codes by cosine similarity, most similar (itself) first: SeiT's table."""
    unit = torch.nn.functional.normalize(codebook.float(), dim=1)
    return (unit @ unit.T).topk(min(k, codebook.shape[0]), dim=1).indices


def _describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a {obj.dtype} tensor of shape {tuple(obj.shape)}"
    return type(obj).__name__
