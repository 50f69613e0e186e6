"""TokenAdapt augmentation: geometric transforms of token grids done in TokenAdapt's converted space.

SeiT++ (``engine_mtm.py``) lifts code vectors with ``forward_conversion``, applies flip / rotation /
translation / shear / resized crop to that feature map, and reads the crop back as codes with
``forward_inversion``. :func:`tokenadapt_augment` does the same for a batch, with one random transform per
sample drawn from a ``torch.Generator`` (on the CPU, so the stream is the same on any device: save
``generator.get_state()`` with a checkpoint and a resumed run draws the same transforms).

Every transform is one affine map ``theta`` [B, 2, 3] from output to input coordinates, normalised to
[-1, 1] (``F.affine_grid``'s convention, ``align_corners=False``), applied by one bilinear
``grid_sample`` with zeros outside. The same ``theta`` means the same geometric transform at any
resolution, which is what lets ``seit tokenadapt train`` apply it to images and to feature maps alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seit.augment.crop import sample_rrc_boxes
from seit.errors import SeitError
from seit.models.tokenadapt import TokenAdapt
from seit.tokenadapt.config import GeometryConfig

__all__ = ["GeometryConfig", "crop_window", "sample_geometry", "tokenadapt_augment", "warp"]


def _uniform(generator: torch.Generator, batch: int, half_range: float) -> torch.Tensor:
    return (torch.rand(batch, generator=generator, dtype=torch.float64) * 2 - 1) * half_range


def sample_geometry(batch: int, side: int, config: GeometryConfig, generator: torch.Generator) -> torch.Tensor:
    """Random transforms as ``theta`` [B, 2, 3] (float64, CPU): flip, then affine ops, then a resized crop.

    ``side``: cells per side of the map the crop box is drawn on (crop boxes are whole cells, as SeiT++'s
    ``RRC`` on the converted map). The number of draws per sample is fixed, so the generator advances alike
    whatever is drawn.
    """
    flip = torch.rand(batch, generator=generator) < config.hflip_prob
    group = torch.rand(batch, generator=generator) < config.affine_prob
    on = (torch.rand(batch, 5, generator=generator) < config.op_prob) & group.unsqueeze(1)
    angle = torch.deg2rad(_uniform(generator, batch, config.rotate)) * on[:, 0]
    tx = _uniform(generator, batch, 2 * config.translate) * on[:, 1]  # fraction of the side -> [-1, 1] units
    ty = _uniform(generator, batch, 2 * config.translate) * on[:, 2]
    shx = torch.tan(torch.deg2rad(_uniform(generator, batch, config.shear))) * on[:, 3]
    shy = torch.tan(torch.deg2rad(_uniform(generator, batch, config.shear))) * on[:, 4]
    boxes = sample_rrc_boxes(
        batch, side, side, config.rrc_scale, config.rrc_aspect, generator, torch.device("cpu")
    ).double()

    eye = torch.eye(3, dtype=torch.float64).repeat(batch, 1, 1)
    mirror = eye.clone()
    mirror[:, 0, 0] = torch.where(flip, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotate = eye.clone()
    rotate[:, 0, 0], rotate[:, 0, 1], rotate[:, 1, 0], rotate[:, 1, 1] = cos, -sin, sin, cos
    shear = eye.clone()
    shear[:, 0, 1], shear[:, 1, 0] = shx, shy
    move = eye.clone()
    move[:, 0, 2], move[:, 1, 2] = tx, ty
    affine = move @ rotate @ shear  # where the affine sends a point of its input
    top, left, h, w = boxes.unbind(1)
    crop = eye.clone()
    crop[:, 0, 0], crop[:, 0, 2] = w / side, (2 * left + w) / side - 1
    crop[:, 1, 1], crop[:, 1, 2] = h / side, (2 * top + h) / side - 1
    # output -> crop box -> before the affine -> before the flip
    return (mirror @ torch.linalg.inv(affine) @ crop)[:, :2]


def crop_window(grid: int, crop: int) -> torch.Tensor:
    """``E`` [3, 3] (float64): the centred ``crop`` x ``crop`` tokens of a ``grid`` x ``grid`` map, as an affine
    map from the crop's normalised coordinates to the whole map's (offset ``(grid - crop) // 2`` tokens)."""
    offset = (grid - crop) // 2
    window = torch.eye(3, dtype=torch.float64)
    window[0, 0] = window[1, 1] = crop / grid
    window[0, 2] = window[1, 2] = (2 * offset + crop) / grid - 1
    return window


def warp(maps: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """``maps`` [B, C, H, W] resampled at ``theta`` [B, 2, 3] to [B, C, size, size] (bilinear, zeros outside)."""
    theta = theta.to(device=maps.device, dtype=maps.dtype)
    grid = F.affine_grid(theta, [maps.shape[0], maps.shape[1], size, size], align_corners=False)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def tokenadapt_augment(
    codes: torch.Tensor,
    model: TokenAdapt,
    generator: torch.Generator,
    *,
    codebook: torch.Tensor | None = None,
    geometry: GeometryConfig | None = None,
    return_vectors: bool = False,
) -> torch.Tensor:
    """Random geometric transforms of token grids through TokenAdapt (SeiT++'s TokenAdapt augmentation).

    ``codes``: ids [B, g, g] (integer; needs ``codebook``) or code vectors [B, D, g, g] (float), with g
    ``model.config.grid``. ``codebook`` [K, D]: the vectors the pair was trained on (seit stores'
    ``codebook``, :meth:`Tokenizer.classifier_codebook`). ``generator``: a CPU ``torch.Generator``; the
    transforms are drawn from it alone. ``geometry``: the transform distribution (default SeiT++'s).
    Returns ids [B, m, m] (long) of the m = ``model.config.crop`` crop grid, or with ``return_vectors``
    their codebook vectors [B, D, m, m] (what SeiT++ feeds its model). The model runs without gradients.
    """
    cfg = model.config
    if not codes.is_floating_point():
        if codebook is None:
            raise SeitError("tokenadapt_augment: ids need the codebook they index (codebook=[K, D] vectors)")
        if codes.ndim != 3:
            raise SeitError(f"tokenadapt_augment: expected ids [B, {cfg.grid}, {cfg.grid}], got {list(codes.shape)}")
        codes = codebook.to(codes.device)[codes.long()].permute(0, 3, 1, 2)
    elif return_vectors and codebook is None:
        raise SeitError("tokenadapt_augment: return_vectors needs the codebook (codebook=[K, D] vectors)")
    features = model.convert(codes.float())
    theta = sample_geometry(len(codes), features.shape[-1], geometry or GeometryConfig(), generator)
    ids = model.invert(warp(features, theta, cfg.crop * cfg.scale))
    if return_vectors:
        return codebook.to(ids.device)[ids].permute(0, 3, 1, 2)
    return ids
