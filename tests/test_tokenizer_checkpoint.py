import os

import numpy as np
import pytest
import safetensors.torch
import torch

from seit.tokenizer.checkpoint import describe_tokenizer, load_tokenizer, read_tokenizer, save_tokenizer
from seit.tokenizer.config import PRESETS, TokenizerError
from seit.tokenizer.model import Tokenizer
from seit.utils.serialization import CheckpointError
from tokenizer_testdata import FIXTURES

CKPT = FIXTURES / "vitvq-tiny.ckpt"
YAML = FIXTURES / "vitvq-tiny.yaml"


@pytest.fixture(scope="module")
def images():
    return torch.from_numpy(np.load(FIXTURES / "vitvq-tiny-expected.npz")["images"])


@pytest.fixture(scope="module")
def codes():
    return torch.from_numpy(np.load(FIXTURES / "vitvq-tiny-expected.npz")["codes"]).view(-1, 8, 8)


def test_lightning_checkpoint_loads_with_or_without_its_yaml(images, codes):
    for kwargs in ({}, {"config": YAML}):
        tok = load_tokenizer(CKPT, **kwargs)
        assert not tok.training and tok.config == PRESETS["vitvq-tiny"]
        assert torch.equal(tok.encode(images), codes)
    assert read_tokenizer(CKPT).kind == "enhancing-transformers Lightning checkpoint"


def test_our_format_roundtrips_as_file_and_folder(tmp_path, images, codes):
    tok = load_tokenizer(CKPT)
    path = save_tokenizer(tok, tmp_path / "tok.safetensors")
    assert save_tokenizer(tok, tmp_path / "run") == tmp_path / "run" / "tokenizer.safetensors"
    for source in (path, tmp_path / "run"):
        back = load_tokenizer(source)
        assert back.config == tok.config and torch.equal(back.encode(images), codes)
        assert all(p.requires_grad for p in back.parameters())  # fine-tunable after loading
    assert read_tokenizer(path).kind == "seit tokenizer"


def test_bare_state_dicts_and_training_checkpoints(tmp_path, images, codes):
    sd = torch.load(CKPT, map_location="cpu", weights_only=True)["state_dict"]
    torch.save(sd, tmp_path / "bare.pth")
    safetensors.torch.save_file(sd, tmp_path / "bare.safetensors")
    torch.save({"format": "seit-tokenizer-train/1", "config": {**_config_dict()}, "model": sd}, tmp_path / "c.pt")
    for name in ("bare.pth", "bare.safetensors", "c.pt"):
        assert torch.equal(load_tokenizer(tmp_path / name).encode(images), codes), name


def _config_dict():
    from seit.config import to_dict

    return to_dict(PRESETS["vitvq-tiny"])


def test_wrong_yaml_and_bad_files_are_clear_errors(tmp_path):
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(YAML.read_text().replace("n_embed: 512", "n_embed: 256"))
    with pytest.raises(TokenizerError, match=r"vitvq-tiny\.ckpt: weights do not fit .*quantizer\.embedding\.weight"):
        load_tokenizer(CKPT, config=wrong)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.ckpt: damaged or not a torch\.save file"):
        load_tokenizer(tmp_path / "junk.ckpt")
    with pytest.raises(TokenizerError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "missing.safetensors")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(TokenizerError, match=r"must hold tokenizer\.safetensors"):
        load_tokenizer(tmp_path / "emptydir")


def test_pickled_code_is_refused_without_the_opt_in(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="--allow-legacy-pickle"):
        load_tokenizer(tmp_path / "evil.ckpt")
    assert not (tmp_path / "pwned").exists()


def test_describe_reports_config_and_parameter_counts():
    info = describe_tokenizer(CKPT)
    assert info["grid_shape"] == [8, 8] and info["config"]["codebook_size"] == 512
    expected = sum(p.numel() for p in Tokenizer(PRESETS["vitvq-tiny"]).parameters())
    assert info["parameters"]["total"] == expected
