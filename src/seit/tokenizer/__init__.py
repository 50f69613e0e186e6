"""The ViT-VQGAN tokenizer: images <-> grids of codebook ids (model, files, training, batch encoding,
tokenizing image collections into token stores, pruning and mapping codebooks, decoding stores).

Names are imported lazily, so ``seit.tokenizer.config`` (used to build the CLI) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PRESETS": "config",
    "EvalConfig": "config",
    "TokenizerConfig": "config",
    "TokenizerError": "config",
    "TrainConfig": "config",
    "TransformerConfig": "config",
    "preset": "config",
    "Tokenizer": "model",
    "load_tokenizer": "checkpoint",
    "read_tokenizer": "checkpoint",
    "save_tokenizer": "checkpoint",
    "SkipRecord": "encode",
    "encode_images": "encode",
    "summarize_skips": "encode",
    "write_skip_report": "encode",
    "evaluate_tokenizer": "evaluate",
    "decode_to_images": "render",
    "write_comparison": "render",
    "write_png": "render",
    "DecodeConfig": "config",
    "DecodeResult": "render",
    "decode_samples": "render",
    "store_ids_to_tokenizer": "render",
    "TokenizeConfig": "config",
    "TokenizeResult": "to_store",
    "tokenize": "to_store",
    "PruneResult": "codes",
    "add_synonyms": "codes",
    "code_lookup": "codes",
    "prune_store": "codes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seit.tokenizer' has no attribute {name!r}")
    return getattr(importlib.import_module(f"seit.tokenizer.{_EXPORTS[name]}"), name)
