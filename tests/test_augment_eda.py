import math
import random

import pytest
import torch

from seit.augment.eda import SWAP_ATTEMPTS, replace_synonyms, sample_swaps, sample_synonyms, swap_patches

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


# Found by the mutation pass (scripts/mutation.sh, docs/mutation.md).
def seit_swap_draws(batch, height, width, scale, seed):
    """SeiT's SwapCode.get_params sample by sample (redraw until the corners are more than ps apart), fed the
    uniforms the batched sampler draws from a generator of ``seed``; all 16 draws rejected: no swap (size 0)."""
    g = torch.Generator().manual_seed(seed)
    sizes = (min(height, width) * torch.rand(batch, generator=g) * scale).long()
    u = torch.rand(4, batch, SWAP_ATTEMPTS, generator=g)
    out = []
    for b, size in enumerate(sizes.tolist()):
        span_y, span_x = max(height - size, 1), max(width - size, 1)
        spans = list(enumerate((span_y, span_x) * 2))
        draws = [[int((u[i, b, a] * span).long()) for i, span in spans] for a in range(SWAP_ATTEMPTS)]
        accepted = [d for d in draws if (d[2] - d[0]) ** 2 + (d[3] - d[1]) ** 2 > size**2]
        out.append([size, *accepted[0]] if accepted else [0, *draws[0]])
    return out, torch.rand(1, generator=g)  # where the stream continues (the pipeline's next draw)


@pytest.mark.parametrize(("height", "width", "scale"), [(32, 32, 0.25), (6, 9, 0.9), (2, 2, 0.99)])
def test_swap_draws_equal_seits_redraw_loop_draw_for_draw(height, width, scale):
    """(order: y0, x0, y1, x1 from the 4 uniforms); a 2x2 grid has no two 1x1 corners in SeiT's range
    [0, side - ps - 1] more than 1 apart: never a swap there."""
    g = torch.Generator().manual_seed(9)
    got = sample_swaps(300, height, width, scale, g, torch.device("cpu"))
    expected, next_draw = seit_swap_draws(300, height, width, scale, seed=9)
    assert got.tolist() == expected and torch.equal(torch.rand(1, generator=g), next_draw)
    if height == 2:
        assert (got[:, 0] == 0).all()
    elif scale == 0.9:  # big squares on a small grid: some samples swap, some exhaust their 16 draws
        assert 0 < (got[:, 0] == 0).sum() < 300


def test_synonym_draws_come_from_the_given_generator_alone():
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        g = torch.Generator().manual_seed(4)
        picks = [sample_synonyms(2, 3, 4, 3, 0.5, g, torch.device("cpu")) for _ in range(2)]
        if global_seed == 0:
            first = picks
        assert all(torch.equal(a, b) for a, b in zip(picks, first, strict=True))
    assert not torch.equal(first[0], first[1])  # the second call continues the stream
    assert set(torch.cat(first).unique().tolist()) == {-1, 0, 1, 2}  # -1: kept; else one of the first k entries


def test_replacement_takes_the_picked_entry_whatever_the_table_holds():
    """Entry 0 is the code itself in SeiT's tables, but any table is read as given (a pick of 0 included)."""
    table = torch.tensor([[5, 6], [7, 8], [9, 4]])
    ids = torch.tensor([[[0, 1, 2]]])
    picks = torch.tensor([[[0, -1, 1]]])
    assert replace_synonyms(ids, table, picks).tolist() == [[[5, 1, 4]]]
