"""Crops of the token map computed on embeddings, per sample, batched.

SeiT one-hot encodes each id grid ([K, H, W] floats), crops it, resizes it with
``F.interpolate(mode="bicubic")`` (align_corners=False, no antialiasing) and multiplies by the codebook.
Every step is linear and bicubic resizing is separable, so the same result is
``Wy @ codebook[ids] @ Wx^T`` per channel, with Wy [m, H], Wx [m, W] the per-sample interpolation matrices
of the crop box (zero outside it). That needs D = 32 channels instead of K = 391 and never builds the
one-hot map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seit.augment.config import AugmentConfig

CUBIC_A = -0.75  # PyTorch's bicubic kernel coefficient
RRC_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before falling back


Sides = int | torch.Tensor  # one side for the whole batch, or one per sample (int64 [B]: images of many sizes)


def _per_sample(side: Sides, batch: int, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(side, dtype=torch.long, device=device).expand(batch)


def sample_rrc_boxes(
    batch: int,
    height: Sides,
    width: Sides,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Crop boxes [B, 4] = (top, left, h, w) drawn as torchvision's ``RandomResizedCrop.get_params``."""
    opts = {"generator": generator, "device": device}
    height, width = _per_sample(height, batch, device), _per_sample(width, batch, device)
    area = (height * width).double().unsqueeze(1)
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(batch, RRC_ATTEMPTS, **opts).double())
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(batch, RRC_ATTEMPTS, **opts).double())
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= width.unsqueeze(1)) & (h > 0) & (h <= height.unsqueeze(1))
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    found = ok.any(dim=1)

    # torchvision's fallback: a centred crop clamped to the aspect-ratio range
    in_ratio = width.double() / height
    narrow, wide = in_ratio < min(ratio), in_ratio > max(ratio)
    fb_w = torch.where(wide, torch.round(height.double() * max(ratio)).long(), width)
    fb_h = torch.where(narrow, torch.round(width.double() / min(ratio)).long(), height)
    h = torch.where(found, h, fb_h)
    w = torch.where(found, w, fb_w)
    u = torch.rand(2, batch, **opts)
    top = torch.minimum((u[0] * (height - h + 1)).long(), height - h)
    left = torch.minimum((u[1] * (width - w + 1)).long(), width - w)
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def sample_random_boxes(
    batch: int, height: Sides, width: Sides, side: Sides, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Boxes [B, 4] of a plain ``side`` x ``side`` random crop (SeiT's ``RC``, flag --src)."""
    height, width = _per_sample(height, batch, device), _per_sample(width, batch, device)
    side = _per_sample(side, batch, device)
    u = torch.rand(2, batch, generator=generator, device=device)
    top = torch.minimum((u[0] * (height - side + 1)).long(), height - side)
    left = torch.minimum((u[1] * (width - side + 1)).long(), width - side)
    return torch.stack([top, left, side, side], dim=1)


def sample_train_crops(
    config: AugmentConfig,
    batch: int,
    height: Sides,
    width: Sides,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training crop boxes [B, 4] and horizontal flips (bool [B], None when --hflip-prob is 0) as ``config`` says.

    The one sampler of both training paths (token maps of one grid size; batches of images of any sizes,
    given per sample, in the pixel baseline), so crop area, aspect and flip follow the same distribution by
    construction, as fractions of the grid or image. ``--crop random`` boxes are ``config.crop_side`` squares.
    """
    if config.crop == "rrc":
        boxes = sample_rrc_boxes(batch, height, width, config.rrc_scale, config.rrc_aspect, generator, device)
    else:
        if isinstance(height, torch.Tensor) or isinstance(width, torch.Tensor):
            pairs = zip(_per_sample(height, batch, device).tolist(), _per_sample(width, batch, device).tolist())
            side = torch.tensor([config.crop_side(h, w) for h, w in pairs], device=device)
        else:
            side = config.crop_side(height, width)
        boxes = sample_random_boxes(batch, height, width, side, generator, device)
    flip = None
    if config.hflip_prob > 0:
        flip = torch.rand(batch, generator=generator, device=device) < config.hflip_prob
    return boxes, flip


def center_box(height: int, width: int, side: int) -> tuple[int, int]:
    """Top-left corner of SeiT's centre crop (``CC``): (H - m) // 2, (W - m) // 2."""
    return (height - side) // 2, (width - side) // 2


def _cubic_taps(t: torch.Tensor) -> torch.Tensor:
    """Weights [..., 4] of the taps at offsets -1, 0, 1, 2 for fractional position t (PyTorch's kernel)."""
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def resize_taps(start: torch.Tensor, length: torch.Tensor, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 bicubic taps per output position: (index, weight), each [B, out, 4].

    Output o of ``F.interpolate(crop, out, mode="bicubic", align_corners=False)`` on the crop
    [start, start + length) is sum_k weight[o, k] * input[index[o, k]], with ``index`` on the full axis.
    Taps beyond the crop edge repeat the edge, as PyTorch does.
    """
    device = start.device
    scale = length.float().unsqueeze(1) / out  # [B, 1]; float32 as PyTorch's own kernel computes it
    src = (torch.arange(out, device=device, dtype=torch.float32).unsqueeze(0) + 0.5) * scale - 0.5
    base = torch.floor(src)
    weight = _cubic_taps(src - base)
    index = base.long().unsqueeze(-1) + torch.arange(-1, 3, device=device)
    index = torch.minimum(index.clamp_min(0), (length - 1).view(-1, 1, 1)) + start.view(-1, 1, 1)
    return index, weight


def resized_crop(
    ids: torch.Tensor, codebook: torch.Tensor, boxes: torch.Tensor, side: int, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Embeddings of ``boxes`` cropped out of ``ids`` (int64 [B, H, W]), resized to side x side: [B, side, side, D].

    Channels-last; ``flip`` (bool [B]) mirrors samples horizontally. Equal, up to float rounding, to SeiT's
    bicubic resize of the cropped one-hot map followed by the codebook product. Each interpolation matrix
    row has 4 non-zeros, so the two separable passes are weighted 4-tap gathers (``embedding_bag``): the
    width pass reads code vectors straight from the codebook, the height pass mixes whole output rows.
    """
    batch, height, _ = ids.shape
    col, col_w = resize_taps(boxes[:, 1], boxes[:, 3], side)  # [B, side, 4]
    if flip is not None:
        col = torch.where(flip.view(-1, 1, 1), col.flip(1), col)
        col_w = torch.where(flip.view(-1, 1, 1), col_w.flip(1), col_w)
    row, row_w = resize_taps(boxes[:, 0], boxes[:, 2], side)

    # width pass: rows[b, h, q] = sum_l col_w[b, q, l] * codebook[ids[b, h, col[b, q, l]]]
    taps = ids.gather(2, col.view(batch, 1, -1).expand(batch, height, -1)).view(-1, 4)
    weights = col_w.view(batch, 1, -1).expand(batch, height, -1).reshape(-1, 4)
    rows = F.embedding_bag(taps, codebook, per_sample_weights=weights, mode="sum")  # [(b, h, q), D]

    # height pass: out[b, p] = sum_k row_w[b, p, k] * rows[b, row[b, p, k]], whole rows of side * D values
    taps = (torch.arange(batch, device=ids.device).view(-1, 1, 1) * height + row).view(-1, 4)
    table = rows.view(batch * height, -1)
    out = F.embedding_bag(taps, table, per_sample_weights=row_w.view(-1, 4), mode="sum")
    return out.view(batch, side, side, -1)
