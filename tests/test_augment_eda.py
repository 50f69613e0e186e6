import math
import random

import torch

from seit.augment.eda import replace_synonyms, sample_swaps, sample_synonyms, swap_patches

K = 40


def _table(k=5):
    """Row i = i, then k-1 distinct other codes (SeiT's lists start with the code itself)."""
    g = torch.Generator().manual_seed(0)
    others = torch.stack([torch.randperm(K - 1, generator=g)[: k - 1] for _ in range(K)])
    others += (others >= torch.arange(K).unsqueeze(1)).long()  # skip the code itself
    return torch.cat([torch.arange(K).unsqueeze(1), others], dim=1)


def test_synonym_replacement_rate_and_choices():
    table = _table(k=8)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, K, (64, 32, 32), generator=g)
    picks = sample_synonyms(*ids.shape, k=5, token_prob=0.25, generator=g, device=ids.device)
    out = replace_synonyms(ids, table, picks)
    changed = out != ids
    # a drawn token takes one of 5 entries uniformly, one of them itself: visible change rate p * 4/5
    assert abs(changed.float().mean().item() - 0.25 * 4 / 5) < 0.01
    allowed = table[ids[changed], :5]
    assert (allowed == out[changed].unsqueeze(1)).any(dim=1).all()  # only the top-5 synonyms, never entries 5..7
    position = (table[ids[changed]] == out[changed].unsqueeze(1)).float().argmax(dim=1)
    counts = torch.bincount(position, minlength=5)[1:].float()  # the four non-self picks are equally likely
    assert (counts / counts.sum() - 0.25).abs().max() < 0.03


def seit_swap(grid, size, y0, x0, y1, x1):
    """SeiT's SwapCode.forward for given parameters: copy, write square 0, then square 1."""
    out = grid.clone()
    out[y0 : y0 + size, x0 : x0 + size] = grid[y1 : y1 + size, x1 : x1 + size]
    out[y1 : y1 + size, x1 : x1 + size] = grid[y0 : y0 + size, x0 : x0 + size]
    return out


def test_patch_swap_equals_seit_including_overlaps():
    rng = random.Random(0)
    params = [(0, 0, 0, 5, 5), (7, 0, 0, 24, 24), (5, 2, 3, 4, 6), (4, 10, 10, 13, 12), (1, 31, 0, 0, 31)]
    params += [(s, rng.randint(0, 31 - s), rng.randint(0, 31 - s), rng.randint(0, 31 - s), rng.randint(0, 31 - s))
               for s in (rng.randint(0, 8) for _ in range(40))]  # fmt: skip
    ids = torch.randint(0, K, (len(params), 32, 32), generator=torch.Generator().manual_seed(2))
    out = swap_patches(ids, torch.tensor(params))
    expected = torch.stack([seit_swap(grid, *p) for grid, p in zip(ids, params)])
    torch.testing.assert_close(out, expected)


def test_swap_parameters_follow_seit():
    g = torch.Generator().manual_seed(3)
    swaps = sample_swaps(20000, 32, 32, 0.25, g, torch.device("cpu"))
    size, y0, x0, y1, x1 = swaps.unbind(1)
    # size = int(U(0, 0.25) * 32): 0..7, each with probability 1/8
    freq = torch.bincount(size, minlength=8).float() / len(size)
    assert len(freq) == 8 and (freq - 1 / 8).abs().max() < 0.01
    for corner in (y0, x0, y1, x1):  # corners in [0, 32 - size - 1]
        assert (corner >= 0).all() and (corner <= 31 - size).all()
    moved = size > 0
    assert ((y1 - y0) ** 2 + (x1 - x0) ** 2 > size**2)[moved].all()  # SeiT's redraw condition
    assert (y0[size == 7] == 24).any() and (y0[size == 7] == 25).sum() == 0  # its corner range excludes the last row
    # tiny grids work: 8x8 -> sizes 0 or 1
    small = sample_swaps(2000, 8, 8, 0.25, g, torch.device("cpu"))
    assert set(small[:, 0].tolist()) == {0, 1}
    out = swap_patches(torch.arange(64).view(1, 8, 8).repeat(2000, 1, 1), small)
    assert (out.flatten(1).sort(dim=1).values == torch.arange(64)).all()  # a swap permutes the grid
    moved_fraction = (out != torch.arange(64).view(1, 8, 8)).flatten(1).any(dim=1).float().mean().item()
    assert math.isclose(moved_fraction, 0.5, abs_tol=0.05)
