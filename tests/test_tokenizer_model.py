import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seit.tokenizer.config import PRESETS, TokenizerError, preset
from seit.tokenizer.model import Tokenizer, count_parameters, sincos_position_embedding
from tokenizer_testdata import FIXTURES


@pytest.fixture(scope="module")
def reference():
    sd = torch.load(FIXTURES / "vitvq-tiny.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    model = Tokenizer(PRESETS["vitvq-tiny"]).eval()
    model.load_state_dict(sd)
    return model, sd, dict(np.load(FIXTURES / "vitvq-tiny-expected.npz"))


def test_matches_the_reference_outputs(reference):
    model, _, expected = reference
    images = torch.from_numpy(expected["images"])
    with torch.no_grad():
        latents = model.encode_latents(images)
        ids = model.encode(images)
        recon = model.decode(torch.from_numpy(expected["codes"]).view(-1, 8, 8))
    torch.testing.assert_close(latents, torch.from_numpy(expected["pre_quant_latent"]), rtol=0, atol=1e-5)
    assert ids.shape == (4, 8, 8) and ids.dtype == torch.long
    assert torch.equal(ids.flatten(1), torch.from_numpy(expected["codes"]))
    torch.testing.assert_close(recon, torch.from_numpy(expected["reconstructions"]), rtol=0, atol=1e-5)


def test_fixed_position_embeddings_equal_the_reference(reference):
    _, sd, _ = reference
    torch.testing.assert_close(sincos_position_embedding(64, (8, 8)), sd["encoder.en_pos_embedding"], rtol=0, atol=0)
    torch.testing.assert_close(sincos_position_embedding(64, (8, 8)), sd["decoder.de_pos_embedding"], rtol=0, atol=0)


def test_imagenet_presets_have_the_reference_state_dict_shapes():
    shapes = json.loads((FIXTURES / "vitvq-imagenet-state-dict-shapes.json").read_text())
    for name in ("small", "base", "large"):
        with torch.device("meta"):
            model = Tokenizer(PRESETS[f"vitvq-{name}"])
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert ours == shapes[f"imagenet_vitvq_{name}"], name
        assert model.grid_shape == (32, 32) and model.codebook_size == 8192


def test_quantisation_is_nearest_normalised_code(reference):
    model = reference[0]
    latents = torch.randn(2, 64, 32)
    ids = model.quantizer.assign(latents)
    cos = F.normalize(latents, dim=-1) @ F.normalize(model.quantizer.embedding.weight, dim=-1).t()
    assert torch.equal(ids, cos.argmax(-1))
    assert torch.equal(model.quantizer.assign(latents, chunk_elems=512 * 7), ids)  # chunked search agrees


def test_lookup_and_codebook_vectors_are_unit_rows(reference):
    model, sd, _ = reference
    ids = torch.tensor([[0, 5], [511, 5]])
    vectors = model.lookup(ids)
    assert vectors.shape == (2, 2, 32)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2, 2))
    codebook = model.codebook_vectors()
    torch.testing.assert_close(codebook[ids], vectors)
    assert torch.equal(model.codebook_vectors(normalized=False), sd["quantizer.embedding.weight"])
    with pytest.raises(TokenizerError, match="outside this codebook of 512"):
        model.lookup(torch.tensor([512]))


def test_forward_gives_reconstruction_ids_and_reference_vq_loss(reference):
    model, _, expected = reference
    images = torch.from_numpy(expected["images"])
    out = model(images)
    assert torch.equal(out.ids, torch.from_numpy(expected["codes"]))
    z = F.normalize(out.latents, dim=-1)
    q = model.lookup(out.ids)
    torch.testing.assert_close(out.vq_loss, 1.25 * (q - z).pow(2).mean())
    out.reconstructions.sum().backward()  # straight-through: the encoder gets gradients
    assert model.encoder.to_patch_embedding[0].weight.grad.abs().sum() > 0


def test_bad_inputs_and_configs_are_clear_errors(reference):
    model, _, _ = reference
    with pytest.raises(TokenizerError, match=r"\[B, 3, 64, 64\]"):
        model.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(TokenizerError, match=r"ids \[B, 8, 8\]"):
        model.decode(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(TokenizerError, match="multiple of the patch size"):
        preset("vitvq-tiny", image_size=60)
    with pytest.raises(TokenizerError, match="unknown tokenizer preset"):
        preset("vitvq-huge")


def test_presets_and_parameter_counts():
    assert preset("vitvq-tiny", image_size=32).grid_shape == (4, 4)
    assert PRESETS["vitvq-mini"].grid_shape == (16, 16)
    counts = count_parameters(Tokenizer(PRESETS["vitvq-tiny"]))
    assert counts["quantizer"] == 512 * 32
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
