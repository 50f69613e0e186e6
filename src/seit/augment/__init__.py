"""Token augmentation on the training device: batched, per-sample random, reproducible from one generator.

``TokenAugment(config, codebook, synonyms, num_classes=C)`` turns DataLoader batches of ids [B, H, W] into
model inputs [B, D, m, m] with soft targets; the submodules hold the individual operations. The config
imports without torch (the CLI builds its flags from it); the torch parts load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from seit.augment.config import AugmentConfig, AugmentError

_LAZY = {"TokenAugment": "seit.augment.pipeline", "synonyms_from_codebook": "seit.augment.tables"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seit.augment' has no attribute {name!r}")


__all__ = ["AugmentConfig", "AugmentError", *_LAZY]
