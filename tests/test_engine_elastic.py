"""Resuming `seit train` on another number of processes (torchrun, gloo, CPU) at the same global batch.

What holds, and what the README says: the resumed run takes the same global batches of samples at the same
steps with the same learning rate, and every random draw (Token-EDA, crop, ColorAdapt, Emb-Noise, CutMix,
drop-path) is made for the whole global batch from a (seed, step) seed, each rank keeping its rows; so with
SeiT's augmentations on, each step's loss and the final weights are the uninterrupted run's up to float
summation order. Another global batch is refused.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seit.cli import main
from seit.runtime.metrics import read_metrics
from seit.utils.serialization import load_weights

TINY = ["--model", "deit_tiny_token_4", "--embed-dim", "32", "--depth", "2", "--num-heads", "2"]
# every random draw on and frequent: SeiT's RRC, EDA, Emb-Noise and CutMix, and flips, ColorAdapt, drop-path
RANDOMNESS = ["--hflip-prob", "0.5", "--synonym-prob", "0.4", "--swap-prob", "0.4", "--noise-prob", "0.4"]
RANDOMNESS += ["--color-adapt-prob", "0.4", "--drop-path", "0.3"]
COMMON = ["--num-workers", "0", "--no-tensorboard", "--log-every", "1", "--unscale-lr", "--no-model-ema"]
COMMON += ["--epochs", "1", "--warmup-epochs", "1", "--ckpt-every", "0", *TINY, *RANDOMNESS]
GLOBAL_BATCH = 16  # 96 samples: 6 steps


@pytest.fixture(scope="module")
def stores(tmp_path_factory, class_token_store):
    root = tmp_path_factory.mktemp("stores")
    return class_token_store(root / "train", 96, seed=0), class_token_store(root / "val", 12, seed=1)


def args(stores, out, processes, *extra):
    data = ["--store", str(stores[0]), "--val-store", str(stores[1]), "--output", str(out)]
    return ["train", *data, *COMMON, "--batch-size", str(GLOBAL_BATCH // processes), *extra]


def train(stores, out, processes, *extra):
    if processes == 1:
        assert main(args(stores, out, 1, *extra)) == 0
        return
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    env = {**os.environ, "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*command, "-m", "seit", *args(stores, out, processes, *extra)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def records(out):
    return read_metrics(Path(out) / "metrics.jsonl", "train")


@pytest.fixture(scope="module")
def uninterrupted(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    train(stores, out, 1)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("before", "after"), [(1, 2), (2, 1)], ids=["1-to-2", "2-to-1"])
def test_resume_on_another_number_of_processes_continues_the_same_run(stores, uninterrupted, tmp_path, before, after):
    out = tmp_path / "run"
    train(stores, out, before, "--max-steps", "3")
    train(stores, out, after, "--resume", "auto")
    got, want = records(out), records(uninterrupted)
    assert [r["step"] for r in got] == [r["step"] for r in want] == [1, 2, 3, 4, 5, 6]
    assert [r["lr"] for r in got] == [r["lr"] for r in want]  # the same schedule at the same steps
    # every step's loss (of the global batch, also when 2 processes log it): the uninterrupted run's, up to
    # the float summation order of another batch split
    for g, w in zip(got, want, strict=True):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-4, abs=1e-5), g["step"]
    # the same samples and draws at every step: the same weights at the end
    a, b = load_weights(out / "model.safetensors"), load_weights(uninterrupted / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_resume_with_another_global_batch_is_refused(stores, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args(stores, out, 1, "--max-steps", "2")) == 0
    assert main([*args(stores, out, 1, "--resume", "auto"), "--batch-size", "8"]) == 1
    err = capsys.readouterr().err
    assert "global batch of 16 (16 x 1 processes), now 8 (8 x 1)" in err and "resume with --batch-size 16" in err
