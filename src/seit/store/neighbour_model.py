"""Neighbour-rank transform: each id becomes its rank among the codes that usually sit next to its neighbours.

VQ ids are close to uniform, so an entropy coder gains little on them directly; given the already-decoded
left and upper neighbours, however, a few codes are far more likely than the rest. The transform maps each id
to its position in a short candidate list for its context (falling back to the overall frequency order),
which turns the ids into a skewed stream of small ranks that an entropy coder then codes (pcodec in
``ctx-ans``, zstd in ``ctx``). It is exactly invertible: the decoder rebuilds the same list from the same,
already decoded, neighbours.

Model (fitted once per store on a prefix of its samples; all tables are small and bounded):

* ``order0``: codes by decreasing overall frequency (the fallback ranking; covers every code, so ids never
  seen while fitting still encode);
* per neighbour (left; and upper in "pair" mode): for each frequent neighbour value, its ``list_size`` most
  frequent following codes with their probabilities (8 levels per octave), other values share a fallback row;
* "pair" mode (2-D grids, codebooks up to ``PAIR_MAX_CODES``): the candidate list of a position is the
  ``pair_size`` best codes of the union of both neighbours' lists, scored by the sum of both conditional
  probabilities. The pair table is derived at load time with integer arithmetic only, so every machine
  derives the same table from the same state.

Decoding is sequential in the neighbours, so it sweeps the grid by anti-diagonals (pair mode: every position
of a diagonal has its left and upper neighbours on the previous one) or by columns (left-only mode),
vectorised over the batch: 63 numpy steps for a 32x32 grid.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from seit.store.errors import StoreError

PAIR_MAX_CODES = 1024  # larger codebooks use the left neighbour only (dense pair scoring would be too big)
PAIR_TABLE_ENTRIES = 1 << 23  # bound of the pair table: (left rows) x (upper rows) x pair_size ids (uint16)
MAX_ROWS = 4096  # bound of the per-neighbour tables: rows x list_size
MIN_CONTEXT_COUNT = 8  # a neighbour value seen fewer times while fitting shares the fallback row
SMOOTHING = 2.0  # pseudo-count (spread by overall frequency) behind each conditional probability

# Probabilities are stored as q = round(-8 log2 p) in a byte and scored as integers W[q] ~ 2**(30 - q/8),
# from these exact constants round(2**(30 - k/8)), k = 0..7 (no floating point at load time).
_OCTAVE = np.array([1073741824, 984625594, 902905651, 827968132, 759250125, 696235434, 638450708, 585461881])
_WEIGHT = _OCTAVE[np.arange(256) % 8] >> (np.arange(256) // 8)
_ONE = 1 << 30


@dataclass(frozen=True)
class NeighbourTable:
    """Frequent codes after each frequent value of one neighbour; row 0 is the fallback for other values."""

    contexts: np.ndarray  # [n] uint32, distinct neighbour values owning rows 1..n, most frequent first
    codes: np.ndarray  # [n + 1, list_size] uint16, most probable first
    q: np.ndarray  # [n + 1, list_size] uint8, -8 log2 p(code | neighbour)

    def row_of(self, codebook_size: int) -> np.ndarray:
        """Row index [K + 1] for every neighbour value (K = outside the grid)."""
        rows = np.zeros(codebook_size + 1, dtype=np.int64)
        rows[self.contexts.astype(np.int64)] = np.arange(1, len(self.contexts) + 1)
        return rows

    def scores(self, w0: np.ndarray) -> np.ndarray:
        """Integer score of every code in every row [rows, K]: listed weight, else the row's leftover mass
        spread by overall frequency (``w0``: the weight of every code's overall probability)."""
        listed = _WEIGHT[self.q]
        leftover = np.maximum(_ONE - listed.sum(1), 0)
        out = (leftover[:, None] * w0[None, :]) >> 30
        np.put_along_axis(out, self.codes.astype(np.int64), listed, axis=1)
        return out


@dataclass(frozen=True)
class _Sweep:
    order: np.ndarray  # flat grid positions in decoding order
    inverse: np.ndarray  # decoding order back to grid order
    steps: tuple[tuple[int, int, int], ...]  # (first row, last row, offset in decoding order)


class NeighbourModel:
    def __init__(
        self,
        codebook_size: int,
        order0: np.ndarray,
        q0: np.ndarray,
        left: NeighbourTable,
        upper: NeighbourTable | None,
        pair_size: int,
    ) -> None:
        k = codebook_size
        self.codebook_size = k
        self.order0, self.q0, self.left, self.upper = order0, q0, left, upper
        self.list_size = left.codes.shape[1]
        self.rank0 = np.empty(k, dtype=np.int64)
        self.rank0[order0.astype(np.int64)] = np.arange(k)
        self._order0 = order0.astype(np.int64)
        if upper is None:
            self.pair_size = 0
            self.width = self.list_size
            self.table = left.codes.ravel()
            self.left_base = left.row_of(k) * self.width
            self.upper_base = np.zeros(k + 1, dtype=np.int64)
        else:
            self.pair_size = pair_size
            self.width = pair_size
            self.table = _pair_table(left, upper, k, pair_size, _WEIGHT[q0])
            self.left_base = left.row_of(k) * (len(upper.codes) * pair_size)
            self.upper_base = upper.row_of(k) * pair_size
        self.alphabet = self.width + k

    # ------------------------------------------------------------------ fitting and state
    @classmethod
    def fit(
        cls, grids: np.ndarray, codebook_size: int, *, list_size: int = 32, pair_size: int = 32, pair: bool = True
    ) -> NeighbourModel:
        """Fit on samples [n, rows, cols]; ``pair`` uses the upper neighbour too when the grid and codebook allow."""
        k = codebook_size
        x = np.asarray(grids, dtype=np.int64)
        rows = x.shape[1]
        counts0 = np.bincount(x.ravel(), minlength=k)
        order0 = np.argsort(-counts0, kind="stable").astype(np.uint16)
        p0 = (counts0 + 0.5) / (counts0.sum() + 0.5 * k)
        q0 = _quantise(p0)
        list_size = max(1, min(list_size, k))
        use_pair = pair and rows > 1 and k <= PAIR_MAX_CODES and pair_size > 0
        max_rows = MAX_ROWS
        if use_pair:
            pair_size = min(pair_size, 2 * list_size, k)
            max_rows = min(max_rows, math.isqrt(PAIR_TABLE_ENTRIES // pair_size) - 1)
        left_ctx = np.full_like(x, k)
        left_ctx[:, :, 1:] = x[:, :, :-1]
        left = _fit_table(left_ctx, x, k, list_size, max_rows, order0, p0)
        upper = None
        if use_pair:
            upper_ctx = np.full_like(x, k)
            upper_ctx[:, 1:, :] = x[:, :-1, :]
            upper = _fit_table(upper_ctx, x, k, list_size, max_rows, order0, p0)
        return cls(k, order0, q0, left, upper, pair_size if use_pair else 0)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"order0": self.order0, "q0": self.q0}
        for name, table in (("left", self.left), ("upper", self.upper)):
            if table is not None:
                out |= {f"{name}_contexts": table.contexts, f"{name}_codes": table.codes, f"{name}_q": table.q}
        return out

    @classmethod
    def from_arrays(cls, codebook_size: int, arrays: dict[str, np.ndarray], pair_size: int) -> NeighbourModel:
        """Rebuild from :meth:`arrays` (read from a store), checking every table against the codebook size."""
        k = codebook_size
        try:
            order0, q0 = arrays["order0"], arrays["q0"]
            if order0.shape != (k,) or q0.shape != (k,) or order0.dtype != np.uint16 or q0.dtype != np.uint8:
                raise ValueError("order0/q0 shape")
            if not np.array_equal(np.sort(order0.astype(np.int64)), np.arange(k)):
                raise ValueError("order0 is not a permutation of the codebook")
            tables = [_table_from(arrays, "left", k)]
            if pair_size:
                tables.append(_table_from(arrays, "upper", k))
                rows = len(tables[0].codes) * len(tables[1].codes)
                if tables[0].codes.shape[1] != tables[1].codes.shape[1]:
                    raise ValueError("left and upper lists of different lengths")
                if not 0 < pair_size <= 2 * tables[0].codes.shape[1] or rows * pair_size > PAIR_TABLE_ENTRIES:
                    raise ValueError("pair table size")
        except (KeyError, ValueError) as e:
            raise StoreError(f"codec state does not fit a codebook of {k} codes ({e}); the store is damaged") from None
        return cls(k, order0, q0, tables[0], tables[1] if pair_size else None, pair_size)

    # ------------------------------------------------------------------ transform
    def forward(self, ids: np.ndarray) -> np.ndarray:
        """ids [B, rows, cols] -> symbols [B, rows * cols] in [0, alphabet), in the order :meth:`inverse` reads them."""
        ids = np.asarray(ids, dtype=np.int64)
        batch, rows, cols = ids.shape
        k, width = self.codebook_size, self.width
        left = np.full_like(ids, k)
        left[:, :, 1:] = ids[:, :, :-1]
        base = self.left_base[left]
        if self.upper is not None:
            upper = np.full_like(ids, k)
            upper[:, 1:, :] = ids[:, :-1, :]
            base += self.upper_base[upper]
        x = ids.ravel()
        candidates = self.table.reshape(-1, width)[base.ravel() // width]  # whole rows: one memcpy each
        match = candidates == x.astype(np.uint16)[:, None]
        first = match.argmax(1)
        hit = match[np.arange(len(x)), first]
        symbols = np.where(hit, first, width + self.rank0[x])
        return symbols.reshape(batch, rows * cols)[:, _sweep(rows, cols, self.upper is not None).order]

    def inverse(self, symbols: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """symbols [B, rows * cols] from :meth:`forward` -> ids [B, rows, cols] (int64).

        Sweeps so that both neighbours of every position are decoded before it, all samples at once.
        """
        batch = len(symbols)
        sweep = _sweep(rows, cols, self.upper is not None)
        s = np.ascontiguousarray(symbols.T)  # [position, batch]: every step reads and writes contiguous blocks
        width = self.width
        offset = np.minimum(s, width - 1)
        tail = np.flatnonzero(s >= width)  # rare: ids ranked by overall frequency, independent of context
        tail_rank = s.ravel()[tail] - width
        if tail_rank.size and tail_rank.max() >= self.codebook_size:
            raise StoreError(f"symbol {tail_rank.max() + width} outside the alphabet of {self.alphabet} (corrupt)")
        tail_ids = self._order0[tail_rank]
        tail_cut = np.searchsorted(tail, np.asarray([o for _, _, o in sweep.steps] + [s.size]) * batch)
        out = np.empty(s.shape, dtype=np.int64)
        border = self.codebook_size
        last_left = np.full((rows + 1, batch), self.left_base[border])
        last_upper = np.full((rows + 1, batch), self.upper_base[border])
        idx = np.empty((rows, batch), dtype=np.int64)
        table, left_base, upper_base = self.table, self.left_base, self.upper_base
        for step, (first, last, o) in enumerate(sweep.steps):
            n = last - first + 1
            i = np.add(last_left[first + 1 : last + 2], last_upper[first : last + 1], out=idx[:n])
            i += offset[o : o + n]
            v = out[o : o + n]
            v[...] = table.take(i)
            a, b = tail_cut[step], tail_cut[step + 1]
            if a < b:
                v.ravel()[tail[a:b] - o * batch] = tail_ids[a:b]
            np.take(left_base, v, out=last_left[first + 1 : last + 2])
            np.take(upper_base, v, out=last_upper[first + 1 : last + 2])
        return out.T[:, sweep.inverse].reshape(batch, rows, cols)

    def table_bytes(self) -> int:
        """Memory held by the lookup tables (bounded whatever the codebook size)."""
        held = [self.table, self.left_base, self.upper_base, self.rank0, self._order0]
        held += [a for t in (self.left, self.upper) if t is not None for a in (t.codes, t.q, t.contexts)]
        return sum(a.nbytes for a in held)


def _quantise(p: np.ndarray) -> np.ndarray:
    return np.clip(np.round(-8.0 * np.log2(np.maximum(p, 1e-300))), 0, 255).astype(np.uint8)


def _fit_table(
    ctx: np.ndarray, x: np.ndarray, k: int, list_size: int, max_rows: int, order0: np.ndarray, p0: np.ndarray
) -> NeighbourTable:
    """Count (neighbour value, code) pairs; keep the most frequent values and their most frequent codes."""
    rank0 = np.empty(k, dtype=np.int64)
    rank0[order0.astype(np.int64)] = np.arange(k)
    keys, counts = np.unique(ctx.ravel() * k + x.ravel(), return_counts=True)
    ctx_of, code = keys // k, keys % k
    values, starts = np.unique(ctx_of, return_index=True)
    totals = np.add.reduceat(counts, starts) if len(keys) else np.zeros(0, dtype=np.int64)
    frequent = np.flatnonzero(totals >= MIN_CONTEXT_COUNT)
    frequent = frequent[np.argsort(-totals[frequent], kind="stable")[:max_rows]]
    keep = values[frequent]  # most frequent first: the hot corner of the pair table stays in cache
    row = np.zeros(k + 1, dtype=np.int64)
    row[keep] = np.arange(1, len(keep) + 1)
    entry_row = row[ctx_of]
    sel = entry_row > 0
    entry_row, code, counts = entry_row[sel], code[sel], counts[sel]
    order = np.lexsort((rank0[code], -counts, entry_row))
    entry_row, code, counts = entry_row[order], code[order], counts[order]
    group_start = np.searchsorted(entry_row, entry_row)
    place = np.arange(len(entry_row)) - group_start
    listed = place < list_size
    codes = np.full((len(keep) + 1, list_size), -1, dtype=np.int64)
    hits = np.zeros((len(keep) + 1, list_size))
    codes[entry_row[listed], place[listed]] = code[listed]
    hits[entry_row[listed], place[listed]] = counts[listed]
    codes[0] = order0[:list_size]
    for r in np.flatnonzero((codes < 0).any(1)):  # rows with fewer distinct codes: pad in overall order
        have = codes[r][codes[r] >= 0]
        need = list_size - len(have)
        pad = order0[: list_size + len(have)].astype(np.int64)
        codes[r, len(have) :] = pad[~np.isin(pad, have)][:need]
    row_total = np.zeros(len(keep) + 1)
    row_total[1:] = totals[frequent]
    p = (hits + SMOOTHING * p0[codes]) / (row_total[:, None] + SMOOTHING)
    p[0] = p0[codes[0]]
    return NeighbourTable(keep.astype(np.uint32), codes.astype(np.uint16), _quantise(p))


def _table_from(arrays: dict[str, np.ndarray], name: str, k: int) -> NeighbourTable:
    contexts, codes, q = arrays[f"{name}_contexts"], arrays[f"{name}_codes"], arrays[f"{name}_q"]
    if contexts.ndim != 1 or codes.ndim != 2 or codes.shape != q.shape or codes.shape[0] != len(contexts) + 1:
        raise ValueError(f"{name} table shapes")
    if codes.dtype != np.uint16 or q.dtype != np.uint8 or contexts.dtype != np.uint32:
        raise ValueError(f"{name} table dtypes")
    if codes.shape[0] > MAX_ROWS + 1 or not 0 < codes.shape[1] <= k or (codes.size and codes.max() >= k):
        raise ValueError(f"{name} table sizes or codes")
    if len(contexts) and (contexts.max() > k or len(np.unique(contexts)) != len(contexts)):
        raise ValueError(f"{name} contexts")
    return NeighbourTable(contexts, codes, q)


def _pair_table(left: NeighbourTable, upper: NeighbourTable, k: int, size: int, w0: np.ndarray) -> np.ndarray:
    """For every (left row, upper row): the ``size`` best codes of both lists by summed integer score."""
    left_scores, upper_scores = left.scores(w0), upper.scores(w0)
    lc, uc = left.codes.astype(np.int64), upper.codes.astype(np.int64)
    n_left, n_upper, width = len(lc), len(uc), lc.shape[1]
    in_left = np.zeros((n_left, k), dtype=bool)
    np.put_along_axis(in_left, lc, True, axis=1)
    out = np.empty((n_left, n_upper, size), dtype=np.uint16)
    position = np.arange(2 * width)
    chunk = max(1, (1 << 20) // (n_upper * 2 * width))
    for start in range(0, n_left, chunk):
        rl = np.arange(start, min(start + chunk, n_left))[:, None, None]
        ru = np.arange(n_upper)[None, :, None]
        cand = np.concatenate(np.broadcast_arrays(lc[rl[..., 0]], uc[None, :, :]), axis=2)
        score = left_scores[rl, cand] + upper_scores[ru, cand]
        score[..., width:][in_left[rl, uc[None, :, :]]] = -1  # already listed by the left neighbour
        # Best score first, ties to the earlier candidate: one sort of (score, position) packed in an int.
        key = np.sort(-score * (2 * width) + position, axis=2)[..., :size]
        pick = key % (2 * width)
        out[rl[:, 0, 0]] = np.take_along_axis(cand, pick, axis=2)
    return out.ravel()


@functools.lru_cache(maxsize=16)
def _sweep(rows: int, cols: int, diagonal: bool) -> _Sweep:
    i, j = np.divmod(np.arange(rows * cols), cols)
    if diagonal:
        order = np.lexsort((i, i + j))
        steps = []
        o = 0
        for d in range(rows + cols - 1):
            first, last = max(0, d - cols + 1), min(rows - 1, d)
            steps.append((first, last, o))
            o += last - first + 1
    else:
        order = np.lexsort((i, j))
        steps = [(0, rows - 1, c * rows) for c in range(cols)]
    return _Sweep(order, np.argsort(order), tuple(steps))
