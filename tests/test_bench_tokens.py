import numpy as np
import pytest

from seit.bench.tokens import TokenSetConfig, generate_tokens
from seit.errors import ConfigError


def mutual_information(a, b, k):
    joint = np.bincount(a * k + b, minlength=k * k).reshape(k, k) / a.size
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / (pa @ pb)[nz])).sum())


def test_generator_is_deterministic_and_seeded():
    cfg = TokenSetConfig(samples=300, seed=11)
    ids, labels = generate_tokens(cfg)
    again, labels_again = generate_tokens(TokenSetConfig(samples=300, seed=11))
    np.testing.assert_array_equal(ids, again)
    np.testing.assert_array_equal(labels, labels_again)
    other, _ = generate_tokens(TokenSetConfig(samples=300, seed=12))
    assert (other != ids).mean() > 0.5


def test_tokens_span_the_codebook_with_a_skewed_marginal():
    ids, labels = generate_tokens(TokenSetConfig(samples=1000))
    assert ids.shape == (1000, 32, 32) and ids.dtype == np.int16
    assert labels.shape == (1000,) and labels.min() >= 0 and labels.max() < 100
    counts = np.bincount(ids.ravel(), minlength=391)
    assert ids.min() >= 0 and ids.max() <= 390 and (counts > 0).sum() > 380
    assert 0.2 < (ids >= 255).mean() < 0.5  # the SeiT layout's two-byte path is exercised
    top = np.sort(counts)[::-1]
    assert top[:39].sum() > 0.3 * counts.sum()  # Zipf-like: the top 10% of codes hold a third of the tokens


def test_correlation_controls_neighbour_dependence():
    k = 32  # small codebook: the plug-in estimate of mutual information is then nearly unbiased
    info = []
    for correlation in (0.0, 0.5, 0.9):
        ids, _ = generate_tokens(TokenSetConfig(samples=200, codebook_size=k, groups=6, correlation=correlation))
        x = ids.astype(np.int64)
        info.append(mutual_information(x[:, :, :-1].ravel(), x[:, :, 1:].ravel(), k))
    assert info[0] < 0.02  # iid: the left neighbour tells nothing
    assert info[0] < info[1] < info[2] and info[2] > 0.8


def test_statistics_depend_on_the_label():
    ids, labels = generate_tokens(TokenSetConfig(samples=800, classes=4))

    def hist(rows):
        h = np.bincount(ids[rows].ravel(), minlength=391).astype(float)
        return h / h.sum()

    per_class = [np.flatnonzero(labels == c) for c in range(4)]
    within = max(np.abs(hist(r[::2]) - hist(r[1::2])).sum() for r in per_class)
    between = min(np.abs(hist(a) - hist(b)).sum() for i, a in enumerate(per_class) for b in per_class[i + 1 :])
    assert between > 1.5 * within


def test_flat_areas_and_textures_repeat_codes_nearby():
    ids, _ = generate_tokens(TokenSetConfig(samples=300))
    same_left = (ids[:, :, 1:] == ids[:, :, :-1]).mean(axis=(1, 2))
    assert 0.1 < same_left.mean() < 0.5
    assert same_left.max() > 2 * same_left.mean()  # some images are dominated by flat segments


@pytest.mark.parametrize("grid", [(1, 1), (2, 3), (16, 24)])
def test_any_2d_grid(grid):
    ids, _ = generate_tokens(TokenSetConfig(samples=5, grid=grid))
    assert ids.shape == (5, *grid)


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="--grid takes two sizes"):
        TokenSetConfig(samples=2, grid=(4, 4, 4))
    with pytest.raises(ConfigError, match=r"--correlation must be in \[0, 1\], got 1.5"):
        TokenSetConfig(samples=2, correlation=1.5)
    with pytest.raises(ConfigError, match="--codebook-size must be in"):
        TokenSetConfig(samples=2, codebook_size=1)
