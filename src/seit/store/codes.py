"""What a store's ids mean (owned by the store package): tokenizer ids onto a pruned codebook, pruning stores,
synonym tables.

SeiT keeps only the codes its training split uses (8192 -> 391 for ImageNet) and renumbers them. A
store's ``code_ids`` records which tokenizer code each row is. Every other split, and images classified
at test time, must go through the same rows: :func:`code_lookup` gives the row of every tokenizer id
(its own row when kept, else the nearest kept code by cosine similarity); :func:`prune_store` applies
that to a whole store (``seit tokenize --prune/--codes-from``, ``seit store prune``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seit.augment.tables import synonyms_from_codebook
from seit.interop.seit_release import write_synonyms
from seit.store import StoreError, TokenStore, remap_store, set_synonyms
from seit.store.stats import code_usage


def code_lookup(code_ids, full_codebook, chunk_rows: int = 4096) -> torch.Tensor:
    """The pruned-codebook row of every tokenizer id: LongTensor [K_full].

    ``code_ids`` [K]: the kept tokenizer ids (a store's ``code_ids``); ``full_codebook`` [K_full, D]: the
    tokenizer's codebook. A kept id maps to its own row; any other id to the kept code whose vector has the
    highest cosine similarity with its own (the lowest row on ties). ``lookup[ids]`` turns freshly encoded
    ids into the ids a classifier trained on the pruned store reads.
    """
    full = torch.as_tensor(np.asarray(full_codebook) if not torch.is_tensor(full_codebook) else full_codebook)
    kept = torch.as_tensor(np.asarray(code_ids)).long().reshape(-1)
    if full.ndim != 2 or not full.is_floating_point():
        raise StoreError(f"full_codebook must be a float array [K, D], got {full.dtype} {list(full.shape)}")
    if not len(kept) or kept.min() < 0 or kept.max() >= len(full):
        lo, hi = (int(kept.min()), int(kept.max())) if len(kept) else (0, -1)
        raise StoreError(
            f"code ids in [{lo}, {hi}] do not fit a codebook of {len(full)} codes: the store was made with "
            "another tokenizer (or its code_ids are empty)"
        )
    if len(torch.unique(kept)) != len(kept):
        raise StoreError("code ids must be distinct (each kept code is one codebook row)")
    lookup = nearest_codes(full, full[kept], chunk_rows)
    lookup[kept] = torch.arange(len(kept))
    return lookup


def nearest_codes(vectors: torch.Tensor, codebook: torch.Tensor, chunk_rows: int = 4096) -> torch.Tensor:
    """The row of ``codebook`` with the highest cosine similarity to each of ``vectors`` (lowest row on ties).

    SeiT's ``convert_to_tokens``: how its evaluate_on_images puts tokenizer codes onto a pruned codebook.
    """
    unit, rows = F.normalize(vectors.float(), dim=1), F.normalize(codebook.float(), dim=1).to(vectors.device)
    lookup = torch.empty(len(vectors), dtype=torch.long, device=vectors.device)
    for start in range(0, len(vectors), chunk_rows):
        lookup[start : start + chunk_rows] = (unit[start : start + chunk_rows] @ rows.T).argmax(dim=1)
    return lookup


def codes_onto(
    src_ids: np.ndarray,
    src_codebook: np.ndarray | None,
    kept_ids: np.ndarray,
    kept_codebook: np.ndarray | None,
    *,
    src_name: str,
    kept_name: str,
) -> np.ndarray:
    """For each row of a codebook (tokenizer ids ``src_ids``), its row in a pruned one (``kept_ids``): int64 [K_src].

    Checks that the two codebooks agree on the codes they share (the same tokenizer made both), then
    applies :func:`code_lookup` over the tokenizer ids both know.
    """
    src_ids, kept_ids = np.asarray(src_ids, dtype=np.int64), np.asarray(kept_ids, dtype=np.int64)
    shared_src = np.flatnonzero(np.isin(src_ids, kept_ids))
    missing = len(src_ids) - len(shared_src)
    if src_codebook is not None and kept_codebook is not None:
        if src_codebook.shape[1] != kept_codebook.shape[1]:
            raise StoreError(
                f"{src_name} has {src_codebook.shape[1]}-dim codes, {kept_name} {kept_codebook.shape[1]}-dim: "
                "they were made with different tokenizers"
            )
        row_of = {int(c): r for r, c in enumerate(kept_ids)}
        shared_kept = np.array([row_of[int(c)] for c in src_ids[shared_src]], dtype=np.int64)
        if not np.allclose(src_codebook[shared_src], kept_codebook[shared_kept], atol=1e-5):
            raise StoreError(
                f"{src_name} and {kept_name} give different vectors for the same tokenizer codes: they were "
                "made with different tokenizers; tokenize both splits with the same one"
            )
    elif missing:
        raise StoreError(
            f"{src_name} uses {missing} codes that {kept_name} lacks; mapping them to the nearest kept code needs "
            f"the codebooks of both, and {kept_name if kept_codebook is None else src_name} has none"
        )
    if src_codebook is None or kept_codebook is None:
        return np.searchsorted(kept_ids, src_ids, sorter=np.argsort(kept_ids)).astype(np.int64)
    space = np.zeros((int(max(src_ids.max(), kept_ids.max())) + 1, src_codebook.shape[1]), dtype=np.float32)
    space[src_ids] = src_codebook  # only these rows and the kept ones are ever compared
    space[kept_ids] = kept_codebook
    return code_lookup(kept_ids, space).numpy()[src_ids]


@dataclass
class PruneResult:
    store: Path
    source_codes: int  # codebook size of the source store
    codes: int  # codebook size of the result
    codes_used: int  # distinct ids the source uses
    mapped_codes: int  # of those, codes the --codes-from store lacks: mapped to the nearest kept code
    mapped_tokens: int  # tokens carrying such a code
    tokens: int  # tokens in the store

    @classmethod
    def from_config(cls, path: str | os.PathLike, store: TokenStore) -> PruneResult | None:
        """The figures a pruned store recorded about its pruning (None if it was not pruned)."""
        saved = store.config.get("prune")
        if saved is None:
            return None
        names = ("source_codes", "codes_used", "mapped_codes", "mapped_tokens", "tokens")
        return cls(store=Path(path), codes=store.codebook_size, **{k: saved[k] for k in names})

    def summary(self) -> str:
        text = f"codebook {self.source_codes} -> {self.codes} codes ({self.codes_used} in use)"
        if self.mapped_codes:
            share = 100 * self.mapped_tokens / max(self.tokens, 1)
            text += (
                f"; {self.mapped_codes} codes the train store lacks mapped to their nearest kept code "
                f"({self.mapped_tokens:,} of {self.tokens:,} tokens, {share:.3f}%)"
            )
        return text


def prune_store(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    codes_from: str | os.PathLike | None = None,
    synonyms_k: int | None = None,
    codec: str | None = None,
    shard_bytes: int = 128 << 20,
    resume: bool = False,
    show_progress: bool = False,
) -> PruneResult:
    """Write ``dst``: ``src`` with its ids renumbered onto the codes it uses, or onto ``codes_from``'s codes.

    Without ``codes_from``: keep the codes in use, in tokenizer-id order; the codebook is the kept rows and
    ``code_ids`` the kept rows' tokenizer ids. With ``codes_from`` (a pruned train store): the result has
    that store's codebook and ``code_ids``; codes it lacks map to the nearest kept code (cosine similarity).
    The synonym table is rebuilt from the new codebook with ``synonyms_k`` columns (default: as many as
    ``codes_from``'s or ``src``'s table, none if neither has one).
    """
    source = TokenStore.open(src)
    if not len(source):
        raise StoreError(f"{src}: the store holds no samples; there is nothing to prune")
    counts, _ = code_usage(source, show_progress=show_progress)
    used = np.flatnonzero(counts)
    src_ids = source.code_ids if source.code_ids is not None else np.arange(source.codebook_size)
    tables = [source.synonyms]
    if codes_from is None:
        mapping = np.full(source.codebook_size, -1, dtype=np.int64)
        mapping[used] = np.arange(len(used))
        codebook = None if source.codebook is None else source.codebook[used]
        code_ids, mapped = src_ids[used], np.zeros(source.codebook_size, dtype=bool)
    else:
        train = TokenStore.open(codes_from, verify=False)
        if train.code_ids is None:
            raise StoreError(
                f"{codes_from}: the store does not record which tokenizer codes its ids are (no code_ids); "
                "use a store written by `seit tokenize` (or pruned by `seit store prune`)"
            )
        mapping = codes_onto(
            src_ids, source.codebook, train.code_ids, train.codebook, src_name=str(src), kept_name=str(codes_from)
        )
        codebook, code_ids = train.codebook, train.code_ids
        mapped = ~np.isin(src_ids, code_ids)
        tables.insert(0, train.synonyms)
    if synonyms_k is None:
        synonyms_k = next((t.shape[1] for t in tables if t is not None), None)
    synonyms = None
    if synonyms_k and codebook is not None:
        synonyms = synonyms_from_codebook(torch.from_numpy(codebook), synonyms_k).numpy()
    result = PruneResult(
        store=Path(dst),
        source_codes=source.codebook_size,
        codes=len(code_ids),
        codes_used=len(used),
        mapped_codes=int((mapped & (counts > 0)).sum()),
        mapped_tokens=int(counts[mapped].sum()),
        tokens=int(counts.sum()),
    )
    prune_info = {
        "source": str(src),
        "codes_from": None if codes_from is None else str(codes_from),
        **{k: v for k, v in asdict(result).items() if k not in ("store", "codes")},
    }
    remap_store(
        src,
        dst,
        mapping,
        codebook=codebook,
        synonyms=synonyms,
        code_ids=code_ids,
        config={"prune": prune_info},
        codec=codec,
        shard_bytes=shard_bytes,
        resume=resume,
        show_progress=show_progress,
    )
    return result


def add_synonyms(store: str | os.PathLike, k: int = 10, *, json_path: str | os.PathLike | None = None) -> np.ndarray:
    """Build each code's top-k similar codes (itself first) from the store's codebook and save them in it.

    ``json_path``: also write the table as SeiT's ``synonyms.json``. Returns the table [K, min(k, K)].
    """
    if k < 1:
        raise StoreError(f"synonyms: k must be >= 1, got {k}")
    with TokenStore.open(store, verify=False) as opened:
        codebook = opened.codebook
    if codebook is None:
        raise StoreError(
            f"{store}: the store has no codebook to find synonyms in; tokenize with `seit tokenize` (which stores "
            "it) or import SeiT's codebook.ckpt with `seit store import-seit --codebook`"
        )
    table = synonyms_from_codebook(torch.from_numpy(codebook), k).numpy()
    set_synonyms(store, table)
    if json_path is not None:
        write_synonyms(json_path, table)
    return table
