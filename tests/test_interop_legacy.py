"""SeiT's pickled tokenizer module, crafted here: our weights inside classes named as enhancing-transformers'."""

import os
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from seit.interop.legacy import Inert, load_legacy_pickle, module_state_dict
from seit.tokenizer.checkpoint import load_tokenizer, read_tokenizer
from seit.utils.serialization import CheckpointError
from tokenizer_testdata import FIXTURES

# Our module class -> where enhancing-transformers (or einops) defines the class it stands for.
REFERENCE_PATHS = {
    "Tokenizer": ("enhancing.modules.stage1.vitvqgan", "ViTVQ"),
    "ViTEncoder": ("enhancing.modules.stage1.layers", "ViTEncoder"),
    "ViTDecoder": ("enhancing.modules.stage1.layers", "ViTDecoder"),
    "Transformer": ("enhancing.modules.stage1.layers", "Transformer"),
    "PreNorm": ("enhancing.modules.stage1.layers", "PreNorm"),
    "Attention": ("enhancing.modules.stage1.layers", "Attention"),
    "FeedForward": ("enhancing.modules.stage1.layers", "FeedForward"),
    "VectorQuantizer": ("enhancing.modules.stage1.quantizers", "VectorQuantizer"),
    "ToTokens": ("einops.layers.torch", "Rearrange"),
    "ToGrid": ("einops.layers.torch", "Rearrange"),
}


def _fake_module(monkeypatch, name: str) -> types.ModuleType:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):  # pickle imports the parent packages too
        prefix = ".".join(parts[:i])
        if prefix not in sys.modules:
            monkeypatch.setitem(sys.modules, prefix, types.ModuleType(prefix))
    return sys.modules[name]


def _fake_modules(monkeypatch) -> dict[tuple[str, str], type]:
    """Importable fake classes at the reference's paths (only while the pickle is written)."""
    classes = {}
    loss_path = ("enhancing.losses.vqperceptual", "VQLPIPSWithDiscriminator")
    for module_name, cls_name in [*REFERENCE_PATHS.values(), loss_path]:
        module = _fake_module(monkeypatch, module_name)
        if not hasattr(module, cls_name):
            cls = type(cls_name, (nn.Module,), {"__module__": module_name, "__qualname__": cls_name})
            setattr(module, cls_name, cls)
        classes[module_name, cls_name] = getattr(module, cls_name)
    loss_fn_module = _fake_module(monkeypatch, "enhancing.losses.layers")

    def hinge_d_loss(real, fake):
        raise AssertionError("must never run")

    hinge_d_loss.__module__, hinge_d_loss.__qualname__ = "enhancing.losses.layers", "hinge_d_loss"
    loss_fn_module.hinge_d_loss = hinge_d_loss
    return classes


@pytest.fixture()
def legacy_pickle(tmp_path, monkeypatch):
    """A torch.save'd module tree like SeiT's tokenizer.ckpt, holding the fixture tokenizer's weights."""
    tok = load_tokenizer(FIXTURES / "vitvq-tiny.ckpt")
    with monkeypatch.context() as m:
        classes = _fake_modules(m)
        for module in tok.modules():
            if type(module).__name__ in REFERENCE_PATHS:
                module.__class__ = classes[REFERENCE_PATHS[type(module).__name__]]
        loss = classes["enhancing.losses.vqperceptual", "VQLPIPSWithDiscriminator"]()
        loss.discriminator = nn.Sequential(nn.Conv2d(3, 4, 4), nn.BatchNorm2d(4), nn.LeakyReLU(0.2))
        loss.disc_loss = sys.modules["enhancing.losses.layers"].hinge_d_loss
        tok.loss = loss
        tok.__dict__.pop("config")
        path = tmp_path / "tokenizer.ckpt"
        torch.save(tok, path)
    assert "enhancing.modules.stage1.vitvqgan" not in sys.modules  # the loader cannot lean on them
    return path


def test_legacy_module_loads_through_the_allow_list(legacy_pickle):
    images = torch.from_numpy(np.load(FIXTURES / "vitvq-tiny-expected.npz")["images"])
    expected = load_tokenizer(FIXTURES / "vitvq-tiny.ckpt")
    tok = load_tokenizer(legacy_pickle, allow_legacy_pickle=True)
    assert tok.config == expected.config
    assert torch.equal(tok.encode(images), expected.encode(images))
    for name, tensor in expected.state_dict().items():
        assert torch.equal(tok.state_dict()[name], tensor), name
    src = read_tokenizer(legacy_pickle, allow_legacy_pickle=True)
    assert src.kind == "legacy pickled module (enhancing.modules.stage1.vitvqgan.ViTVQ)"
    assert not any(k.startswith("loss.") for k in src.state_dict)


def test_records_are_inert_and_keep_the_module_state(legacy_pickle):
    root = load_legacy_pickle(legacy_pickle)
    assert isinstance(root, Inert) and root.path == "enhancing.modules.stage1.vitvqgan.ViTVQ"
    loss = root.state["_modules"]["loss"]
    assert issubclass(loss.state["disc_loss"], Inert)  # the function is a stand-in class, never called
    sd = module_state_dict(root)
    assert "loss.discriminator.1.running_mean" in sd and "encoder.en_pos_embedding" in sd


def test_without_the_opt_in_the_legacy_pickle_is_refused(legacy_pickle):
    with pytest.raises(CheckpointError, match=r"tokenizer\.ckpt: holds pickled objects.*--allow-legacy-pickle"):
        load_tokenizer(legacy_pickle)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Unknown(nn.Module):
    pass


def test_code_and_unknown_classes_are_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": Evil(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused to unpickle posix\.system") as e:
        load_tokenizer(tmp_path / "evil.ckpt", allow_legacy_pickle=True)
    assert "nothing in the file was run" in str(e.value)
    assert not marker.exists()
    torch.save(Unknown(), tmp_path / "unknown.ckpt")
    with pytest.raises(CheckpointError, match=r"refused to unpickle test_interop_legacy\.Unknown"):
        load_legacy_pickle(tmp_path / "unknown.ckpt")
