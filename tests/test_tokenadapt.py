"""TokenAdapt: the augmentation pre-training calls, ``seit tokenadapt train``, its files and its CLI."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal

import numpy as np
import pytest
import torch

from seit.augment.tokenadapt import GeometryConfig, crop_window, sample_geometry, tokenadapt_augment, warp
from seit.cli import build_parser, main
from seit.config import from_args
from seit.errors import EXIT_ERROR, EXIT_PREEMPTED, ConfigError, SeitError
from seit.images import list_images, load_image
from seit.models.tokenadapt import TokenAdapt, TokenAdaptConfig
from seit.runtime.metrics import read_metrics
from seit.tokenadapt import load_tokenadapt
from seit.tokenadapt.config import TokenAdaptTrainConfig
from seit.tokenadapt.train import TokenAdaptTrainer, train_tokenadapt
from seit.utils.serialization import CheckpointError
from tokenizer_testdata import save_tiny_tokenizer, write_image_folder

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


# -- seit tokenadapt train ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A random tiny tokenizer (32 px -> 8x8 ids of 64 codes) and 16 generated images."""
    root = tmp_path_factory.mktemp("tokenadapt")
    save_tiny_tokenizer(root / "tok")
    write_image_folder(root / "images", 16, 32)
    return root


@pytest.fixture()
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _args(data, out, *extra):
    return ["tokenadapt", "train", str(data / "images"), "--tokenizer", str(data / "tok"), "--output", str(out),
            "--dim", "32", "--heads", "1", "--mlp-dim", "64", "--batch-size", "8", "--num-workers", "0",
            "--device", "cpu", "--no-tensorboard", "--lr", "2e-3", "--warmup-steps", "2", *extra]  # fmt: skip


def _config(data, out, **changes):
    """The config the CLI builds from :func:`_args`, with ``changes``."""
    cfg = from_args(TokenAdaptTrainConfig, build_parser().parse_args(_args(data, out)))
    return dataclasses.replace(cfg, **changes)


def test_training_lowers_the_objective_and_writes_a_file_that_loads_back(data, tmp_path, one_thread):
    result = train_tokenadapt(_config(data, tmp_path / "run", steps=30, log_every=10))
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == [1, 10, 20, 30]  # from step 1
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"]
    assert rows[-1]["transformed_agree"] > rows[0]["transformed_agree"] + 0.2
    loaded = load_tokenadapt(tmp_path / "run")  # the folder, as `--tokenadapt OUT` gives it
    assert result.path == tmp_path / "run" / "tokenadapt.safetensors" and loaded.config.grid == 8
    from_checkpoint = load_tokenadapt(tmp_path / "run" / "checkpoint.pt")
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, from_checkpoint.state_dict()[name])


def test_identity_transform_gives_the_codes_back_after_training(data, tmp_path, one_thread):
    """With the crop grid the whole grid, the identity path is the reconstruction the loss trains."""
    from seit.tokenizer import load_tokenizer

    train_tokenadapt(_config(data, tmp_path / "run", steps=60, crop=8, geometry=GeometryConfig.identity()))
    model, tokenizer = load_tokenadapt(tmp_path / "run"), load_tokenizer(data / "tok")
    images = np.stack([load_image(s.path, 32, "squash") for s in list_images(data / "images").samples])
    ids = tokenizer.encode(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    out = tokenadapt_augment(
        ids, model, torch.Generator(), codebook=tokenizer.classifier_codebook(), geometry=GeometryConfig.identity()
    )
    untrained = tokenadapt_augment(
        ids,
        TokenAdapt(model.config),
        torch.Generator(),
        codebook=tokenizer.classifier_codebook(),
        geometry=GeometryConfig.identity(),
    )
    agree = (out == ids).double().mean().item()
    assert agree > 0.9 and agree > (untrained == ids).double().mean().item() + 0.5


def test_a_stop_signal_saves_exits_75_and_the_resumed_run_equals_the_straight_one(
    data, tmp_path, monkeypatch, capsys, one_thread
):
    real_step = TokenAdaptTrainer.train_step

    def step_then_signal(self, images):
        figures = real_step(self, images)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return figures

    options = ["--steps", "6", "--log-every", "1"]
    assert main([*_args(data, tmp_path / "straight"), *options]) == 0
    monkeypatch.setattr(TokenAdaptTrainer, "train_step", step_then_signal)
    assert main([*_args(data, tmp_path / "run"), *options]) == EXIT_PREEMPTED
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert (
        f"stopped at step 3; {checkpoint} saved: rerun the same command with --resume auto" in capsys.readouterr().err
    )
    assert not (tmp_path / "run" / "tokenadapt.safetensors").exists()
    monkeypatch.setattr(TokenAdaptTrainer, "train_step", real_step)
    assert main([*_args(data, tmp_path / "run"), *options, "--resume", "auto"]) == 0

    def rows(out):
        return {
            r["step"]: {k: v for k, v in r.items() if k not in ("time", "images_per_s")}
            for r in read_metrics(out / "metrics.jsonl")
        }

    assert rows(tmp_path / "run") == rows(tmp_path / "straight") and sorted(rows(tmp_path / "run")) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    a, b = load_tokenadapt(tmp_path / "straight").state_dict(), load_tokenadapt(tmp_path / "run").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_sizes_and_files_are_one_line_errors(data, tmp_path, capsys):
    assert main([*_args(data, tmp_path / "big"), "--crop", "9", "--steps", "1"]) == EXIT_ERROR
    assert "--crop 9 is larger than the tokenizer's 8x8 grid" in capsys.readouterr().err
    train_tokenadapt(_config(data, tmp_path / "run", steps=1))
    assert main([*_args(data, tmp_path / "run"), "--dim", "64", "--steps", "2", "--resume", "auto"]) == EXIT_ERROR
    assert "give the same sizes to resume" in capsys.readouterr().err
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        load_tokenadapt(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match=r"not a seit TokenAdapt file .*seit-tokenizer"):
        load_tokenadapt(data / "tok" / "tokenizer.safetensors")
    with pytest.raises(CheckpointError, match="no such TokenAdapt file"):
        load_tokenadapt(tmp_path / "nothing")


def test_help_examples_build_the_config():
    from seit.cli.tokenadapt import TRAIN_EXAMPLES

    lines = re.sub(r"\\\n\s*", " ", TRAIN_EXAMPLES).splitlines()
    commands = [shlex.split(line, comments=True)[1:] for line in lines if line.strip().startswith("seit ")]
    assert len(commands) == 4
    for argv in commands:
        cfg = from_args(TokenAdaptTrainConfig, build_parser().parse_args(argv))
        assert cfg.tokenizer == "runs/tok"


def test_agreement_of_the_token_grid_is_exact_for_no_transform_and_a_mirror_for_a_flip(data):
    """The baselines of the benchmark: no transform agrees fully; a flip compares the mirrored grid."""
    from seit.tokenadapt.evaluate import agreement
    from seit.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(data / "tok")
    torch.manual_seed(0)
    model = TokenAdapt(TINY)
    images = np.stack([load_image(s.path, 32, "squash") for s in list_images(data / "images").samples])
    images = torch.from_numpy(images).permute(0, 3, 1, 2)
    window = crop_window(8, 6)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    plain = agreement(model, tokenizer, [images], lambda b: window[:2].repeat(b, 1, 1))
    assert plain["token_nearest"] == plain["token_bilinear"] == 1.0 and plain["tokenadapt"] < 0.5
    flipped = agreement(model, tokenizer, [images], lambda b: (mirror @ window)[:2].repeat(b, 1, 1))
    x = images.float() / 255
    want = (tokenizer.encode(x).flip(-1) == tokenizer.encode(x.flip(-1)))[:, 1:7, 1:7].double().mean().item()
    assert flipped["token_nearest"] == pytest.approx(want) and want < 1.0


def test_the_one_loader_reads_seitpp_released_pair_and_saves_it_in_seit_format_unchanged(tmp_path):
    from pathlib import Path

    from seit.interop.seitpp_checkpoints import load_tokenadapt as load_released
    from seit.tokenadapt import save_tokenadapt

    released = Path(__file__).parent / "fixtures" / "seitpp-reference" / "tokenadapt-tiny.ckpt"
    ours, reference = load_tokenadapt(released), load_released(released)
    path = save_tokenadapt(ours, tmp_path / "pair")
    again = load_tokenadapt(tmp_path / "pair")
    assert path == tmp_path / "pair" / "tokenadapt.safetensors" and again.config == reference.config
    for name, value in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value) and torch.equal(again.state_dict()[name], value)
