"""The synonym table Token-EDA draws from: each code's nearest codes (SeiT's ``synonyms.json``).

Reading SeiT's files (``codebook.ckpt``, ``synonyms.json``) lives in :mod:`seit.interop.seit_release`.
"""

from __future__ import annotations

import torch


def synonyms_from_codebook(codebook: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Each code's k most similar codes by cosine similarity, most similar (itself) first: SeiT's table."""
    unit = torch.nn.functional.normalize(codebook.float(), dim=1)
    return (unit @ unit.T).topk(min(k, codebook.shape[0]), dim=1).indices
