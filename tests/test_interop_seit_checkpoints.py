import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from seit.interop.seit_checkpoints import checkpoint_filter_fn, infer_architecture, to_seit_state_dict
from seit.models import load_classifier
from seit.utils.serialization import CheckpointError

CLASSIFIER = Path(__file__).parent / "fixtures" / "seit-reference" / "classifier"


def _fixture_inputs():
    ref = np.load(CLASSIFIER / "token-vit-tiny-expected.npz")
    x = torch.from_numpy(ref["codebook"])[torch.from_numpy(ref["token_ids"])].permute(0, 3, 1, 2)
    return x, torch.from_numpy(ref["logits"])


def test_fixture_logits_match_the_reference_implementation():
    hp = json.loads((CLASSIFIER / "token-vit-tiny.json").read_text())
    # width 64 is no DeiT size: name the family and the head count, the rest comes from the shapes
    path = CLASSIFIER / "token-vit-tiny.pth"
    model, codebook, meta = load_classifier(path, model_name="deit_tiny_token_32", num_heads=hp["num_heads"])
    assert codebook is None and meta.grid_size == hp["img_size"] and meta.in_chans == hp["in_chans"]
    assert model.patch_embed.img_size == (hp["img_size"],) * 2 and len(model.blocks) == hp["depth"]
    assert model.num_classes == hp["num_classes"] and model.fc_norm.eps == hp["layer_norm_eps"]
    stem = model.patch_embed.proj
    assert (stem.kernel_size, stem.stride, stem.padding) == ((4, 4), (2, 2), (1, 1))
    x, expected = _fixture_inputs()
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    # the filter on an already loaded dict, and channels_last inputs (what TokenAugment produces)
    again = meta.create_model().eval()
    again.load_state_dict(checkpoint_filter_fn(torch.load(path, weights_only=True)))
    with torch.no_grad():
        torch.testing.assert_close(again(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5, rtol=0)


def test_fixture_needs_the_head_count_it_cannot_infer():
    with pytest.raises(CheckpointError, match="num_heads"):
        load_classifier(CLASSIFIER / "token-vit-tiny.pth")


@pytest.mark.parametrize(
    "arch", ["deit_small_token_32", "deit_base_token_32", "deit_small_token_4", "deit_base_token_4"]
)
def test_released_architectures_map_onto_timm_models(arch):
    shapes = json.loads((CLASSIFIER / "official-models-state-dict-shapes.json").read_text())[arch]
    released = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    name, args = infer_architecture(released)
    assert name == arch and args["img_size"] == 28 and args["num_classes"] == 1000
    model = timm.create_model(name, device="meta", **args)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped = {k: tuple(v.shape) for k, v in checkpoint_filter_fn(released).items()}
    assert mapped == ours
    assert "fc_norm.weight" in mapped and "norm.weight" not in mapped  # SeiT's post-pool norm is timm's fc_norm
    assert {k: list(v) for k, v in to_seit_state_dict(ours).items()} == shapes


def test_training_checkpoint_with_args_loads_safely(tmp_path):
    source = timm.create_model("deit_tiny_token_4", num_classes=7, img_size=14, depth=2)
    ckpt = {
        "model": {f"module.{k}": v for k, v in to_seit_state_dict(source.state_dict()).items()},
        "args": argparse.Namespace(model="deit_tiny_token_4", lr=5e-4, src=False),  # SeiT saves its argparse args
        "epoch": 3,
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    model = load_classifier(path).model
    assert model.pretrained_cfg["architecture"] == "deit_tiny_token_4"
    assert model.num_classes == 7 and model.patch_embed.img_size == (14, 14)
    x = torch.randn(2, 4, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source.eval()(x))


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_classifier(evil)
    other = tmp_path / "other.pth"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, other)
    with pytest.raises(CheckpointError, match="not a ViT classifier"):
        load_classifier(other)
    with pytest.raises(CheckpointError, match="no entry 'model_ema'"):
        checkpoint_filter_fn(torch.load(CLASSIFIER / "token-vit-tiny.pth", weights_only=True), key="model_ema")
    with pytest.raises(CheckpointError, match="32 input channels but deit_tiny_token_4 takes 4"):
        load_classifier(CLASSIFIER / "token-vit-tiny.pth", model_name="deit_tiny_token_4", num_heads=2)
    with pytest.raises(CheckpointError, match=r"weights do not fit .*size mismatch"):  # shapes the arguments contradict
        load_classifier(CLASSIFIER / "token-vit-tiny.pth", model_name="deit_tiny_token_32", num_heads=2, mlp_ratio=2.0)
