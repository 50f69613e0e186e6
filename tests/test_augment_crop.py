import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import RandomResizedCrop

from seit.augment import AugmentConfig
from seit.augment.crop import center_box, resized_crop, sample_random_boxes, sample_rrc_boxes, sample_train_crops

K, D, H, W = 50, 6, 32, 32


def seit_one_hot_crop(ids, codebook, boxes, side, flip):
    """SeiT's definition, sample by sample: one-hot [K, H, W] -> crop -> bicubic resize -> codebook."""
    out = []
    for grid, (top, left, h, w), mirror in zip(ids, boxes.tolist(), flip.tolist()):
        onehot = F.one_hot(grid, codebook.shape[0]).float().permute(2, 0, 1)
        crop = onehot[:, top : top + h, left : left + w]
        resized = F.interpolate(crop.unsqueeze(0), size=(side, side), mode="bicubic").squeeze(0)
        if mirror:
            resized = resized.flip(-1)
        out.append(torch.einsum("khw,kd->dhw", resized, codebook))
    return torch.stack(out)


@pytest.mark.parametrize("side", [28, 7, 40])
def test_crop_on_embeddings_equals_seit_one_hot_resize(side):
    g = torch.Generator().manual_seed(0)
    boxes = [
        (0, 0, 32, 32),  # full grid
        (5, 9, 1, 1),  # a single token
        (31, 0, 1, 32),  # one row at the bottom edge
        (3, 30, 2, 2),  # tiny, right edge
        (0, 0, 9, 9),  # smallest RRC crop at SeiT's scale (0.08 * 1024 ~ 9x9)
        (10, 4, 22, 17),
        (0, 5, 32, 27),
        (2, 2, 28, 28),  # the eval crop
    ]
    boxes = torch.tensor(boxes * 2)
    flip = torch.arange(len(boxes)) >= len(boxes) // 2  # every box plain and mirrored
    ids = torch.randint(0, K, (len(boxes), H, W), generator=g)
    codebook = torch.randn(K, D, generator=g)
    ours = resized_crop(ids, codebook, boxes, side, flip).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours, seit_one_hot_crop(ids, codebook, boxes, side, flip), atol=2e-5, rtol=1e-5)


def test_sampled_rrc_boxes_equal_seit_one_hot_resize_and_stay_inside():
    g = torch.Generator().manual_seed(1)
    boxes = sample_rrc_boxes(64, H, W, (0.08, 1.0), (3 / 4, 4 / 3), g, torch.device("cpu"))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= H).all() and (left + w <= W).all()
    ids = torch.randint(0, K, (64, H, W), generator=g)
    codebook = torch.randn(K, D, generator=g)
    flip = torch.rand(64, generator=g) < 0.5
    ours = resized_crop(ids, codebook, boxes, 28, flip).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours, seit_one_hot_crop(ids, codebook, boxes, 28, flip), atol=2e-5, rtol=1e-5)


def test_rrc_box_distribution_matches_torchvision():
    n = 4000
    g = torch.Generator().manual_seed(2)
    ours = sample_rrc_boxes(n, H, W, (0.08, 1.0), (3 / 4, 4 / 3), g, torch.device("cpu")).double()
    torch.manual_seed(2)
    grid = torch.zeros(1, H, W)
    ref = torch.tensor([RandomResizedCrop.get_params(grid, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]).double()
    for column in (2, 3):  # h, w: same mean and spread within sampling error
        assert abs(ours[:, column].mean() - ref[:, column].mean()) < 0.5
        assert abs(ours[:, column].std() - ref[:, column].std()) < 0.5
    area = lambda b: (b[:, 2] * b[:, 3]) / (H * W)  # noqa: E731
    assert abs(area(ours).mean() - area(ref).mean()) < 0.02
    centre = lambda b: b[:, 0] + b[:, 2] / 2  # noqa: E731
    assert abs(centre(ours).mean() - centre(ref).mean()) < 0.5
    aspect = (ours[:, 3] / ours[:, 2]).log()
    assert aspect.abs().max() <= math.log(4 / 3) + 0.5  # rounding to whole tokens widens the range a little


def test_rrc_falls_back_like_torchvision():
    # a 4x32 strip: no box of >= 90% area fits the aspect range, so every sample takes the fallback box
    g = torch.Generator().manual_seed(3)
    ours = sample_rrc_boxes(8, 4, 32, (0.9, 1.0), (3 / 4, 4 / 3), g, torch.device("cpu"))
    expected = RandomResizedCrop.get_params(torch.zeros(1, 4, 32), [0.9, 1.0], [3 / 4, 4 / 3])
    assert all(tuple(b) == expected for b in ours.tolist())


def test_boxes_for_images_of_many_sizes_follow_each_image():
    """Sides per sample (the pixel baseline's batches): the same draws as one side for all, each box inside its
    own image, and torchvision's fallback only for the image that needs it (a 4x32 strip among squares)."""
    cpu = torch.device("cpu")
    one = sample_rrc_boxes(16, H, W, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(5), cpu)
    per_sample = torch.full((16,), H)
    many = sample_rrc_boxes(
        16, per_sample, per_sample, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(5), cpu
    )
    assert torch.equal(one, many)

    heights, widths = torch.tensor([4, 32, 60, 32] * 50), torch.tensor([32, 32, 20, 90] * 50)
    boxes = sample_rrc_boxes(200, heights, widths, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(6), cpu)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= heights).all() and (left + w <= widths).all()
    strip = RandomResizedCrop.get_params(torch.zeros(1, 4, 32), [0.9, 1.0], [3 / 4, 4 / 3])
    assert all(tuple(b) == strip for b in boxes[0::4].tolist())
    squares = boxes[1::4]  # find boxes of about 90% area or more: no fallback (the whole square)
    assert (squares[:, 2] * squares[:, 3] >= 0.85 * 32 * 32).all() and (squares[:, 2:] < 32).any()
    for h_, w_, sub in ((60, 20, boxes[2::4]), (32, 90, boxes[3::4])):  # too tall, too wide: each its own fallback
        expected = RandomResizedCrop.get_params(torch.zeros(1, h_, w_), [0.9, 1.0], [3 / 4, 4 / 3])
        assert all(tuple(b) == expected for b in sub.tolist())

    squares = sample_random_boxes(50, heights[1::4], heights[1::4], torch.tensor([28, 8] * 25), torch.Generator(), cpu)
    assert (squares[0::2, 2:] == 28).all() and (squares[1::2, 2:] == 8).all() and (squares[:, :2] <= 24).all()


def test_random_and_centre_crops():
    g = torch.Generator().manual_seed(4)
    boxes = sample_random_boxes(2000, H, W, 28, g, torch.device("cpu"))
    assert (boxes[:, 2:] == 28).all()
    assert boxes[:, 0].min() == 0 and boxes[:, 0].max() == 4 and boxes[:, 1].max() == 4  # all 5 offsets occur
    assert center_box(32, 32, 28) == (2, 2) and center_box(8, 8, 7) == (0, 0) and center_box(16, 16, 14) == (1, 1)


def chi_square(counts, expected):
    """Pearson's statistic of observed ``counts`` against ``expected`` (same shape, all > 0)."""
    return float((((counts - expected) ** 2) / expected).sum())


def two_sample_chi_square(a, b):
    """Pearson's statistic that histograms ``a`` and ``b`` (counts over the same cells) share one distribution."""
    a, b = a.double(), b.double()
    used = (a + b) > 0
    a, b = a[used], b[used]
    ka, kb = (b.sum() / a.sum()).sqrt(), (a.sum() / b.sum()).sqrt()
    return float(((ka * a - kb * b) ** 2 / (a + b)).sum()), int(used.sum()) - 1


def chi_square_bound(df):
    """Far in the tail (about 6 standard deviations): with fixed seeds the tests are deterministic, and an
    off-by-one (a row never drawn, a cell drawn twice as often) exceeds it by orders of magnitude."""
    return df + 6 * math.sqrt(2 * df)


# a small, non-square grid: every offset is a handful of cells and rows differ from columns
SMALL_H, SMALL_W, RRC = 5, 7, ((0.08, 1.0), (3 / 4, 4 / 3))


def test_rrc_offsets_are_uniform_over_every_position_including_the_last_row_and_column():
    """Given the box size, torchvision draws top uniformly from 0..H-h and left from 0..W-w: check each."""
    g = torch.Generator().manual_seed(5)
    boxes = sample_rrc_boxes(200_000, SMALL_H, SMALL_W, *RRC, g, torch.device("cpu"))
    top, left, h, w = boxes.unbind(1)
    stat, df = 0.0, 0
    for size_h, size_w in torch.unique(boxes[:, 2:], dim=0).tolist():
        sel = (h == size_h) & (w == size_w)
        for offset, span in ((top[sel], SMALL_H - size_h + 1), (left[sel], SMALL_W - size_w + 1)):
            counts = torch.bincount(offset, minlength=span).double()
            assert len(counts) == span, f"box {size_h}x{size_w}: offset beyond the grid"
            assert (counts > 0).all(), f"box {size_h}x{size_w}: offsets {counts.tolist()} miss a position"
            if sel.sum() >= 50 * span:  # enough draws for the chi-square approximation
                stat += chi_square(counts, torch.full_like(counts, counts.sum() / span))
                df += span - 1
    assert df > 20 and stat < chi_square_bound(df), (stat, df)
    # every cell of the grid is covered by some box, the last row and column included
    covered = torch.zeros(SMALL_H, SMALL_W, dtype=torch.bool)
    for t, l, bh, bw in boxes[:2000].tolist():
        covered[t : t + bh, l : l + bw] = True
    assert covered.all()


def test_rrc_boxes_follow_torchvisions_distribution():
    """Box size (h, w), top and left: the same distribution as ``RandomResizedCrop.get_params``, cell by cell."""
    n_ours, n_ref = 200_000, 30_000
    g = torch.Generator().manual_seed(6)
    ours = sample_rrc_boxes(n_ours, SMALL_H, SMALL_W, *RRC, g, torch.device("cpu"))
    torch.manual_seed(6)
    grid = torch.zeros(1, SMALL_H, SMALL_W)
    ref = torch.tensor([RandomResizedCrop.get_params(grid, *map(list, RRC)) for _ in range(n_ref)])

    def histogram(boxes, columns, sizes):
        cell = torch.zeros(len(boxes), dtype=torch.long)
        for column, size in zip(columns, sizes):
            cell = cell * size + boxes[:, column]
        return torch.bincount(cell, minlength=math.prod(sizes))

    for columns, sizes in (
        ((2, 3), (SMALL_H + 1, SMALL_W + 1)),  # the size of the box
        ((0,), (SMALL_H,)),  # top
        ((1,), (SMALL_W,)),  # left
        ((0, 1, 2, 3), (SMALL_H, SMALL_W, SMALL_H + 1, SMALL_W + 1)),  # the whole box
    ):
        a, b = histogram(ours, columns, sizes), histogram(ref, columns, sizes)
        assert torch.equal(a > 0, b > 0) or len(columns) == 4, (columns, a, b)  # the same support
        stat, df = two_sample_chi_square(a, b)
        assert stat < chi_square_bound(df), (columns, stat, df)


# Found by the mutation pass (scripts/mutation.sh, docs/mutation.md).
PINNED_CROPS = {  # (boxes, flips) of two successive calls, 3 samples of a 6x9 grid, generator seed 7
    "rrc": [
        ([[0, 0, 5, 6], [0, 0, 6, 7], [1, 2, 4, 6]], [True, True, False]),
        ([[0, 0, 6, 7], [0, 3, 4, 5], [1, 5, 3, 4]], [False, True, False]),
    ],
    "random": [
        ([[1, 3, 5, 5], [0, 1, 5, 5], [1, 2, 5, 5]], [True, False, True]),
        ([[1, 1, 5, 5], [1, 1, 5, 5], [1, 2, 5, 5]], [True, False, True]),
    ],
}


@pytest.mark.parametrize("crop", ["rrc", "random"])
def test_crop_draws_come_from_the_given_generator_alone_and_are_pinned(crop):
    """A run resumed from a checkpoint re-draws its augmentations from (seed, step): the draws must depend on
    the generator only (not torch's global one) and stay the same across versions."""
    config = AugmentConfig(crop=crop, crop_size=5, hflip_prob=0.5)
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        g = torch.Generator().manual_seed(7)
        got = [sample_train_crops(config, 3, 6, 9, g, torch.device("cpu")) for _ in range(2)]
        assert [(b.tolist(), f.tolist()) for b, f in got] == PINNED_CROPS[crop]


def test_train_crops_follow_the_config():
    cpu, size = torch.device("cpu"), (6, 10, 7)  # batch, height, width: rows differ from columns
    rrc = AugmentConfig(rrc_scale=(0.3, 0.5), rrc_aspect=(0.5, 2.0))
    boxes, flip = sample_train_crops(rrc, *size, torch.Generator().manual_seed(1), cpu)
    expected = sample_rrc_boxes(*size, (0.3, 0.5), (0.5, 2.0), torch.Generator().manual_seed(1), cpu)
    assert torch.equal(boxes, expected) and flip is None  # no flip drawn at --hflip-prob 0
    for p in (0.5, 1.0):
        plain = AugmentConfig(crop="random", crop_size=4, hflip_prob=p)
        boxes, flip = sample_train_crops(plain, *size, torch.Generator().manual_seed(2), cpu)
        g = torch.Generator().manual_seed(2)
        assert torch.equal(boxes, sample_random_boxes(*size, 4, g, cpu))
        assert flip.dtype == torch.bool and torch.equal(flip, torch.rand(6, generator=g) < p)  # drawn after the boxes
    assert flip.all()


def test_rrc_fallback_and_rejection_per_sample_on_every_grid_shape():
    cpu = torch.device("cpu")
    tiny = ((0.001, 0.002), (3 / 4, 4 / 3))  # every attempt rounds to an empty box: all take the fallback
    for height, width in ((12, 4), (4, 12), (4, 4)):  # tall, wide and square grids
        ours = sample_rrc_boxes(5, height, width, *tiny, torch.Generator().manual_seed(3), cpu)
        expected = RandomResizedCrop.get_params(torch.zeros(1, height, width), *map(list, tiny))
        assert all(tuple(b) == expected for b in ours.tolist()), (height, width, expected)
    # boxes of about a third of a token round to 0 or 1 token a side: only 1x1 boxes are valid
    small = sample_rrc_boxes(400, 6, 8, (0.006, 0.007), (3 / 4, 4 / 3), torch.Generator().manual_seed(4), cpu)
    assert (small[:, 2:] >= 1).all() and ((small[:, 2:] == 1).all(1)).any()
    # half-grid boxes of a wide aspect range: most samples find one in 10 attempts, some fall back, each alone
    mixed = sample_rrc_boxes(400, 4, 6, (0.5, 0.6), (0.1, 10.0), torch.Generator().manual_seed(5), cpu)
    top, left, h, w = mixed.unbind(1)
    assert ((top + h) <= 4).all() and ((left + w) <= 6).all() and (h >= 1).all() and (w >= 1).all()
    fallback = (mixed == torch.tensor([0, 0, 4, 6])).all(1)
    assert 0 < fallback.sum() < 100 and (h * w)[~fallback].max() < 24  # found boxes: not the whole grid


def test_random_crop_offsets_are_uniform_and_independent():
    """top from 0..H-m and left from 0..W-m, uniform, drawn apart (every (top, left) cell equally often)."""
    height, width, side, n = 8, 9, 5, 40_000
    boxes = sample_random_boxes(n, height, width, side, torch.Generator().manual_seed(6), torch.device("cpu"))
    cells = (height - side + 1) * (width - side + 1)
    counts = torch.bincount(boxes[:, 0] * (width - side + 1) + boxes[:, 1], minlength=cells).double()
    assert len(counts) == cells and (boxes[:, 0] <= height - side).all() and (boxes[:, 1] <= width - side).all()
    assert chi_square(counts, torch.full_like(counts, n / cells)) < chi_square_bound(cells - 1)
