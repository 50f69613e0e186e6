"""The synonym table Token-EDA draws from: each code's nearest codes (SeiT's ``synonyms.json``).

Reading SeiT's files (``codebook.ckpt``, ``synonyms.json``) lives in :mod:`seit.interop.seit_release`.
"""

from __future__ import annotations

import torch


def synonyms_from_codebook(codebook: torch.Tensor, k: int = 10, chunk_rows: int = 1024) -> torch.Tensor:
    """Each code's k most similar codes by cosine similarity, most similar (itself) first: SeiT's table.

    The code itself is put first even when another row is identical to it; rows are processed
    ``chunk_rows`` at a time so an unpruned 8192-code book needs no 8192 x 8192 matrix.
    """
    unit = torch.nn.functional.normalize(torch.as_tensor(codebook).float(), dim=1)
    k = min(k, unit.shape[0])
    out = []
    for start in range(0, unit.shape[0], chunk_rows):
        sim = unit[start : start + chunk_rows] @ unit.T
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + start] = float("inf")
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long)
