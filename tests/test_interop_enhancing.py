import pytest
import torch

from seit.interop.enhancing import config_from_state_dict, config_from_yaml, vitvq_state_dict
from seit.tokenizer.config import PRESETS, TokenizerConfig, TokenizerError, TransformerConfig
from seit.tokenizer.model import Tokenizer
from tokenizer_testdata import FIXTURES

OLD_STYLE_YAML = """\
model:
    target: enhancing.modules.stage1.vitvqgan.ViTVQ
    params:
        image_key: image
        hparams: {image_size: 256, patch_size: 8, dim: 768, depth: 12, heads: 12, mlp_dim: 3072}
        qparams: {embed_dim: 32, n_embed: 8192}
"""


@pytest.fixture(scope="module")
def lightning():
    return torch.load(FIXTURES / "vitvq-tiny.ckpt", map_location="cpu", weights_only=True)


def test_fixture_yaml_and_shapes_give_the_same_config(lightning):
    from_yaml = config_from_yaml(FIXTURES / "vitvq-tiny.yaml")
    assert from_yaml == PRESETS["vitvq-tiny"]
    assert config_from_state_dict(vitvq_state_dict(lightning, "x")) == from_yaml


def test_older_yaml_form_and_imagenet_shapes(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(OLD_STYLE_YAML)
    assert config_from_yaml(path) == PRESETS["vitvq-base"]
    with torch.device("meta"):
        sd = Tokenizer(PRESETS["vitvq-large"]).state_dict()
    assert config_from_state_dict(sd) == PRESETS["vitvq-large"]  # asymmetric encoder/decoder


def test_single_head_of_full_width_has_no_output_projection():
    cfg = TokenizerConfig(32, 8, TransformerConfig(64, 1, 1, 96, dim_head=64), TransformerConfig(64, 1, 2, 96), 16, 8)
    sd = Tokenizer(cfg).state_dict()
    assert "encoder.transformer.layers.0.0.fn.to_out.weight" not in sd
    assert "decoder.transformer.layers.0.0.fn.to_out.weight" in sd
    assert config_from_state_dict(sd) == cfg


def test_state_dict_extraction_drops_loss_strips_prefixes_renames_old_layout(lightning):
    sd = lightning["state_dict"]
    noisy = {f"model.{k}": v for k, v in sd.items()}
    noisy["model.loss.discriminator.main.0.weight"] = torch.zeros(1)
    noisy["model.loss.perceptual_loss.net.slice1.0.weight"] = torch.zeros(1)
    for side in ("encoder", "decoder"):  # the older layers.py: final norms outside the transformers
        for p in ("weight", "bias"):
            noisy[f"model.{side}.norm.{p}"] = noisy.pop(f"model.{side}.transformer.norm.{p}")
    noisy["model.decoder.to_pixel.conv_out.weight"] = noisy.pop("model.decoder.to_pixel.1.weight")
    noisy["model.decoder.to_pixel.conv_out.bias"] = noisy.pop("model.decoder.to_pixel.1.bias")
    out = vitvq_state_dict({"state_dict": noisy, "epoch": 3}, "x.ckpt")
    assert set(out) == set(sd)
    assert all(torch.equal(out[k], sd[k]) for k in sd)


def test_errors_name_the_file(tmp_path, lightning):
    with pytest.raises(TokenizerError, match=r"x\.ckpt: no ViT-VQGAN weights"):
        vitvq_state_dict({"state_dict": {"foo.weight": torch.zeros(1)}}, "x.ckpt")
    sd = dict(lightning["state_dict"])
    del sd["quantizer.embedding.weight"]
    with pytest.raises(TokenizerError, match=r"y\.ckpt: incomplete ViT-VQGAN weights .*--config"):
        config_from_state_dict(sd, "y.ckpt")
    bad = tmp_path / "gumbel.yaml"
    bad.write_text("model:\n  target: enhancing.modules.stage1.vitvqgan.ViTVQGumbel\n  params: {}\n")
    with pytest.raises(TokenizerError, match=r"gumbel\.yaml: model target .*ViTVQGumbel"):
        config_from_yaml(bad)
    bad.write_text("model:\n  params:\n    image_size: 64\n")
    with pytest.raises(TokenizerError, match=r"missing model\.params entry"):
        config_from_yaml(bad)
