"""Mixed precision: bf16 autocast on CUDA by default, float32 on CPU unless bf16 is asked for."""

from __future__ import annotations

import contextlib

import torch

from seit.tokenizer.config import PRECISIONS, TokenizerError


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """``fp32`` or ``bf16``: what ``precision`` means on ``device``."""
    if precision not in PRECISIONS:
        raise TokenizerError(f"precision {precision!r} not in {PRECISIONS}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return "fp32" if precision == "none" else precision


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (a null context for float32)."""
    if resolve_precision(device, precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
