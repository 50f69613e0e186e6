"""Grid-aware token ViTs: the stride-1 ``..._s1`` stems for small token grids, and seit train's patch-count rule."""

import logging

import pytest
import timm
import torch

from seit.cli import main
from seit.errors import ConfigError
from seit.interop.seit_checkpoints import infer_architecture
from seit.models import (
    STRIDE1_TOKEN_MODELS,
    TOKEN_MODELS,
    ClassifierMeta,
    check_token_patches,
    load_classifier,
    save_classifier,
    token_patch_side,
)

SMALL = dict(embed_dim=32, depth=1, num_heads=2)


@pytest.mark.parametrize(
    "name, crop, side",
    [
        ("deit_tiny_token_32", 7, 3),  # an 8x8 grid: SeiT's stem leaves 3x3 patches
        ("deit_tiny_token_32_s1", 7, 7),
        ("deit_tiny_token_32", 14, 7),  # the demo's 16x16 grid
        ("deit_tiny_token_32_s1", 14, 14),
        ("deit_tiny_token_4", 28, 14),  # SeiT's 32x32 grid
        ("deit_tiny_token_4_s1", 28, 28),
    ],
)
def test_patches_per_grid(name, crop, side):
    model = timm.create_model(name, **SMALL, img_size=crop, num_classes=2)
    dim = model.patch_embed.proj.in_channels
    assert token_patch_side(name, crop) == side
    assert model.patch_embed(torch.randn(1, dim, crop, crop)).shape[1] == side * side
    assert model.pos_embed.shape[1] == 1 + side * side
    assert model(torch.randn(2, dim, crop, crop)).shape == (2, 2)


def test_stride1_models_differ_from_seit_models_only_in_the_stem_kernel():
    for seit_name, fine_name in zip(TOKEN_MODELS, STRIDE1_TOKEN_MODELS, strict=True):
        assert fine_name == seit_name + "_s1"
        seit_model = timm.create_model(seit_name, device="meta")
        fine = timm.create_model(fine_name, device="meta")
        stem, fine_stem = seit_model.patch_embed.proj, fine.patch_embed.proj
        assert (stem.kernel_size, stem.stride, stem.padding) == ((4, 4), (2, 2), (1, 1))  # SeiT's, unchanged
        assert (fine_stem.kernel_size, fine_stem.stride, fine_stem.padding) == ((3, 3), (1, 1), (1, 1))
        shapes = lambda m: {k: v.shape for k, v in m.state_dict().items() if k != "patch_embed.proj.weight"}  # noqa: E731
        # default crops: 28 at stride 2 and 14 at stride 1 both give SeiT's 196 patches
        assert shapes(seit_model) == shapes(fine)


def test_a_stride1_state_dict_is_recognised():
    state = timm.create_model("deit_tiny_token_32_s1", img_size=7, num_classes=4, device="meta").state_dict()
    name, args = infer_architecture(state)
    assert name == "deit_tiny_token_32_s1" and args["img_size"] == 7


def test_the_patch_rule_warns_below_4x4_and_refuses_below_2x2():
    assert check_token_patches("deit_tiny_token_32", 14, (16, 16)) is None  # 7x7
    assert check_token_patches("deit_tiny_token_32_s1", 7, (8, 8)) is None
    warning = check_token_patches("deit_tiny_token_32", 7, (8, 8))
    assert "3x3 patches" in warning and "--model deit_tiny_token_32_s1" in warning and "8x8 token grid" in warning
    with pytest.raises(ConfigError, match=r"--model deit_small_token_4 sees only 1x1 .*--model deit_small_token_4_s1"):
        check_token_patches("deit_small_token_4", 3, (4, 4))
    with pytest.raises(ConfigError, match=r"1x1 patches.*larger grid or a larger --crop-size"):
        check_token_patches("deit_small_token_4_s1", 1, (1, 1))
    assert check_token_patches("vit_tiny_patch16_224", 3, (4, 4)) is None  # not a token ViT of seit's: no rule


def test_stride1_classifier_file_round_trip(tmp_path):
    model = timm.create_model("deit_tiny_token_4_s1", **SMALL, img_size=7, num_classes=3).eval()
    meta = ClassifierMeta("deit_tiny_token_4_s1", 3, grid_size=7, in_chans=4, model_kwargs=SMALL)
    save_classifier(tmp_path / "model.safetensors", model, meta, torch.randn(16, 4))
    loaded = load_classifier(tmp_path / "model.safetensors")
    assert loaded.meta == meta and loaded.model.patch_embed.proj.stride == (1, 1)
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))


def _train(store, out, model, *extra):
    args = ["train", "--store", str(store), "--val-store", str(store), "--output", str(out), "--model", model]
    args += ["--embed-dim", "32", "--depth", "1", "--num-heads", "2", "--num-workers", "0", "--no-tensorboard"]
    return main([*args, "--batch-size", "16", "--epochs", "1", "--warmup-epochs", "0", "--no-model-ema", *extra])


def test_seit_train_on_an_8x8_grid_store(class_token_store, tmp_path, caplog):
    store = class_token_store(tmp_path / "store", 32)  # 8x8 grids -> 7x7 crops
    with caplog.at_level(logging.WARNING):
        assert _train(store, tmp_path / "fine", "deit_tiny_token_4_s1") == 0
    assert "patches" not in caplog.text
    model, _, meta = load_classifier(tmp_path / "fine" / "model.safetensors")
    assert meta.model == "deit_tiny_token_4_s1" and meta.grid_size == 7 and model.pos_embed.shape[1] == 1 + 7 * 7
    with caplog.at_level(logging.WARNING):
        assert _train(store, tmp_path / "coarse", "deit_tiny_token_4", "--max-steps", "1") == 0
    assert "sees only 3x3 patches" in caplog.text and "--model deit_tiny_token_4_s1" in caplog.text


def test_seit_train_refuses_a_grid_that_leaves_one_patch(class_token_store, tmp_path, capsys):
    store = class_token_store(tmp_path / "store", 8)
    assert _train(store, tmp_path / "run", "deit_tiny_token_4", "--crop-size", "3") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model deit_tiny_token_4 sees only 1x1 patches" in err[0]
