import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import RandomResizedCrop

from seit.augment.crop import center_box, resized_crop, sample_random_boxes, sample_rrc_boxes

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


def test_random_and_centre_crops():
    g = torch.Generator().manual_seed(4)
    boxes = sample_random_boxes(2000, H, W, 28, g, torch.device("cpu"))
    assert (boxes[:, 2:] == 28).all()
    assert boxes[:, 0].min() == 0 and boxes[:, 0].max() == 4 and boxes[:, 1].max() == 4  # all 5 offsets occur
    assert center_box(32, 32, 28) == (2, 2) and center_box(8, 8, 7) == (0, 0) and center_box(16, 16, 14) == (1, 1)
