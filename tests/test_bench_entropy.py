import numpy as np

from seit.bench.entropy import conditional_entropy, entropy, smoothed_probabilities, token_entropies
from seit.bench.tokens import TokenSetConfig, generate_tokens


def test_entropy_and_conditional_entropy_of_known_distributions():
    assert entropy(np.array([5, 5, 5, 5])) == 2.0
    assert entropy(np.array([7, 0])) == 0.0
    rng = np.random.default_rng(0)
    c = rng.integers(0, 8, size=100_000)
    assert conditional_entropy(c, c) == 0.0  # x is a function of c
    x = rng.integers(0, 8, size=100_000)
    assert abs(conditional_entropy(c, x) - 3.0) < 0.01  # independent: H(X|C) = H(X)


def test_smoothed_probabilities_are_distributions():
    rng = np.random.default_rng(1)
    fit_c, fit_x = rng.integers(0, 5, 500), rng.integers(0, 6, 500)
    backoff = np.full(6, 1 / 6)
    for ctx in (0, 3, 99):  # 99 was never seen: the backoff itself
        p = smoothed_probabilities(fit_c, fit_x, np.full(6, ctx), np.arange(6), backoff)
        assert abs(p.sum() - 1) < 1e-12 and (p > 0).all()
    np.testing.assert_allclose(smoothed_probabilities(fit_c, fit_x, np.full(6, 99), np.arange(6), backoff), backoff)


def test_neighbour_entropy_drops_only_with_spatial_correlation():
    iid, _ = generate_tokens(TokenSetConfig(samples=400, correlation=0.0, codebook_size=64, groups=8))
    ent = token_entropies(iid[:200], iid[200:], 64)
    assert abs(ent["H(X|left)"]["held_out"] - ent["H(X)"]["held_out"]) < 0.05
    assert ent["H(X|left,upper)"]["in_sample"] < ent["H(X)"]["in_sample"]  # plug-in bias, even on iid data
    tokens, _ = generate_tokens(TokenSetConfig(samples=400, codebook_size=64, groups=8))
    ent = token_entropies(tokens[:200], tokens[200:], 64)
    assert ent["H(X|left)"]["held_out"] < ent["H(X)"]["held_out"] - 0.5
    assert ent["H(X|left,upper)"]["held_out"] < ent["H(X|left)"]["held_out"]
