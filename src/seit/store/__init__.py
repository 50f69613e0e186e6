"""Token stores: the sharded, per-sample-coded dataset format every stage of seit reads and writes.

Writing: :class:`StoreWriter` (resumable, multi-part) and :func:`merge_parts`; editing: :func:`set_codebook`,
:func:`set_synonyms`, :func:`remap_store`; reading: :class:`TokenStore` (random access), :class:`TokenDataset`
(map-style, batched ``__getitems__``), :class:`TokenStream` (iterable, any fsspec URL); order:
:class:`ElasticBatchSampler`; checking: :func:`verify_store`. Format: docs/store-format.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from seit.store.codec import CODECS, Codec, codec_class
from seit.store.edit import remap_store, set_codebook, set_synonyms
from seit.store.errors import StoreError
from seit.store.order import EpochOrder, GlobalBatches
from seit.store.reader import TokenStore
from seit.store.verify import verify_store
from seit.store.writer import StoreWriter, merge_parts

# torch-based readers load on first use, so writing a store does not import torch
_LAZY = {
    "TokenDataset": "seit.store.dataset",
    "collate": "seit.store.dataset",
    "ElasticBatchSampler": "seit.store.sampler",
    "EvalBatchSampler": "seit.store.sampler",
    "StepBatchSampler": "seit.store.sampler",
    "TokenStream": "seit.store.stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seit.store' has no attribute {name!r}")


__all__ = [
    "CODECS",
    "Codec",
    "EpochOrder",
    "GlobalBatches",
    "StoreError",
    "StoreWriter",
    "TokenStore",
    "codec_class",
    "merge_parts",
    "remap_store",
    "set_codebook",
    "set_synonyms",
    "verify_store",
    *_LAZY,
]
