"""`seit train --finetune`: a token ViT's transformer into a pixel ViT (and back), what carries and what is re-made."""

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from seit import runtime
from seit.cli import main
from seit.engine.config import TrainConfig
from seit.engine.train import Trainer
from seit.models import ClassifierMeta, finetune_from, resample_pos_embed, save_classifier
from seit.utils.serialization import CheckpointError

SMALL = dict(embed_dim=32, depth=1, num_heads=2)
STEM, HEAD = ("patch_embed.proj.weight", "patch_embed.proj.bias"), ("head.weight", "head.bias")


def save_vit(path, name, classes, grid, in_chans, **sizes):
    sizes = sizes or SMALL
    model = timm.create_model(name, num_classes=len(classes), img_size=grid, in_chans=in_chans, **sizes)
    meta = ClassifierMeta(
        name,
        len(classes),
        input="pixels" if "pixel" in name else "tokens",
        grid_size=grid,
        in_chans=in_chans,
        model_kwargs=sizes,
        class_names=list(classes),
    )
    save_classifier(path, model, meta, None if "pixel" in name else torch.randn(16, in_chans))
    return model.state_dict()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two classes of four 16 px images (the pixel ViT sees 2x2 patches of 8 px)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in ("dark", "light"):
        (root / name).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 128, (16, 16, 3)) + (127 if name == "light" else 0)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def token_ckpt(tmp_path_factory):
    """A token ViT on a 7x7 crop (3x3 patches) with three classes: every shape but the transformer's differs."""
    path = tmp_path_factory.mktemp("ckpt") / "token.safetensors"
    return path, save_vit(path, "deit_tiny_token_4", "abc", 7, 4)


def pixel_config(images, out, ckpt, *extra_model):
    cfg = TrainConfig()
    cfg.data.images, cfg.data.image_size, cfg.data.num_workers = str(images), 16, 0
    cfg.model.model, cfg.model.finetune = "deit_tiny_pixel_8", str(ckpt)
    cfg.model.embed_dim, cfg.model.depth, cfg.model.num_heads = SMALL.values()
    cfg.run.output, cfg.run.device, cfg.run.tensorboard = str(out), "cpu", False
    return cfg


def test_token_checkpoint_seeds_a_pixel_vit_at_step_0(images, token_ckpt, tmp_path):
    path, saved = token_ckpt
    cfg = pixel_config(images, tmp_path / "run", path)
    with runtime.start(cfg.run.output, device="cpu", resume=None, restart=False) as run:
        ours = Trainer(cfg, run).model.state_dict()
    carried = [k for k in saved if k not in (*STEM, *HEAD, "pos_embed")]
    assert any(k.startswith("blocks.0.") for k in carried) and {"cls_token", "fc_norm.weight"} <= set(carried)
    for key in carried:
        torch.testing.assert_close(ours[key], saved[key], rtol=0, atol=0, msg=key)
    torch.testing.assert_close(ours["pos_embed"], resample_pos_embed(saved["pos_embed"], (2, 2)))
    # the pixel stem: timm's init of a fresh ViT (PyTorch's Conv2d default: uniform within 1/sqrt(fan_in))
    assert ours[STEM[0]].shape == (32, 3, 8, 8) and ours[STEM[0]].abs().max() <= 1 / (3 * 8 * 8) ** 0.5
    # a fresh head for the folder's two classes: trunc-normal weights, zero bias
    assert ours[HEAD[0]].shape == (2, 32) and ours[HEAD[1]].abs().sum() == 0


def test_finetune_logs_what_was_carried_resampled_and_reinitialised(images, token_ckpt, tmp_path, capsys):
    args = ["train", "--images", str(images), "--image-size", "16", "--model", "deit_tiny_pixel_8"]
    args += ["--embed-dim", "32", "--depth", "1", "--num-heads", "2", "--finetune", str(token_ckpt[0])]
    args += ["--output", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "4", "--num-workers", "0"]
    assert main([*args, "--no-tensorboard", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "fine-tuning from" in x)
    assert "carried 15 tensors: cls_token, blocks (12), fc_norm (2)" in line
    assert "resampled: pos_embed" in line
    assert "re-initialised: head.weight, head.bias, patch_embed.proj.weight, patch_embed.proj.bias" in line


def test_pixel_checkpoint_seeds_a_token_vit_and_a_coinciding_stem_is_still_remade(tmp_path):
    """The other way round; a pixel stem of the token stem's very shape (3 channels, 4x4) is re-made all the same."""
    path = tmp_path / "pixel.safetensors"
    saved = save_vit(path, "deit_tiny_pixel_8", "ab", 16, 3, patch_size=4, **SMALL)
    model = timm.create_model("deit_tiny_token_4", num_classes=2, img_size=8, in_chans=3, **SMALL)
    assert model.state_dict()[STEM[0]].shape == saved[STEM[0]].shape
    loaded = finetune_from(model, str(path), ["a", "b"])
    assert loaded.reinitialised == list(STEM) and loaded.resampled == []  # 4x4 patches either way
    assert not torch.equal(model.state_dict()[STEM[0]], saved[STEM[0]])
    torch.testing.assert_close(model.state_dict()[HEAD[0]], saved[HEAD[0]])  # same classes: the head carries


def test_same_class_count_with_other_names_remakes_the_head(tmp_path):
    path = tmp_path / "token.safetensors"
    saved = save_vit(path, "deit_tiny_token_4", ["cat", "dog"], 7, 4)
    model = timm.create_model("deit_tiny_token_4", num_classes=2, img_size=7, in_chans=4, **SMALL)
    assert finetune_from(model, str(path), ["car", "bus"]).reinitialised == list(HEAD)
    assert not torch.equal(model.head.weight, saved[HEAD[0]]) and model.head.bias.abs().sum() == 0


def test_another_width_or_depth_is_a_one_line_error_naming_the_flags(images, tmp_path, capsys):
    path = tmp_path / "wide.safetensors"
    save_vit(path, "deit_tiny_token_4", "abc", 7, 4, embed_dim=48, depth=2, num_heads=3)
    args = ["train", "--images", str(images), "--image-size", "16", "--model", "deit_tiny_pixel_8"]
    args += ["--embed-dim", "32", "--depth", "1", "--num-heads", "2", "--finetune", str(path)]
    assert main([*args, "--output", str(tmp_path / "run"), "--num-workers", "0", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"seit: error: --finetune {path}: a ViT 48 wide with 2 blocks and 3 heads")
    assert err.endswith("--embed-dim 48 --depth 2 --num-heads 3")


def test_a_classifier_without_class_token_is_refused(tmp_path):
    path = tmp_path / "no-class-token.safetensors"
    sizes = dict(SMALL, class_token=False)
    model = timm.create_model("deit_tiny_pixel_8", num_classes=2, img_size=16, **sizes)
    meta = ClassifierMeta("deit_tiny_pixel_8", 2, input="pixels", grid_size=16, in_chans=3, model_kwargs=sizes)
    save_classifier(path, model, meta, None)
    vit = timm.create_model("deit_tiny_pixel_8", num_classes=2, img_size=16, **SMALL)
    with pytest.raises(CheckpointError, match="not a ViT classifier"):
        finetune_from(vit, str(path), ["a", "b"])
