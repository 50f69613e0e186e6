"""seit train / seit eval: learning, exact resume, preemption, distributed evaluation, artefacts."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seit.cli import main
from seit.engine.config import TrainConfig
from seit.engine.pipeline import build_pipeline
from seit.models import load_classifier
from seit.runtime.metrics import read_metrics
from seit.store.format import TRAILER
from seit.utils.dist import DistInfo
from seit.utils.serialization import load_weights

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"
# A tiny token ViT: 8x8 grids -> 7x7 crops -> 3x3 patches, width 32, 2 blocks.
TINY = ["--model", "deit_tiny_token_4", "--embed-dim", "32", "--depth", "2", "--num-heads", "2"]
FAST = ["--num-workers", "0", "--no-tensorboard", "--log-every", "1", "--batch-size", "16", "--unscale-lr"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory, class_token_store):
    root = tmp_path_factory.mktemp("stores")
    return (class_token_store(root / "train", 96, seed=0), class_token_store(root / "val", 37, seed=1))


def train_args(stores, out, *extra):
    train, val = stores
    return ["train", "--store", str(train), "--val-store", str(val), "--output", str(out), *TINY, *FAST, *extra]


def losses(out):
    return [(r["step"], r["loss"]) for r in read_metrics(Path(out) / "metrics.jsonl", "train")]


def run_cli(args, **kw):
    env = {**os.environ, "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "seit", *args], env=env, capture_output=True, text=True, **kw)


def test_learns_and_writes_a_usable_classifier(stores, tmp_path):
    out = tmp_path / "run"
    args = ["--epochs", "8", "--warmup-epochs", "1", "--lr", "3e-3", "--cutmix", "0", "--no-model-ema"]
    assert main(train_args(stores, out, *args)) == 0
    evals = read_metrics(out / "metrics.jsonl", "eval")
    assert [e["epoch"] for e in evals] == list(range(1, 9))
    assert evals[-1]["count"] == 37
    assert evals[-1]["top1"] > 90.0  # chance is 25%
    _, codebook, meta = load_classifier(out / "model.safetensors")
    assert meta.grid_size == 7 and meta.train_grid == (8, 8) and meta.class_names == ["c0", "c1", "c2", "c3"]
    assert codebook.shape == (16, 4) and meta.model_kwargs == {"embed_dim": 32, "depth": 2, "num_heads": 2}
    # seit eval on the store gives the same figure the training run logged
    assert (
        main(
            [
                "eval",
                str(out / "model.safetensors"),
                "--store",
                str(stores[1]),
                "--num-workers",
                "0",
                "--output",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["count"] == 37 and report["top1"] == pytest.approx(evals[-1]["top1"])
    assert np.array(report["confusion"]).sum() == 37 and (tmp_path / "eval" / "confusion.png").stat().st_size > 0


@pytest.fixture(scope="module")
def uninterrupted(stores, tmp_path_factory):
    """Two epochs (12 steps) with the whole SeiT augmentation on and EMA: the reference for resumes."""
    out = tmp_path_factory.mktemp("straight")
    assert main(train_args(stores, out, "--epochs", "2", "--warmup-epochs", "1", "--ckpt-every", "0")) == 0
    return out


@pytest.mark.parametrize("stop_at", [3, 6], ids=["mid-epoch", "epoch-end"])
def test_resume_equals_uninterrupted(stores, uninterrupted, tmp_path, stop_at):
    out = tmp_path / "resumed"
    common = ("--epochs", "2", "--warmup-epochs", "1", "--ckpt-every", "0")
    assert main(train_args(stores, out, *common, "--max-steps", str(stop_at))) == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["global_step"] == stop_at
    assert main(train_args(stores, out, *common, "--resume", "auto")) == 0
    assert losses(out) == losses(uninterrupted)
    assert len(losses(out)) == 12
    for name in ("model.safetensors", "model_ema.safetensors"):
        a, b = load_weights(out / name), load_weights(uninterrupted / name)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_streaming_trains_on_the_same_batches_as_random_access(stores, uninterrupted, tmp_path, capsys):
    common = ("--epochs", "2", "--warmup-epochs", "1", "--ckpt-every", "0", "--streaming")
    assert main(train_args(stores, tmp_path / "streamed", *common, "--verify-shards")) == 0
    assert losses(tmp_path / "streamed") == losses(uninterrupted)  # order is a function of (seed, epoch) only
    # a damaged byte of a shard's index (here its key list) stops streaming, with or without --verify-shards
    damaged = tmp_path / "damaged"
    shutil.copytree(stores[0], damaged)
    shard = sorted(damaged.glob("shard-*.tok"))[0]
    data = bytearray(shard.read_bytes())
    _, n, payload, label_bytes, key_bytes, *_ = TRAILER.unpack(bytes(data[-TRAILER.size :]))
    data[payload + (-payload % 8) + 4 * (n + 1) + label_bytes + key_bytes // 2] ^= 0xFF  # in the key list
    shard.write_bytes(bytes(data))
    for checked in ((), ("--verify-shards",)):
        assert main(train_args((damaged, stores[1]), tmp_path / f"run{len(checked)}", *common, *checked)) == 1
        assert f"{shard.name}: index checksum mismatch" in capsys.readouterr().err
    assert main(train_args(stores, tmp_path / "x", "--verify-shards")) == 1
    assert "--verify-shards is for --streaming" in capsys.readouterr().err


def test_token_data_on_cpu_reads_in_process_by_default(stores, tmp_path):
    cfg = TrainConfig()
    cfg.data.store, cfg.data.val_store = str(stores[0]), str(stores[1])
    cpu = torch.device("cpu")
    assert build_pipeline(cfg, DistInfo(), cpu).num_workers == 0  # decoding ids is cheaper than a worker
    cfg.data.num_workers = 3
    assert build_pipeline(cfg, DistInfo(), cpu).num_workers == 3  # an explicit --num-workers always wins
    pixels = TrainConfig()
    pixels.data.images = str(tmp_path)
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.png")
    # a folder that fits --pixel-cache-mb is decoded once into memory and cropped in process (past the limit:
    # decoding workers, tests/test_engine_pixels.py::test_a_folder_past_the_cache_limit_is_decoded_on_every_fetch)
    assert build_pipeline(pixels, DistInfo(), cpu).num_workers == 0


def test_resume_refuses_other_settings_and_missing_files(stores, uninterrupted, tmp_path, capsys):
    args = train_args(stores, uninterrupted, "--epochs", "2", "--lr", "0.1", "--resume", "auto")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "--lr: checkpoint 0.00075, now 0.1" in err and "last.pt" in err
    assert main(train_args(stores, tmp_path, "--resume", str(tmp_path / "nope.pt"))) == 1
    assert "nope.pt: checkpoint to resume from does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_checkpoints_and_resume_finishes_the_same_run(stores, uninterrupted, tmp_path, sig):
    out = tmp_path / "preempted"
    args = train_args(stores, out, "--epochs", "2", "--warmup-epochs", "1", "--ckpt-every", "0")
    env = {**os.environ, "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seit", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    while proc.poll() is None:  # the run ends by itself (exit 0, failing below) if it is never signalled
        if (out / "metrics.jsonl").exists() and len(losses(out)) >= 2:
            proc.send_signal(sig)
            break
        time.sleep(0.05)
    _, err = proc.communicate()
    assert proc.returncode == 75, err
    stopped = torch.load(out / "last.pt", weights_only=True)["global_step"]
    assert 2 <= stopped < 12 and not (out / "model.safetensors").exists()
    assert f"stopped at step {stopped}; {out / 'last.pt'} saved: rerun the same command with --resume auto" in err
    assert losses(out)[-1][0] == stopped  # the step it stopped at is logged, whatever --log-every says
    assert run_cli([*args, "--resume", "auto"], timeout=300).returncode == 0
    assert losses(out) == losses(uninterrupted)


def test_a_run_into_a_used_output_refuses_and_restart_moves_the_old_run_aside(stores, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("an earlier run")
    assert main(train_args(stores, out, "--max-steps", "1")) == 1
    assert "already holds a run; continue it with --resume auto, start over with --restart" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing written or removed
    assert main(train_args(stores, out, "--max-steps", "1", "--restart", "--no-model-ema")) == 0
    assert (tmp_path / "run.old-1" / "notes.txt").read_text() == "an earlier run"
    assert not (out / "notes.txt").exists() and (out / "model.safetensors").exists()
    assert main(train_args(stores, out, "--max-steps", "1", "--restart", "--no-model-ema")) == 0
    assert (tmp_path / "run.old-2" / "model.safetensors").exists()  # never overwrites an earlier move


def test_metrics_start_at_step_one_in_a_run_shorter_than_log_every(stores, tmp_path):
    args = train_args(stores, tmp_path / "short", "--max-steps", "2", "--log-every", "50", "--no-model-ema")
    assert main(args) == 0
    assert [s for s, _ in losses(tmp_path / "short")] == [1, 2]


def test_two_process_torchrun_counts_every_val_sample_once(stores, tmp_path):
    out = tmp_path / "ddp"
    args = train_args(stores, out, "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29531",
            "-m",
            "seit",
            *args,
        ],
        env={**os.environ, "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_metrics(out / "metrics.jsonl", "eval")[-1]
    assert record["count"] == 37  # 37 = 19 + 18: no padding, no duplicates
    # 96 samples / (8 x 2) = 6 steps, one global batch of 16 each
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl", "train")] == [1, 2, 3, 4, 5, 6]
    # the same number from one process
    assert (
        main(
            [
                "eval",
                str(out / "model.safetensors"),
                "--store",
                str(stores[1]),
                "--num-workers",
                "0",
                "--output",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    single = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert single["top1"] == pytest.approx(record["top1"]) and single["loss"] == pytest.approx(record["loss"], 1e-4)


def test_divergence_stops_with_a_clear_error(stores, tmp_path, capsys):
    args = train_args(stores, tmp_path, "--epochs", "3", "--lr", "1e12", "--warmup-epochs", "0", "--opt", "sgd")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "--clip-grad" in err


def test_finetune_at_another_grid_and_class_count(stores, uninterrupted, tmp_path, capsys):
    out = tmp_path / "ft"
    args = train_args(
        stores,
        out,
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--crop-size",
        "5",
        "--finetune",
        str(uninterrupted / "model.safetensors"),
    )
    assert main(args) == 0
    assert "re-initialised: nothing" in capsys.readouterr().err  # same classes: only pos_embed is resampled
    model, _, meta = load_classifier(out / "model.safetensors")
    assert meta.grid_size == 5 and model.pos_embed.shape[1] == 1 + 2 * 2


def test_seit_release_files_train_without_conversion(tmp_path):
    out = tmp_path / "release"
    args = [
        "train",
        "--train-token-file",
        str(TOKENS / "tiny-train-token.data.bin.gz"),
        "--train-label-file",
        str(TOKENS / "tiny-train-label.txt"),
        "--val-token-file",
        str(TOKENS / "tiny-val-token.data.bin.gz"),
        "--val-label-file",
        str(TOKENS / "tiny-val-label.txt"),
        "--codebook-path",
        str(TOKENS / "codebook.ckpt"),
        "--token-synonym-dict",
        str(TOKENS / "synonyms.json"),
        "--model",
        "deit_tiny_token_32",
        "--embed-dim",
        "32",
        "--depth",
        "1",
        "--num-heads",
        "2",
        "--epochs",
        "1",
        "--output",
        str(out),
        *FAST,
    ]
    assert main(args) == 0
    assert read_metrics(out / "metrics.jsonl", "eval")[-1]["count"] == 32
    _, codebook, meta = load_classifier(out / "model.safetensors")
    assert meta.grid_size == 28 and codebook.shape == (391, 32)


def test_the_stem_reads_the_codebook_dimension(stores, tmp_path, capsys):
    out = tmp_path / "dim"
    assert main(train_args(stores, out, "--model", "deit_tiny_token_32", "--epochs", "1", "--no-model-ema")) == 0
    assert "reads 4-dim codes" in capsys.readouterr().err
    model, _, meta = load_classifier(out / "model.safetensors")
    assert meta.in_chans == 4 and model.patch_embed.proj.weight.shape[1] == 4


def test_best_json_names_the_weights_that_scored_higher_and_eval_of_the_run_uses_them(stores, uninterrupted, tmp_path):
    best = json.loads((uninterrupted / "best.json").read_text())
    model, ema = (read_metrics(uninterrupted / "metrics.jsonl", kind)[-1] for kind in ("eval", "eval_ema"))
    assert model["step"] == ema["step"] == best["step"] == 12
    assert best["top1"] == {"model": model["top1"], "ema": ema["top1"]} and best["chosen_by"] == "val top-1"
    assert best["file"] == ("model_ema.safetensors" if ema["top1"] > model["top1"] else "model.safetensors")
    assert best["ema_horizon_steps"] == pytest.approx(25_000)
    assert read_metrics(uninterrupted / "metrics.jsonl", "best")[-1]["file"] == best["file"]
    # `seit eval RUN` evaluates that file
    args = ["eval", str(uninterrupted), "--store", str(stores[1]), "--num-workers", "0", "--output", str(tmp_path)]
    assert main(args) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["checkpoint"] == str(uninterrupted / best["file"])
    assert report["top1"] == pytest.approx(best["top1"][best["weights"]])


@pytest.mark.parametrize(
    "decay, warned, best", [("0.99996", True, "model.safetensors"), ("0.5", False, "model_ema.safetensors")]
)
def test_an_ema_horizon_longer_than_the_run_is_announced(stores, tmp_path, capsys, decay, warned, best):
    """Two steps, stopped mid-epoch (no evaluation there): the EMA is handed on only if its horizon fits the run."""
    args = train_args(stores, tmp_path, "--max-steps", "2", "--warmup-epochs", "0", "--model-ema-decay", decay)
    assert main(args) == 0
    printed = capsys.readouterr()
    assert ("EMA decay 0.99996 averages over ~25,000 steps, more than this run's 2:" in printed.err) == warned
    assert json.loads((tmp_path / "best.json").read_text())["chosen_by"] == "EMA horizon vs steps"
    assert f"best is {best}" in printed.err and f"[seit] done: {tmp_path / best}" in printed.out


@pytest.mark.parametrize("model, ema, best", [(40.0, 55.0, "model_ema.safetensors"), (40.0, 40.0, "model.safetensors")])
def test_the_better_validation_top1_at_the_last_step_wins(tmp_path, model, ema, best):
    from seit.engine.train import _record_best
    from seit.runtime.metrics import MetricsLogger

    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log("eval", 5, {"top1": 90.0})  # an earlier evaluation does not count
    logger.log("eval", 10, {"top1": model})
    logger.log("eval_ema", 10, {"top1": ema})
    assert _record_best(TrainConfig(), tmp_path, logger, 10) == (tmp_path / best, max(model, ema))
    assert json.loads((tmp_path / "best.json").read_text())["file"] == best


@pytest.mark.parametrize(
    "content, error",
    [
        (None, "a folder without best.json"),
        ('{"file": "../elsewhere/model.safetensors"}', "names '../elsewhere/model.safetensors', not model"),
        ("{not json", "best.json: unreadable"),
    ],
)
def test_eval_of_a_folder_needs_a_sound_best_json(stores, tmp_path, capsys, content, error):
    if content is not None:
        (tmp_path / "best.json").write_text(content)
    assert main(["eval", str(tmp_path), "--store", str(stores[1]), "--num-workers", "0"]) == 1
    assert error in capsys.readouterr().err


def test_load_classifier_reads_every_file_seit_train_writes(uninterrupted, stores):
    """model.safetensors, model_ema.safetensors, last.pt and the run folder: one loader, the same model."""
    import seit.models

    x = torch.randn(3, 4, 7, 7)
    model, codebook, meta = seit.models.load_classifier(uninterrupted / "model.safetensors")
    last = seit.models.load_classifier(uninterrupted / "last.pt")  # the final checkpoint holds the final weights
    assert last.meta == meta and torch.equal(last.codebook, codebook)
    with torch.no_grad():
        torch.testing.assert_close(last.model(x), model(x))
    ema = seit.models.load_classifier(uninterrupted / "model_ema.safetensors")
    best = json.loads((uninterrupted / "best.json").read_text())["file"]
    folder = seit.models.load_classifier(uninterrupted)
    chosen = seit.models.load_classifier(uninterrupted / best)
    with torch.no_grad():
        torch.testing.assert_close(folder.model(x), chosen.model(x))
        assert not torch.equal(ema.model(x), model(x))
    out = uninterrupted / "eval-last"
    assert main(["eval", str(uninterrupted / "last.pt"), "--store", str(stores[1]), "--num-workers", "0",
                 "--output", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "eval.json").read_text())["count"] == 37
