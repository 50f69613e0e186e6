"""`seit continual`: class-incremental steps, a replay memory counted in bytes, token vs pixel memory, exact resume.

Tiny data: a 4-class token store (8x8 ids) and a 4-class JPEG folder of the same class names; tiny ViTs.
"""

import json
import shlex
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seit.cli import build_parser, main
from seit.config import from_args, to_dict
from seit.continual import ContinualConfig
from seit.continual.learner import ContinualLearner, task_classes
from seit.continual.memory import LABEL_BYTES, OFFSET_BYTES, ReplayMemory, herding_order
from seit.continual.report import forgetting
from seit.errors import EXIT_PREEMPTED
from seit.runtime.metrics import read_metrics
from seit.store import TokenStore

TINY = ["--embed-dim", "16", "--depth", "1", "--num-heads", "2", "--token-model", "deit_tiny_token_4"]
FAST = ["--num-workers", "0", "--no-tensorboard", "--log-every", "1", "--batch-size", "8", "--epochs", "2"]
PROTOCOL = ["--tasks", "2", "--memory-bytes", "8000", "--image-size", "16"]


def write_jpeg_folder(root: Path, per_class: int, seed: int) -> Path:
    """Class c is a flat colour (c-th of four) with noise; JPEG files, so each has its own size."""
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 30, 30], [30, 200, 30], [30, 30, 220], [200, 200, 30]])
    for c in range(4):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(colours[c] + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory, class_token_store):
    root = tmp_path_factory.mktemp("continual")
    return {
        "store": class_token_store(root / "train", 64, seed=0),
        "val_store": class_token_store(root / "val", 24, seed=1),
        "images": write_jpeg_folder(root / "images", 16, seed=0),
        "val_images": write_jpeg_folder(root / "val_images", 6, seed=1),
    }


def args(data, out, *extra, kinds=("store", "images")):
    given = []
    for k in kinds:
        val = "val_store" if k == "store" else "val_images"
        given += [f"--{k}", str(data[k]), f"--{val.replace('_', '-')}", str(data[val])]
    return ["continual", *given, "--output", str(out), *TINY, *FAST, *PROTOCOL, *extra]


def trace(out: Path, kind: str):
    metrics = out / kind / "metrics.jsonl"
    train = [(r["step"], r["loss"]) for r in read_metrics(metrics, "train")]
    tasks = [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(metrics, "task")]
    return train, tasks


@pytest.fixture(scope="module")
def both(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("both") / "run"
    assert main(args(data, out)) == 0
    return out


def test_token_and_pixel_memory_report_at_equal_bytes_with_the_same_recipe(both):
    report = json.loads((both / "report.json").read_text())
    runs = report["runs"]
    assert set(runs) == {"tokens", "pixels"} and report["same_recipe"]
    assert runs["tokens"]["recipe"] == runs["pixels"]["recipe"]  # model size, optim, augment, protocol, seed
    assert runs["tokens"]["optimizer_steps"] == runs["pixels"]["optimizer_steps"]  # the same compute
    for r in runs.values():
        assert [s["classes_seen"] for s in r["steps"]] == [2, 4]
        assert 0 < r["final_memory_bytes"] <= 8000 and len(r["steps"][-1]["per_task_top1"]) == 2
        assert r["average_incremental_top1"] == pytest.approx(np.mean([s["top1"] for s in r["steps"]]))
    # tokens are smaller than the JPEG files: more exemplars in the same bytes
    assert runs["tokens"]["final_exemplars"] > runs["pixels"]["final_exemplars"] > 0
    assert (both / "accuracy.png").stat().st_size > 0 and "token memory" in (both / "report.md").read_text()
    # the report's command runs these settings: parsed back, it gives the same config
    command = shlex.split(report["command"])
    assert command[:2] == ["seit", "continual"] and "--memory-bytes" in command
    parsed = from_args(ContinualConfig, build_parser().parse_args(command[1:]))
    assert json.loads(json.dumps(to_dict(parsed))) == report["config"]
    for kind in ("tokens", "pixels"):
        assert (both / kind / "model.safetensors").exists()
        first = read_metrics(both / kind / "metrics.jsonl", "train")[0]
        assert first["step"] == 1  # metrics from step 1
        # the logits are restricted to the classes seen: an untrained model's loss is ln 2 (of 2 seen), not ln 4
        assert abs(first["loss"] - np.log(2)) < 0.2


def test_memory_counts_every_byte_of_each_exemplar(data, both):
    ckpt = torch.load(both / "tokens" / "last.pt", weights_only=True)
    memory = ckpt["memory"]
    store = TokenStore.open(data["store"])
    # decoding needs the codec state file and the group's table header once: reserved before any exemplar
    header = store.read_blobs([0])[0].header
    assert memory["reserved"] == store.manifest["codecs"][0]["bytes"] + len(header) > 1000
    for label, indices in memory["ranked"].items():
        assert store.labels_of(indices).tolist() == [label] * len(indices)
        pages = [len(b.body) + OFFSET_BYTES + LABEL_BYTES for b in store.read_blobs(indices)]
        assert memory["sizes"][label] == pages and sum(pages) <= (8000 - memory["reserved"]) // 4  # a class's share
    pixels = torch.load(both / "pixels" / "last.pt", weights_only=True)["memory"]
    files = sorted(p for p in Path(data["images"]).rglob("*.jpg"))
    for label, sizes in pixels["sizes"].items():
        assert all(s - LABEL_BYTES in {f.stat().st_size for f in files if f.parent.name == f"c{label}"} for s in sizes)


def test_resume_mid_step_equals_uninterrupted(data, tmp_path, monkeypatch, capsys):
    """A SIGTERM inside the second incremental step: exit 75 with the hint; resuming repeats the losses and
    accuracies of the uninterrupted run (the memory and position come back from the checkpoint)."""
    common = ("--selection", "random")
    full = tmp_path / "full"
    assert main(args(data, full, *common, kinds=("store",))) == 0
    signalled = ContinualLearner.train_step

    def step_then_signal(self, *a):
        loss = signalled(self, *a)
        if self.at.step == 11:  # the second step has 2 epochs x 32 new samples / 8 = 8 steps: inside it
            signal.raise_signal(signal.SIGTERM)
        return loss

    monkeypatch.setattr(ContinualLearner, "train_step", step_then_signal)
    out = tmp_path / "resumed"
    assert main(args(data, out, *common, kinds=("store",))) == EXIT_PREEMPTED
    assert "--resume auto" in capsys.readouterr().err
    ckpt = torch.load(out / "tokens" / "last.pt", weights_only=True)
    assert ckpt["position"]["task"] == 1 and ckpt["position"]["task_step"] == 3
    monkeypatch.setattr(ContinualLearner, "train_step", signalled)
    assert main(args(data, out, *common, "--resume", "auto", kinds=("store",))) == 0
    assert trace(out, "tokens") == trace(full, "tokens")
    assert (
        json.loads((out / "report.json").read_text())["runs"] == json.loads((full / "report.json").read_text())["runs"]
    )


def test_resume_refuses_other_settings_and_a_new_run_refuses_a_used_folder(data, both, capsys):
    assert main(args(data, both, "--resume", "auto", "--memory-bytes", "5000")) == 1
    assert "memory_bytes: checkpoint 8000, now 5000" in capsys.readouterr().err
    assert main(args(data, both)) == 1
    assert "--resume auto" in capsys.readouterr().err


def test_herding_keeps_the_samples_closest_to_the_mean_first():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071], [1.0, 0.1]])
    order = herding_order(features, 4)
    assert order[0] == 2  # the sample at the class mean comes first
    assert sorted(order) == [0, 1, 2, 3] and herding_order(features, 2) == order[:2]


def test_memory_shares_bytes_evenly_and_shrinks_by_priority():
    memory = ReplayMemory(100)
    memory.add(0, [5, 6, 7, 8], [30, 30, 30, 30])
    assert memory.indices() == [5, 6, 7] and memory.used_bytes() == 90
    memory.add(1, [1, 2, 3], [20, 20, 20])
    assert memory.ranked == {0: [5], 1: [1, 2]} and memory.used_bytes() <= 100  # a share of 50 bytes each


def test_class_order_is_seeded_and_splits_every_class_once():
    groups = task_classes(10, 3, seed=0)
    assert sorted(c for g in groups for c in g) == list(range(10)) and [len(g) for g in groups] == [4, 3, 3]
    assert task_classes(10, 3, seed=0) == groups != task_classes(10, 3, seed=1)


def test_classes_keeps_the_first_of_the_seeded_order():
    order = [c for g in task_classes(10, 5, seed=0) for c in g]
    assert task_classes(10, 2, seed=0, classes=4) == [order[:2], order[2:4]]


def test_forgetting_is_the_drop_from_the_best_earlier_accuracy():
    steps = [{"per_task_top1": [90.0]}, {"per_task_top1": [70.0, 80.0]}, {"per_task_top1": [60.0, 50.0, 95.0]}]
    assert forgetting(steps) == pytest.approx(((90 - 60) + (80 - 50)) / 2)
    assert forgetting(steps[:1]) is None


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--val-store", None), "--store/--val-store: give both"),
        (("--tasks", "9"), "--tasks 9 exceeds the 4 classes"),
        (("--classes", "5"), "--classes 5 exceeds the 4 classes of the data"),
        (("--classes", "1"), "--tasks 2 exceeds the 1 classes used"),
        (("--memory-bytes", "-1"), "--memory-bytes must be >= 0"),
        (("--memory-bytes", "100"), "--memory-bytes 100 is below the 1400 bytes a token memory"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(data, tmp_path, capsys, extra, message):
    argv = args(data, tmp_path / "x", kinds=("store",))
    if extra[1] is None:
        i = argv.index(extra[0])
        del argv[i : i + 2]
    else:
        argv += list(extra)
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_token_and_image_classes_must_match(data, tmp_path, capsys):
    other = write_jpeg_folder(tmp_path / "other", 1, seed=0)
    (other / "c3").rename(other / "zz")
    argv = args(data, tmp_path / "x")
    argv[argv.index("--images") + 1] = str(other)
    assert main(argv) == 1
    assert "name other classes" in capsys.readouterr().err
