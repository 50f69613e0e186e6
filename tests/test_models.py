import subprocess
import sys

import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F

from seit.errors import SeitError
from seit.models import (
    PIXEL_MODELS,
    STRIDE1_TOKEN_MODELS,
    TOKEN_MODELS,
    ClassifierMeta,
    StemAdaptor,
    load_classifier,
    load_for_finetune,
    resample_pos_embed,
    save_classifier,
)
from seit.utils.serialization import CheckpointError

SMALL = dict(embed_dim=32, depth=1, num_heads=2)  # a tiny transformer for fast tests


def test_import_seit_alone_does_not_import_torch():
    code = "import sys, seit; print('torch' in sys.modules or 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registry_holds_token_and_pixel_vits():
    assert set(timm.list_models("deit_*_token_*")) == {*TOKEN_MODELS, *STRIDE1_TOKEN_MODELS} and len(TOKEN_MODELS) == 6
    assert set(timm.list_models("deit_*_pixel_*")) == set(PIXEL_MODELS) and len(PIXEL_MODELS) == 6
    widths = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
    for name in TOKEN_MODELS:
        model = timm.create_model(name, device="meta")
        size, dim = name.split("_")[1], int(name.rsplit("_", 1)[1])
        assert (model.embed_dim, model.blocks[0].attn.num_heads, len(model.blocks)) == (*widths[size], 12)
        assert isinstance(model.patch_embed, StemAdaptor) and model.patch_embed.proj.in_channels == dim
        assert model.pos_embed.shape[1] == 1 + 14 * 14  # 28x28 tokens -> 196 patches + class token
        assert model.global_pool == "avg" and isinstance(model.norm, torch.nn.Identity)
    for name in PIXEL_MODELS:
        model = timm.create_model(name, device="meta")
        patch = int(name.rsplit("_", 1)[1])
        assert model.patch_embed.proj.kernel_size == (patch, patch) and model.pos_embed.shape[1] == 197
        assert model.global_pool == "avg" and isinstance(model.norm, torch.nn.Identity)


def test_token_and_pixel_models_share_the_transformer():
    token = timm.create_model("deit_tiny_token_32", **SMALL, num_classes=5)
    pixel = timm.create_model("deit_tiny_pixel_16", **SMALL, num_classes=5)
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items() if not k.startswith("patch_embed")}  # noqa: E731
    assert shapes(token) == shapes(pixel)
    assert token(torch.randn(2, 32, 28, 28)).shape == pixel(torch.randn(2, 3, 224, 224)).shape == (2, 5)
    small_patches = timm.create_model("deit_tiny_pixel_8", **SMALL, num_classes=5)
    assert shapes(small_patches) == shapes(pixel)  # the same sequence from images of half the side
    assert small_patches(torch.randn(2, 3, 112, 112)).shape == (2, 5)


def test_forward_is_global_average_pool_then_norm_then_head():
    model = timm.create_model("deit_tiny_token_4", **SMALL, num_classes=3).eval()
    x = torch.randn(2, 4, 28, 28)
    with torch.no_grad():
        tokens = model.blocks(model._pos_embed(model.patch_embed(x)))
        expected = model.head(model.fc_norm(tokens[:, 1:].mean(dim=1)))  # class token excluded from the pool
        torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("side", [7, 14, 15, 28])
def test_stem_adaptor_takes_any_crop_size(side):
    model = timm.create_model("deit_tiny_token_32", **SMALL, img_size=side, num_classes=2)
    stem = model.patch_embed.proj
    assert (stem.kernel_size, stem.stride, stem.padding) == ((4, 4), (2, 2), (1, 1))
    assert model.patch_embed(torch.randn(1, 32, side, side)).shape[1] == (side // 2) ** 2
    assert model(torch.randn(2, 32, side, side)).shape == (2, 2)
    with pytest.raises(ValueError, match="stride"):
        StemAdaptor(img_size=side, kernel_size=3, padding=1)


def test_pretrained_weights_are_not_downloaded():
    with pytest.raises(SeitError, match=r"seit\.models\.load_classifier\(path\)"):
        timm.create_model("deit_small_token_32", pretrained=True)


def test_resample_pos_embed_is_seit_finetuning_interpolation():
    pos = torch.randn(1, 1 + 14 * 14, 8)
    out = resample_pos_embed(pos, (7, 7))
    grid = pos[:, 1:].reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(7, 7), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(out, torch.cat([pos[:, :1], expected.reshape(1, 49, 8)], dim=1))


def test_finetune_loading_resizes_positions_and_resets_the_head():
    source = timm.create_model("deit_tiny_token_32", **SMALL, num_classes=10)
    target = timm.create_model("deit_tiny_token_32", **SMALL, img_size=14, num_classes=4)
    loaded = load_for_finetune(target, source.state_dict())
    assert loaded.reinitialised == ["head.weight", "head.bias"] and loaded.resampled == ["pos_embed"]
    ours = target.state_dict()
    torch.testing.assert_close(ours["blocks.0.attn.qkv.weight"], source.state_dict()["blocks.0.attn.qkv.weight"])
    torch.testing.assert_close(ours["pos_embed"], resample_pos_embed(source.pos_embed.detach(), (7, 7)))
    assert target.head.weight.shape == (4, 32) and target.head.bias.abs().sum() == 0
    other = timm.create_model("deit_tiny_token_32", embed_dim=32, depth=2, num_heads=2)
    with pytest.raises(CheckpointError, match=r"missing \['blocks.1"):
        load_for_finetune(other, source.state_dict())


def test_classifier_file_round_trip_with_codebook_and_crop(tmp_path):
    model = timm.create_model("deit_tiny_token_4", **SMALL, img_size=7, num_classes=3).eval()
    meta = ClassifierMeta("deit_tiny_token_4", 3, grid_size=7, in_chans=4, model_kwargs=SMALL, class_names=list("abc"))
    codebook = torch.randn(16, 4)
    save_classifier(tmp_path / "model.safetensors", model, meta, codebook)
    loaded = load_classifier(tmp_path / "model.safetensors")
    assert loaded.meta == meta and torch.equal(loaded.codebook, codebook)
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    # what a caller may pass must agree with what the file records
    assert load_classifier(tmp_path / "model.safetensors", model_name="deit_tiny_token_4", img_size=7).meta == meta
    with pytest.raises(CheckpointError, match="records img_size 7, not 9"):
        load_classifier(tmp_path / "model.safetensors", img_size=9)
    with pytest.raises(CheckpointError, match="is a deit_tiny_token_4, not a deit_base_token_4"):
        load_classifier(tmp_path / "model.safetensors", model_name="deit_base_token_4")


def test_older_classifier_layouts_still_load(tmp_path):
    """Files in the wild: seit train's before the format tag, and save_model's seit.classifier/1."""
    import json
    from dataclasses import asdict

    model = timm.create_model("deit_tiny_token_4", **SMALL, img_size=7, num_classes=3).eval()
    meta = ClassifierMeta("deit_tiny_token_4", 3, grid_size=7, in_chans=4, model_kwargs=SMALL)
    untagged = tmp_path / "untagged.safetensors"
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | {"codebook": torch.randn(16, 4)}
    safetensors.torch.save_file(tensors, str(untagged), metadata={"seit.classifier": json.dumps(asdict(meta))})
    config = {"architecture": "deit_tiny_token_4", "img_size": [7, 7], "in_chans": 4, "num_classes": 3, **SMALL}
    version1 = tmp_path / "v1.safetensors"
    metadata = {"format": "seit.classifier/1", "config": json.dumps(config)}
    safetensors.torch.save_file(model.state_dict(), str(version1), metadata=metadata)
    x = torch.randn(2, 4, 7, 7)
    for path in (untagged, version1):
        loaded = load_classifier(path)
        assert loaded.meta.grid_size == 7 and loaded.meta.num_classes == 3
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), model(x))
    assert load_classifier(version1).codebook is None and load_classifier(untagged).codebook.shape == (16, 4)
    bare = tmp_path / "bare.safetensors"  # a plain timm state dict: its shapes tell the architecture
    wide = timm.create_model("deit_tiny_token_4", depth=1, img_size=7, num_classes=3).eval()
    safetensors.torch.save_file(wide.state_dict(), str(bare))
    loaded = load_classifier(bare)
    assert loaded.meta.model == "deit_tiny_token_4" and loaded.meta.grid_size == 6  # shapes give 2 x patches
    with torch.no_grad():
        torch.testing.assert_close(load_classifier(bare, img_size=7).model(x), wide(x))


def test_foreign_or_missing_classifier_files_are_one_line(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a ViT classifier state dict"):
        load_classifier(foreign)
    tokenizer = tmp_path / "tokenizer.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(tokenizer), metadata={"format": "seit-tokenizer/1"})
    with pytest.raises(CheckpointError, match=r"not a seit classifier file \(format 'seit-tokenizer/1'"):
        load_classifier(tokenizer)
    with pytest.raises(CheckpointError, match="no such classifier file"):
        load_classifier(tmp_path / "missing.safetensors")
    with pytest.raises(SeitError, match=r"a folder without best\.json"):
        load_classifier(tmp_path)


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread (and do not fight other jobs for a shared machine's cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_token_vit_overfits_a_small_token_set(one_thread):
    from seit.augment import AugmentConfig, TokenAugment

    torch.manual_seed(0)
    codebook = torch.randn(64, 8)
    ids = torch.randint(0, 64, (64, 8, 8), dtype=torch.int16)
    labels = torch.arange(64) % 4
    x = TokenAugment(AugmentConfig(), codebook, num_classes=4).eval(ids)  # 8x8 grid -> 7x7 centre crop
    model = timm.create_model("deit_tiny_token_32", **SMALL, in_chans=8, img_size=7, num_classes=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):  # 100% from about step 25
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == labels).float().mean().item()
    assert accuracy == 1.0, f"train accuracy {accuracy}"


# ---- the Stem-Adaptor itself ------------------------------------------------------------------------------
def test_stem_adaptor_defaults_are_seit_s_stem():
    """Conv2d(32 -> 768, kernel 4, stride 2, padding 1, bias) over a 28x28 crop: 14x14 = 196 patches."""
    stem = StemAdaptor()
    conv = stem.proj
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        32, 768, (4, 4), (2, 2), (1, 1)
    )  # fmt: skip
    assert conv.bias is not None and stem.img_size == (28, 28) and stem.grid_size == (14, 14)
    assert stem.num_patches == 196


def test_stem_adaptor_output_is_its_overlapping_convolution_as_a_sequence():
    stem = StemAdaptor(img_size=10, in_chans=6, embed_dim=8).eval()
    x = torch.randn(2, 6, 10, 10)
    want = F.conv2d(x, stem.proj.weight, stem.proj.bias, stride=2, padding=1)
    torch.testing.assert_close(stem(x), want.flatten(2).transpose(1, 2))
    assert stem(x).shape == (2, 25, 8)


def test_stem_adaptor_settings_reach_its_layers():
    stem = StemAdaptor(img_size=9, patch_size=1, in_chans=4, embed_dim=16, bias=False, dtype=torch.float64,
                       norm_layer=torch.nn.LayerNorm)  # fmt: skip
    assert stem.proj.kernel_size == (3, 3) and stem.proj.stride == (1, 1) and stem.proj.bias is None
    assert stem.proj.weight.dtype == torch.float64 and isinstance(stem.norm, torch.nn.LayerNorm)
    assert stem.norm.normalized_shape == (16,)
    assert stem(torch.randn(1, 4, 9, 9, dtype=torch.float64)).shape == (1, 81, 16)
    assert StemAdaptor(device="meta", embed_dim=8).proj.weight.is_meta
    wide = StemAdaptor(img_size=12, patch_size=1, kernel_size=5, padding=2, embed_dim=8)  # kernel - 2 x 2 = stride
    assert wide.proj.kernel_size == (5, 5) and wide.grid_size == (12, 12)
    assert StemAdaptor(padding=2, embed_dim=8).proj.kernel_size == (6, 6)  # default kernel: stride + 2 x padding
    with pytest.raises(ValueError, match=r"^StemAdaptor: kernel_size - 2 \* padding must equal the stride .*got "
                       r"kernel 5, padding 1, stride 2$"):  # fmt: skip
        StemAdaptor(kernel_size=5, embed_dim=8)


def test_stem_adaptor_takes_other_crop_sizes_but_keeps_its_stride():
    stem = StemAdaptor(embed_dim=8)
    stem.set_input_size(img_size=20)
    assert stem.img_size == (20, 20) and stem.grid_size == (10, 10) and stem.num_patches == 100
    stem.set_input_size(img_size=16, patch_size=2)
    stem.set_input_size(patch_size=(2, 2))
    assert stem.grid_size == (8, 8) and stem.proj.kernel_size == (4, 4)
    for stride in (1, (1, 1), (2, 1)):
        with pytest.raises(ValueError, match=r"^StemAdaptor: the stem stride is part of the architecture and "
                           r"cannot be changed$"):  # fmt: skip
            stem.set_input_size(patch_size=stride)
