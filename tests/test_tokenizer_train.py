import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

import seit
from seit.cli import main
from seit.errors import EXIT_PREEMPTED, ConfigError
from seit.images import list_images
from seit.interop.enhancing import config_from_yaml
from seit.runtime import RunError
from seit.runtime.metrics import read_metrics
from seit.tokenizer.checkpoint import load_tokenizer
from seit.tokenizer.config import TokenizerError, TrainConfig
from seit.tokenizer.train import CodebookEMA, TokenizerTrainer, tokenizer_config, train
from seit.utils.serialization import safe_torch_load
from tokenizer_testdata import TINY32_YAML, write_image_folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    write_image_folder(root / "images", 64, 32, classes=4)
    (root / "tiny32.yaml").write_text(TINY32_YAML)
    return root


@pytest.fixture()
def one_thread():
    """One intra-op thread: steady timings on a shared 2-core machine, and bitwise-repeatable runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(data, out, **changes) -> TrainConfig:
    base = dict(
        images=str(data / "images"),
        out=str(out),
        config=str(data / "tiny32.yaml"),
        batch_size=16,
        lr=1e-3,
        min_lr=1e-4,
        warmup_steps=20,
        dead_code_steps=20,
        num_workers=0,
        eval_images=8,
    )
    return TrainConfig(**{**base, **changes})


def _log(out):
    return read_metrics(out / "metrics.jsonl")


def _train_rows(out) -> dict[int, dict]:
    """The logged training figures by step, without the timings."""
    train_rows = [r for r in _log(out) if r["kind"] == "train"]
    return {r["step"]: {k: v for k, v in r.items() if k not in ("images_per_s", "time")} for r in train_rows}


def test_training_improves_reconstructions_and_keeps_the_codebook_alive(data, tmp_path, one_thread):
    out = tmp_path / "run"
    result = train(_config(data, out, steps=300, eval_every=100, log_every=25, save_every=150))
    assert result.finished and result.step == 300
    log = _log(out)
    train_rows = [r for r in log if r["kind"] == "train"]
    evals = {r["step"]: r for r in log if r["kind"] == "eval"}
    assert [r["step"] for r in train_rows] == [1, *range(25, 301, 25)] and sorted(evals) == [100, 200, 300]
    assert train_rows[-1]["psnr"] > train_rows[0]["psnr"] + 3  # measured: ~10 dB -> ~16 dB
    assert evals[300]["psnr"] > evals[100]["psnr"] + 1
    assert evals[300]["usage"] >= 0.25 and train_rows[-1]["codes_active"] >= 0.5  # of 64 codes
    assert train_rows[-1]["codes_restarted"] > 0
    assert {"l2", "vq", "loss", "perplexity", "lr", "images_per_s"} <= set(train_rows[-1])
    assert sorted(p.name for p in (out / "samples").iterdir()) == [f"step_{s:07d}.png" for s in (100, 200, 300)]
    assert safe_torch_load(out / "checkpoint.pt")["step"] == 300
    tok = load_tokenizer(out)
    assert tok.config == config_from_yaml(data / "tiny32.yaml")
    with pytest.raises(RunError, match=r"already holds a run; continue it with --resume auto"):
        train(_config(data, out, steps=10))


def test_resume_continues_exactly_where_it_stopped(data, tmp_path, one_thread):
    options = dict(
        warmup_steps=100,  # the learning rate does not depend on --steps during warm-up
        dead_code_steps=2,
        log_every=1,
        eval_every=100,
        disc_start=2,
        disc_layers=2,
    )
    straight = train(_config(data, tmp_path / "a", steps=6, **options))
    first = train(_config(data, tmp_path / "b", steps=3, **options))
    resumed = train(_config(data, tmp_path / "b", steps=6, resume=True, **options))
    assert (straight.step, first.step, resumed.step) == (6, 3, 6)

    a, b = _train_rows(tmp_path / "a"), _train_rows(tmp_path / "b")
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    assert a == b  # identical losses, PSNR, usage, restarts on every step, including the resumed ones
    assert "g_loss" in a[6] and "d_loss" in a[6] and "g_loss" not in a[2] and a[6]["codes_restarted"] > 0
    sd_a, sd_b = load_tokenizer(tmp_path / "a").state_dict(), load_tokenizer(tmp_path / "b").state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_perceptual_loss_from_user_supplied_vgg_weights(data, tmp_path, one_thread):
    torch.manual_seed(0)
    vgg = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, vgg)
    out = tmp_path / "run"
    train(_config(data, out, steps=2, batch_size=2, log_every=1, perceptual_weights=str(vgg)))
    assert all(r["perceptual"] > 0 for r in _log(out) if r["kind"] == "train")
    with pytest.raises(TokenizerError, match=r"missing\.pth: VGG16 weights .*not found"):
        train(_config(data, tmp_path / "other", steps=2, perceptual_weights=str(tmp_path / "missing.pth")))


def test_bf16_autocast_path_and_option_checks(data, tmp_path, one_thread):
    result = train(_config(data, tmp_path / "bf16", steps=2, batch_size=4, log_every=1, precision="bf16"))
    assert result.finished and all(math.isfinite(v) for v in result.last.values())
    with pytest.raises(ConfigError, match="--eval-every must be >= 1, got 0"):
        _config(data, tmp_path / "bad", eval_every=0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_saves_the_step_exits_75_and_resume_repeats_the_run(data, tmp_path, monkeypatch, capsys, sig):
    real_step = TokenizerTrainer.train_step

    def step_then_signal(self, x):
        metrics = real_step(self, x)
        if self.step == 3:
            os.kill(os.getpid(), sig)
        return metrics

    options = ["--config", str(data / "tiny32.yaml"), "--batch-size", "8", "--num-workers", "0",
               "--log-every", "100", "--eval-every", "100", "--steps", "5"]  # fmt: skip
    straight = ["tokenizer", "train", str(data / "images"), "--out", str(tmp_path / "straight"), *options]
    args = ["tokenizer", "train", str(data / "images"), "--out", str(tmp_path / "run"), *options]
    torch.set_num_threads(1)
    assert main(straight) == 0
    monkeypatch.setattr(TokenizerTrainer, "train_step", step_then_signal)
    assert main(args) == EXIT_PREEMPTED
    err = capsys.readouterr().err
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert f"stopped at step 3; {checkpoint} saved: rerun the same command with --resume auto" in err
    assert safe_torch_load(checkpoint)["step"] == 3 and not (tmp_path / "run" / "tokenizer.safetensors").exists()
    assert [r["step"] for r in _log(tmp_path / "run")] == [1, 3]  # the step it stopped at, whatever --log-every
    monkeypatch.setattr(TokenizerTrainer, "train_step", real_step)
    assert main([*args, "--resume", "auto"]) == 0

    def losses(out):
        return [(r["step"], r["loss"]) for r in _log(out) if r["kind"] == "train"]

    resumed, whole = dict(losses(tmp_path / "run")), dict(losses(tmp_path / "straight"))
    assert sorted(resumed) == [1, 3, 5] and sorted(whole) == [1, 5]
    assert resumed[1] == whole[1] and resumed[5] == whole[5]  # the resumed run ends where the straight one did


def test_restart_moves_the_old_run_aside(data, tmp_path, one_thread):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("old")
    with pytest.raises(RunError, match="start over with --restart"):
        train(_config(data, out, steps=1))
    assert train(_config(data, out, steps=1, batch_size=4, restart=True)).finished
    assert (tmp_path / "run.old-1" / "notes.txt").read_text() == "old" and (out / "tokenizer.safetensors").exists()


def test_the_former_resume_switch_of_the_python_api_means_auto(data, tmp_path):
    assert _config(data, tmp_path, resume=True).resume == "auto" and _config(data, tmp_path).resume is None


@pytest.mark.slow
def test_torchrun_two_processes(data, tmp_path):
    """DDP on gloo: two ranks train together; rank 0 writes the outputs."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "seit", "tokenizer", "train", str(data / "images"), "--out", str(out),
           "--config", str(data / "tiny32.yaml"), "--steps", "4", "--batch-size", "4", "--num-workers", "0",
           "--log-every", "1", "--eval-every", "4", "--eval-images", "4", "--dead-code-steps", "2"]  # fmt: skip
    src = str(Path(seit.__file__).parents[1])  # this checkout's code, not an installed copy
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEIT_NO_PROGRESS": "1", "PYTHONPATH": src}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _log(out)
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    assert rows[-1]["kind"] == "eval" and load_tokenizer(out).config.image_size == 32
    assert len(list_images(data / "images").samples) == 64


def test_code_dim_and_codebook_size_replace_the_presets():
    cfg = tokenizer_config(TrainConfig(images="x", out="y", preset="vitvq-tiny", codebook_size=256, code_dim=8))
    assert (cfg.codebook_size, cfg.code_dim, cfg.image_size) == (256, 8, 64)
    assert tokenizer_config(TrainConfig(images="x", out="y", preset="vitvq-tiny")).code_dim == 32
    with pytest.raises(ConfigError, match="--code-dim"):
        TrainConfig(images="x", out="y", code_dim=0)


def test_codebook_ema_update_matches_a_hand_computation():
    """Two codes, decay 0.5: sizes and sums of unit latents move halfway; a row is their (smoothed) ratio."""
    weight = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    ema = CodebookEMA(weight, decay=0.5)  # each code starts as one observation at its row's direction
    latents = torch.tensor([[3.0, 4.0], [5.0, 0.0], [6.0, -8.0]])  # unit: (.6, .8), (1, 0), (.6, -.8)
    ema.update(torch.tensor([0, 0, 1]), latents, weight)
    sizes = torch.tensor([0.5 * 1 + 0.5 * 2, 0.5 * 1 + 0.5 * 1])
    sums = torch.tensor([[0.5 * 1 + 0.5 * 1.6, 0.5 * 0 + 0.5 * 0.8], [0.5 * 0 + 0.5 * 0.6, 0.5 * 1 - 0.5 * 0.8]])
    eps, total = 1e-5, 2.5
    smoothed = (sizes + eps) / (total + 2 * eps) * total
    assert torch.allclose(ema.cluster_size, sizes) and torch.allclose(ema.embed_sum, sums)
    assert torch.allclose(weight, sums / smoothed[:, None])
    ema.reset(torch.tensor([1]), torch.tensor([[1.0, 1.0], [0.0, -4.0]]))  # a restarted code forgets its past
    assert ema.cluster_size.tolist() == [1.5, 1.0] and ema.embed_sum[1].tolist() == [0.0, -1.0]
    assert torch.allclose(ema.embed_sum[0], sums[0])
    # A code that has never been chosen (size 0) keeps a finite row through the Laplace smoothing.
    ema.load_state_dict({"cluster_size": torch.tensor([0.0, 3.0]), "embed_sum": torch.tensor([[0.5, 0], [0, 3]])})
    ema.update(torch.tensor([1]), torch.tensor([[0.0, 2.0]]), weight)
    total = 0.5 * 3 + 0.5 * 1
    assert torch.allclose(weight, torch.tensor([[0.25 / (eps / (total + 2 * eps) * total), 0], [0, 2 / total]]))


def test_codebook_ema_resumes_exactly_and_leaves_the_tokenizer_file_alone(data, tmp_path, one_thread):
    options = dict(batch_size=4, warmup_steps=100, dead_code_steps=1, log_every=1, eval_every=100, codebook_ema=0.9)
    train(_config(data, tmp_path / "a", steps=4, **options))
    train(_config(data, tmp_path / "b", steps=2, **options))
    train(_config(data, tmp_path / "b", steps=4, resume=True, **options))
    a, b = _train_rows(tmp_path / "a"), _train_rows(tmp_path / "b")
    assert sorted(b) == [1, 2, 3, 4] and a == b and a[4]["codes_restarted"] > 0
    state_a, state_b = (safe_torch_load(tmp_path / out / "checkpoint.pt") for out in "ab")
    ema_a, ema_b = state_a["codebook_ema"], state_b["codebook_ema"]
    params = sum(len(group["params"]) for group in state_a["optimizer"]["param_groups"])
    assert len(state_a["optimizer"]["state"]) == params - 1  # every parameter has moments but the codebook
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ("cluster_size", "embed_sum"))
    sd_a, sd_b = load_tokenizer(tmp_path / "a").state_dict(), load_tokenizer(tmp_path / "b").state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)  # and load_tokenizer's strict keys: no EMA state
    # Codes restarted at the last step forgot their statistics: every row points where its running sum does.
    rows_dir = torch.nn.functional.normalize(sd_a["quantizer.embedding.weight"], dim=-1)
    assert torch.allclose(rows_dir, torch.nn.functional.normalize(ema_a["embed_sum"], dim=-1), atol=1e-5)
    with pytest.raises(TokenizerError, match=r"checkpoint\.pt was trained with --codebook-ema; resume it with"):
        train(_config(data, tmp_path / "b", steps=5, resume=True, **{**options, "codebook_ema": None}))


def test_codebook_ema_decay_must_be_inside_zero_one(data, tmp_path):
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ConfigError, match=rf"--codebook-ema must be in \(0, 1\), got {bad}"):
            _config(data, tmp_path, codebook_ema=bad)
    assert _config(data, tmp_path, codebook_ema=0.99).codebook_ema == 0.99
