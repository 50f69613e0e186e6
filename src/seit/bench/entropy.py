"""Empirical entropies of token grids: what any codec of the tokens could hope to reach.

Two estimates of H(X | context): the plug-in value on the fitting samples (in-sample; biased low, and the
more so the more contexts there are) and the cross-entropy of held-out samples under a Witten-Bell smoothed
model fitted on the fitting samples (what a static context model fitted on those samples would pay; an
upper bound of the true value for that context).
"""

from __future__ import annotations

import numpy as np


def neighbour_contexts(grids: np.ndarray, codebook_size: int) -> dict[str, np.ndarray]:
    """Per token of grids [n, rows, cols]: its left and upper neighbour (``codebook_size`` outside the grid)
    and the pair of both, as flat int64 arrays aligned with ``grids.ravel()``."""
    x = np.asarray(grids, dtype=np.int64)
    left = np.full_like(x, codebook_size)
    left[:, :, 1:] = x[:, :, :-1]
    upper = np.full_like(x, codebook_size)
    upper[:, 1:, :] = x[:, :-1, :]
    return {"left": left.ravel(), "upper": upper.ravel(), "pair": (left * (codebook_size + 1) + upper).ravel()}


def entropy(counts: np.ndarray) -> float:
    """Entropy in bits of the distribution given by ``counts``."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def conditional_entropy(contexts: np.ndarray, symbols: np.ndarray) -> float:
    """Plug-in H(X | C) = H(C, X) - H(C) in bits, for int64 context and symbol arrays of equal length."""
    symbols = np.asarray(symbols, dtype=np.int64)
    joint = np.unique(contexts * (symbols.max() + 1) + symbols, return_counts=True)[1]
    return entropy(joint) - entropy(np.unique(contexts, return_counts=True)[1])


def smoothed_probabilities(
    fit_contexts: np.ndarray, fit_symbols: np.ndarray, contexts: np.ndarray, symbols: np.ndarray, backoff: np.ndarray
) -> np.ndarray:
    """Witten-Bell estimate p(x | c) = (n(c, x) + u(c) * backoff(x)) / (n(c) + u(c)) for each (c, x), with
    counts n and u(c) = number of distinct symbols seen after c taken from the fitting data, and ``backoff``
    the probability of each symbol under a coarser model (unseen contexts get the backoff unchanged)."""
    span = int(max(fit_symbols.max(initial=0), symbols.max(initial=0))) + 1
    pair_keys, pair_counts = np.unique(fit_contexts * span + fit_symbols, return_counts=True)
    ctx_keys, ctx_counts = np.unique(fit_contexts, return_counts=True)
    distinct = np.bincount(np.searchsorted(ctx_keys, pair_keys // span), minlength=len(ctx_keys))
    n_cx = _lookup(pair_keys, pair_counts, contexts * span + symbols)
    n_c, u_c = _lookup(ctx_keys, ctx_counts, contexts), _lookup(ctx_keys, distinct, contexts)
    return np.where(n_c > 0, (n_cx + u_c * backoff) / np.maximum(n_c + u_c, 1), backoff)


def _lookup(keys: np.ndarray, counts: np.ndarray, queries: np.ndarray) -> np.ndarray:
    if not len(keys):
        return np.zeros(len(queries))
    at = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return np.where(keys[at] == queries, counts[at], 0)


def token_entropies(fit: np.ndarray, held: np.ndarray, codebook_size: int) -> dict[str, dict[str, float]]:
    """Order-0 and neighbour-conditional entropies (bits/token), in-sample on ``fit`` and held-out on ``held``.

    The held-out models back off pair -> left -> order 0, so every held-out token has a probability."""
    k = codebook_size
    fx, hx = np.asarray(fit, dtype=np.int64).ravel(), np.asarray(held, dtype=np.int64).ravel()
    fc, hc = neighbour_contexts(fit, k), neighbour_contexts(held, k)
    counts = np.bincount(fx, minlength=k)
    p0 = (counts + 0.5) / (counts.sum() + 0.5 * k)
    p_left = smoothed_probabilities(fc["left"], fx, hc["left"], hx, p0[hx])
    p_upper = smoothed_probabilities(fc["upper"], fx, hc["upper"], hx, p0[hx])
    p_pair = smoothed_probabilities(fc["pair"], fx, hc["pair"], hx, p_left)

    def bits(p: np.ndarray) -> float:
        return float(-np.log2(p).mean())

    return {
        "H(X)": {"in_sample": entropy(counts), "held_out": bits(p0[hx])},
        "H(X|left)": {"in_sample": conditional_entropy(fc["left"], fx), "held_out": bits(p_left)},
        "H(X|upper)": {"in_sample": conditional_entropy(fc["upper"], fx), "held_out": bits(p_upper)},
        "H(X|left,upper)": {"in_sample": conditional_entropy(fc["pair"], fx), "held_out": bits(p_pair)},
    }
