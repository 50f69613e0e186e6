"""TokenAdapt (SeiT++): training the pair (``seit tokenadapt train``) and reading its files.

The model is :class:`seit.models.tokenadapt.TokenAdapt`; the augmentation that uses it in pre-training is
:func:`seit.augment.tokenadapt.tokenadapt_augment`. Names load lazily, so ``seit.tokenadapt.config``
(used to build the CLI) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GeometryConfig": "config",
    "TokenAdaptTrainConfig": "config",
    "load_tokenadapt": "checkpoint",
    "save_tokenadapt": "checkpoint",
    "train_tokenadapt": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seit.tokenadapt' has no attribute {name!r}")
    return getattr(importlib.import_module(f"seit.tokenadapt.{_EXPORTS[name]}"), name)
