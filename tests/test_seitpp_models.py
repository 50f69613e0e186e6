"""SeiT++'s MTM model, TokenAdapt and layer-wise lr decay against outputs of SeiT++'s own code (see the
fixtures' README), plus the guards of seit's versions."""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from seit.engine.layer_decay import layer_decay_param_groups
from seit.errors import SeitError
from seit.interop.seitpp_checkpoints import (
    load_tokenadapt,
    mtm_checkpoint_filter_fn,
    tokenadapt_config,
    tokenadapt_state_dict,
)
from seit.models import MaskRatio, TokenMasks, masked_token_loss, sample_masks
from seit.models.tokenadapt import TokenAdapt
from seit.utils.serialization import CheckpointError, safe_torch_load

REF = Path(__file__).parent / "fixtures" / "seitpp-reference"
ATOL = 2e-5


def _load(name):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return safe_torch_load(REF / name)


def _reference_mtm():
    model = timm.create_model("mtm_token_vit_tiny_test")
    model.load_state_dict(mtm_checkpoint_filter_fn(_load("mtm-tiny.pth"), name="mtm-tiny.pth"))
    ref = np.load(REF / "mtm-tiny-expected.npz")
    masks = TokenMasks(dropped=torch.from_numpy(ref["dropped"]), masked=torch.from_numpy(ref["masked"]))
    return model.eval(), ref, masks


def test_mtm_forward_and_losses_match_the_reference():
    model, ref, masks = _reference_mtm()
    ids = torch.from_numpy(ref["token_ids"])
    with torch.no_grad():
        latent = model.forward_encoder(ids, masks)
        logits = model.forward_decoder(latent, masks)
    torch.testing.assert_close(latent, torch.from_numpy(ref["latent"]), atol=ATOL, rtol=0)
    torch.testing.assert_close(logits[..., :32], torch.from_numpy(ref["logits_first32"]), atol=ATOL, rtol=0)
    torch.testing.assert_close(logits.logsumexp(-1), torch.from_numpy(ref["logits_logsumexp"]), atol=ATOL, rtol=0)
    masked = masks.masked.view(2, 14, 14)
    for key, kwargs in [
        ("loss_smoothing_0_1", dict(smoothing=0.1)),
        ("loss_smoothing_0", dict(smoothing=0.0)),
        ("loss_bce", dict(bce=True)),
    ]:
        loss = masked_token_loss(logits, ids, masked, **kwargs)
        torch.testing.assert_close(loss, torch.from_numpy(ref[key]), atol=ATOL, rtol=0, msg=key)
    with torch.no_grad():  # forward() with the fixed masks: SeiT++'s default loss (smoothing 0.1)
        torch.testing.assert_close(model(ids, masks), torch.from_numpy(ref["loss_smoothing_0_1"]), atol=ATOL, rtol=0)


def test_mtm_loss_ignores_unmasked_patches():
    model, ref, masks = _reference_mtm()
    ids = torch.from_numpy(ref["token_ids"])
    with torch.no_grad():
        logits = model.forward_logits(ids, masks)
    token_mask = masks.masked.view(2, 14, 1, 14, 1).expand(2, 14, 2, 14, 2).reshape(2, 784)
    changed = logits.clone()
    changed[~token_mask] = torch.randn_like(changed[~token_mask])
    masked = masks.masked.view(2, 14, 14)
    assert masked_token_loss(changed, ids, masked) == masked_token_loss(logits, ids, masked)
    changed[token_mask] += torch.randn_like(changed[token_mask])
    assert masked_token_loss(changed, ids, masked) != masked_token_loss(logits, ids, masked)


SEITPP_RATIO, ALL_DROPPED = MaskRatio(0.4, 1.0, 0.45, 0.25), MaskRatio(1.0, 1.0, 1.0, 0.25)


@pytest.mark.parametrize("ratio", [SEITPP_RATIO, ALL_DROPPED], ids=["seitpp", "all-dropped"])
def test_mtm_trains_one_step_with_drawn_masks(ratio):
    model = timm.create_model("mtm_token_vit_tiny_test", mask_ratio=ratio)
    ids = torch.randint(0, 391, (3, 28, 28))
    loss = model(ids, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert math.isfinite(loss.item())
    assert model.cls_token.grad.abs().sum() > 0
    # the encoder's input (embeddings, mask token) learns only from patches that reach it; the decoder scores
    # against a detached copy of the embedding table, as in SeiT++
    reaches = ratio is SEITPP_RATIO
    assert (model.mask_token_label.grad.abs().sum() > 0) == reaches
    assert (model.token_emb.word_embeddings.weight.grad.abs().sum() > 0) == reaches
    assert "pos_embed" in model.state_dict() and "pos_embed" not in dict(model.named_parameters())  # fixed sin-cos


def test_mask_sampling_follows_seitpp():
    ratio = MaskRatio(0.4, 1.0, 0.45, 0.25)
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([ratio.sample(gen) for _ in range(4000)])
    assert draws.min() >= 0.4 and draws.max() <= 1.0
    # mean of normal(0.45, 0.25) truncated to [0.4, 1.0]: mu + std * (phi(a) - phi(b)) / (Phi(b) - Phi(a))
    normal = torch.distributions.Normal(0.0, 1.0)
    a, b = torch.tensor((0.4 - 0.45) / 0.25), torch.tensor((1.0 - 0.45) / 0.25)
    pdf = lambda z: normal.log_prob(z).exp()  # noqa: E731
    expected = 0.45 + 0.25 * (pdf(a) - pdf(b)) / (normal.cdf(b) - normal.cdf(a))
    assert abs(draws.mean() - expected) < 0.01
    masks = sample_masks(5, 196, ratio, torch.Generator().manual_seed(1))
    assert (masks.dropped.sum(1) == math.ceil(196 * 0.4)).all()  # 79, as SeiT++'s fixture shows
    assert (masks.masked.sum(1) == masks.masked.sum(1)[0]).all() and masks.masked.sum(1)[0] >= 79
    assert not (masks.dropped & ~masks.masked).any()
    again = sample_masks(5, 196, ratio, torch.Generator().manual_seed(1))
    assert torch.equal(masks.masked, again.masked) and torch.equal(masks.dropped, again.dropped)


@pytest.mark.parametrize("bad", [dict(min=0.0), dict(min=0.6, max=0.5), dict(max=1.5), dict(std=0.0)])
def test_mask_ratio_refuses_bad_settings(bad):
    with pytest.raises(SeitError, match="mask_ratio_"):
        MaskRatio(**{**dict(min=0.4, max=1.0, mu=0.45, std=0.25), **bad})


def test_masks_that_drop_unequal_counts_are_refused():
    model = timm.create_model("mtm_token_vit_tiny_test").eval()
    masks = model.sample_masks(2, torch.Generator().manual_seed(0))
    masks.dropped[0, masks.masked[0].nonzero()[-1]] = True  # one more dropped patch in sample 0
    with pytest.raises(SeitError, match="same number of patches"):
        model(torch.zeros(2, 28, 28, dtype=torch.long), masks)
    with pytest.raises(SeitError, match=r"token ids \[B, 28, 28\]"):
        model(torch.zeros(2, 32, 32, dtype=torch.long))


def test_tokenadapt_matches_the_reference():
    ta = load_tokenadapt(REF / "tokenadapt-tiny.ckpt")
    assert ta.config.dim == 32 and ta.config.grid == 32 and ta.config.crop == 28 and ta.config.codebook_size == 391
    ref = np.load(REF / "tokenadapt-tiny-expected.npz")
    vectors = torch.from_numpy(ref["codebook"])[torch.from_numpy(ref["grid_ids"])].permute(0, 3, 1, 2)
    with torch.no_grad():
        converted = ta.convert(vectors)
        features = converted.flip(-1)[:, :, 3:59, 5:61]
        logits = ta.reverse_logits(features)
    torch.testing.assert_close(converted[:, :, ::4, ::4], torch.from_numpy(ref["converted_every4"]), atol=ATOL, rtol=0)
    torch.testing.assert_close(converted.sum((2, 3)), torch.from_numpy(ref["converted_sum"]), atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(logits[..., :32], torch.from_numpy(ref["reverse_logits_first32"]), atol=ATOL, rtol=0)
    torch.testing.assert_close(
        logits.logsumexp(-1), torch.from_numpy(ref["reverse_logits_logsumexp"]), atol=ATOL, rtol=0
    )
    assert torch.equal(ta.invert(features), torch.from_numpy(ref["inverted_ids"]))


def test_tokenadapt_comes_out_of_an_mtm_checkpoint_too(tmp_path):
    from_mtm = tokenadapt_state_dict(_load("mtm-tiny.pth"))
    released = _load("tokenadapt-tiny.ckpt")
    assert from_mtm.keys() == released.keys() and all(torch.equal(from_mtm[k], released[k]) for k in released)
    assert not any(k.startswith("conversion_function") for k in mtm_checkpoint_filter_fn(_load("mtm-tiny.pth")))
    torch.save({"model": {f"module.{k}": v for k, v in released.items()}}, tmp_path / "ddp.pth")
    assert load_tokenadapt(tmp_path / "ddp.pth").config == load_tokenadapt(REF / "tokenadapt-tiny.ckpt").config


def test_full_size_layouts_are_seitpp_s():
    released = json.loads((REF / "seitpp-state-dict-shapes.json").read_text())
    with torch.device("meta"):
        mtm = timm.create_model("mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32")
        ta = TokenAdapt()
    assert {k: list(v.shape) for k, v in mtm.state_dict().items()} == released[
        "mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32"
    ]
    assert {k: list(v.shape) for k, v in ta.state_dict().items()} == released["tokenadapt"]
    shapes = {k: torch.empty(v, device="meta") for k, v in released["tokenadapt"].items()}
    assert tokenadapt_config(shapes) == ta.config  # the defaults are the released sizes


def test_checkpoints_of_another_kind_are_refused(tmp_path):
    classifier = timm.create_model("deit_tiny_token_32", depth=1, num_classes=3).state_dict()
    with pytest.raises(CheckpointError, match="not a SeiT\\+\\+ MTM pre-training checkpoint"):
        mtm_checkpoint_filter_fn({"model": classifier}, name="trained-vit.ckpt")
    torch.save(classifier, tmp_path / "classifier.pth")
    with pytest.raises(CheckpointError, match=r"classifier\.pth: holds no TokenAdapt weights"):
        load_tokenadapt(tmp_path / "classifier.pth")
    pair = _load("tokenadapt-tiny.ckpt")
    del pair["reverse_transform.1.weight"]
    torch.save(pair, tmp_path / "cut.ckpt")
    with pytest.raises(CheckpointError, match=r"cut\.ckpt: TokenAdapt weights incomplete"):
        load_tokenadapt(tmp_path / "cut.ckpt")
    with pytest.raises(SeitError, match=r"expected code vectors \[B, 32, 32, 32\]"):
        load_tokenadapt(REF / "tokenadapt-tiny.ckpt").convert(torch.zeros(1, 32, 28, 28))


def test_layer_decay_groups_match_seitpp_s_param_groups_lrd():
    ref = json.loads((REF / "lr-decay-groups.json").read_text())
    model = timm.create_model("deit_tiny_token_32", img_size=28, embed_dim=64, depth=3, num_heads=4, num_classes=10)
    groups = layer_decay_param_groups(model, ref["weight_decay"], ref["layer_decay"])
    names = {id(p): n for n, p in model.named_parameters()}
    ours = [
        {"lr_scale": g["lr_scale"], "weight_decay": g["weight_decay"], "params": [names[id(p)] for p in g["params"]]}
        for g in groups
    ]
    assert ours == ref["groups"]


def test_layer_decay_scales_reach_the_optimizer_through_timm_s_scheduler():
    model = timm.create_model("deit_tiny_token_32", img_size=14, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    optimizer = create_optimizer_v2(layer_decay_param_groups(model, 0.05, 0.5), "adamw", lr=1e-3, weight_decay=0.05)
    scheduler = CosineLRScheduler(optimizer, t_initial=10, warmup_t=0)
    scheduler.step(1)
    top = max(g["lr"] for g in optimizer.param_groups)
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert by_name["layer_0_decay"]["lr"] == pytest.approx(top * 0.5**3)
    assert by_name["layer_2_no_decay"]["lr"] == pytest.approx(top * 0.5)
    assert by_name["layer_3_decay"]["lr"] == top and by_name["layer_0_no_decay"]["weight_decay"] == 0.0


def test_layer_decay_groups_leave_out_frozen_parameters_and_need_blocks():
    model = timm.create_model("deit_tiny_token_32", img_size=14, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    model.patch_embed.requires_grad_(False)  # frozen parameters first: every trainable one after them is grouped
    grouped = {id(p) for g in layer_decay_param_groups(model, 0.05, 0.5) for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad} and len(grouped) > 0

    class Plain(torch.nn.Module):  # blocks but no no_weight_decay(): only 1-D tensors are exempt
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.Sequential(torch.nn.Linear(2, 2))
            self.pos_embed = torch.nn.Parameter(torch.zeros(1, 2, 2))

    groups = {g["name"]: g for g in layer_decay_param_groups(Plain(), 0.05, 0.5)}
    assert sorted(groups) == ["layer_0_decay", "layer_1_decay", "layer_1_no_decay"]
    assert groups["layer_0_decay"]["weight_decay"] == 0.05  # pos_embed decays when the model names no exemptions
    with pytest.raises(ValueError, match=r"^layer decay needs a model with transformer 'blocks'; Linear has none$"):
        layer_decay_param_groups(torch.nn.Linear(2, 2), 0.05, 0.5)


def test_seit_train_layer_decay_scales_each_layer_s_learning_rate(class_token_store, tmp_path):
    from seit.cli import main

    store = class_token_store(tmp_path / "train", 32, seed=0)
    out = tmp_path / "run"
    tiny = ["--model", "deit_tiny_token_4", "--embed-dim", "32", "--depth", "2", "--num-heads", "2"]
    fast = ["--num-workers", "0", "--no-tensorboard", "--batch-size", "16", "--unscale-lr", "--no-model-ema"]
    args = ["train", "--store", str(store), "--output", str(out), *tiny, *fast, "--epochs", "1", "--warmup-epochs", "0"]
    assert main([*args, "--layer-decay", "0.5", "--max-steps", "1"]) == 0
    groups = torch.load(out / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["layer_0_decay"] == pytest.approx(lrs["layer_3_decay"] * 0.5**3)
    assert lrs["layer_1_no_decay"] == pytest.approx(lrs["layer_3_no_decay"] * 0.5**2)


def test_seit_train_refuses_the_mtm_model_as_a_classifier():
    from seit.errors import ConfigError
    from seit.models import check_model_args

    with pytest.raises(ConfigError, match="--model mtm_token_vit_tiny_test is SeiT\\+\\+'s masked-token pre-training"):
        check_model_args("mtm_token_vit_tiny_test")
