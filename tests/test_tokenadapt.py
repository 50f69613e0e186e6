"""TokenAdapt: the augmentation pre-training calls, ``seit tokenadapt train``, its files and its CLI."""

from __future__ import annotations

import pytest
import torch

from seit.augment.tokenadapt import GeometryConfig, crop_window, sample_geometry, tokenadapt_augment, warp
from seit.errors import ConfigError, SeitError
from seit.models.tokenadapt import TokenAdapt, TokenAdaptConfig

TINY = TokenAdaptConfig(code_dim=8, codebook_size=64, grid=8, crop=6, dim=32, depth=1, heads=1, mlp_dim=64)
FLIP_ONLY = GeometryConfig(hflip_prob=1.0, affine_prob=0.0, rrc_scale=(1.0, 1.0), rrc_aspect=(1.0, 1.0))


def _ids(batch=3, seed=0):
    return torch.randint(
        0, TINY.codebook_size, (batch, TINY.grid, TINY.grid), generator=torch.Generator().manual_seed(seed)
    )


def test_augment_returns_crop_ids_or_vectors_and_replays_from_the_generator_state():
    torch.manual_seed(0)
    model, codebook = TokenAdapt(TINY), torch.randn(TINY.codebook_size, TINY.code_dim)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    ids = tokenadapt_augment(_ids(), model, g, codebook=codebook)
    assert ids.shape == (3, TINY.crop, TINY.crop) and ids.dtype == torch.long
    g.set_state(state)
    vectors = tokenadapt_augment(_ids(), model, g, codebook=codebook, return_vectors=True)
    assert torch.equal(vectors, codebook[ids].permute(0, 3, 1, 2))
    g.set_state(state)
    from_vectors = tokenadapt_augment(codebook[_ids()].permute(0, 3, 1, 2), model, g)
    assert torch.equal(from_vectors, ids)


def test_augment_refuses_ids_without_their_codebook():
    with pytest.raises(SeitError, match="codebook"):
        tokenadapt_augment(_ids(), TokenAdapt(TINY), torch.Generator())


def test_geometry_identity_and_flip_are_exact_on_any_map():
    maps = torch.randn(2, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    same = warp(maps, sample_geometry(2, 16, GeometryConfig.identity(), g), 16)
    torch.testing.assert_close(same, maps, atol=1e-5, rtol=0)
    flipped = warp(maps, sample_geometry(2, 16, FLIP_ONLY, g), 16)
    torch.testing.assert_close(flipped, maps.flip(-1), atol=1e-5, rtol=0)


def test_crop_window_picks_the_centred_tokens():
    maps = torch.randn(2, 3, 16, 16)  # an 8x8 token grid at 2 cells per token
    window = crop_window(8, 6)[:2].repeat(2, 1, 1)
    torch.testing.assert_close(warp(maps, window, 12), maps[..., 2:14, 2:14], atol=1e-5, rtol=0)


def test_geometry_ranges_are_checked():
    with pytest.raises(ConfigError, match="--rrc-scale"):
        GeometryConfig(rrc_scale=(0.9, 0.2))
    with pytest.raises(ConfigError, match="--hflip-prob"):
        GeometryConfig(hflip_prob=1.5)
