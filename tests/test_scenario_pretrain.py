"""`seit scenario storage-pretrain`: equal recipes on both sides, the report, reruns and resumes (tiny size)."""

import dataclasses
import json
from pathlib import Path

import pytest

from seit.cli import main
from seit.config import to_dict
from seit.errors import ConfigError
from seit.scenarios.pretrain import Paths, StoragePretrainConfig, labelled_config, pretrain_config

FRACTIONS = ("0.1", "0.5")
STAGES = ("data", "split", "tokenizer", "tokenize", "pretrain")
ROWS = ("scratch-10pct", "finetune-10pct", "scratch-50pct", "finetune-50pct")


def scenario(out, *extra):
    args = ["scenario", "storage-pretrain", "--size", "tiny", "--fractions", *FRACTIONS, "--output", str(out)]
    return main([*args, "--num-workers", "0", "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenario") / "pretrain"
    assert scenario(out) == 0
    return out, json.loads((out / "report" / "report.json").read_text())


def test_both_sides_of_a_subset_share_one_recipe(tmp_path):
    """Scratch and fine-tuned rows differ in the checkpoint they start from and their folder, nothing else."""
    for size, fraction in (("quick", 0.05), ("quick", 0.5), ("tiny", 0.1)):
        cfg = StoragePretrainConfig(output=str(tmp_path), size=size)
        paths = Paths(tmp_path)
        scratch = to_dict(labelled_config(cfg, paths, fraction, "scratch"))
        finetune = to_dict(labelled_config(cfg, paths, fraction, "finetune"))
        assert scratch["model"].pop("finetune") is None
        assert finetune["model"].pop("finetune") == str(paths.pretrained)
        assert scratch["run"].pop("output") != finetune["run"].pop("output")
        assert scratch == finetune


def test_report_compares_both_sides_at_every_size(tiny):
    out, report = tiny
    assert report["same_recipe"] and report["fractions"] == [0.1, 0.5]
    table = report["table"]
    assert [r["labelled_images"] for r in table] == [8, 40]  # 2 classes x 10% and 50% of 40 train images each
    assert all(0 <= r[k] <= 100 for r in table for k in ("scratch_top1", "finetune_top1"))
    assert {r["side"] for r in report["rows"]} == {"scratch", "finetune"} and len(report["rows"]) == 4
    md = (out / "report" / "report.md").read_text()
    assert "| 10% | 8 |" in md and "storage-pretrain --size tiny --fractions 0.1 0.5" in md
    assert (out / "report" / "accuracy.png").read_bytes().startswith(b"\x89PNG")


def test_subsets_nest_and_never_meet_the_token_pool(tiny):
    out, _ = tiny
    split = out / "split"

    def names(folder: Path) -> set[str]:
        return {f"{p.parent.name}/{p.name}" for p in folder.rglob("*.jpg")}

    pool, small, large = names(split / "tokens"), names(split / "pixels-10pct"), names(split / "pixels-50pct")
    assert len(pool) == 40 and len(small) == 8 and len(large) == 40
    assert small < large and not large & pool
    assert pool | large == names(out / "data" / "train")  # the pool: every train image outside the largest subset


def test_a_rerun_reuses_every_finished_stage(tiny, capsys):
    out, report = tiny
    capsys.readouterr()
    assert scenario(out) == 0
    err = capsys.readouterr().err
    for stage in (*STAGES, *ROWS):
        assert f"seit: {stage}: done earlier" in err
    assert "seit train: writing to" not in err
    assert json.loads((out / "report" / "report.json").read_text())["table"] == report["table"]


def test_an_interrupted_row_resumes_from_its_checkpoint(tiny, capsys):
    """A row whose run stopped before its record (here: after its last checkpoint) continues, not restarts."""
    out, report = tiny
    (out / "state" / "finetune-50pct.json").unlink()
    (out / "runs" / "finetune-50pct" / "model.safetensors").unlink()
    capsys.readouterr()
    assert scenario(out) == 0
    err = capsys.readouterr().err
    assert "seit: scratch-50pct: done earlier" in err and "seit: finetune-50pct ..." in err
    assert "resumed" in err and "runs/finetune-50pct/last.pt" in err
    again = json.loads((out / "report" / "report.json").read_text())["table"]
    assert [r["finetune_top1"] for r in again] == [r["finetune_top1"] for r in report["table"]]


def test_a_row_stopped_by_a_signal_exits_75_naming_its_folder(tiny, capsys, monkeypatch):
    import seit.engine.train

    out, _ = tiny
    real = seit.engine.train.train
    monkeypatch.setattr(seit.engine.train, "train", lambda t: dataclasses.replace(real(t), preempted=True))
    (out / "state" / "scratch-10pct.json").unlink()
    assert scenario(out) == 75
    err = capsys.readouterr().err
    assert "runs/scratch-10pct/last.pt saved: rerun the same command to continue" in err


def test_labelled_steps_set_both_sides_budget(tmp_path):
    paths = Paths(tmp_path)
    cfg = StoragePretrainConfig(output=str(tmp_path), labelled_steps=30)  # quick: 4000 train images, batch 32
    for side in ("scratch", "finetune"):
        assert labelled_config(cfg, paths, 0.01, side).optim.epochs == 30  # 40 images: 1 step per epoch
        assert labelled_config(cfg, paths, 0.05, side).optim.epochs == 5  # 200 images: 6 steps per epoch


def test_pretrain_steps_set_the_pretraining_budget_alone(tmp_path):
    """--pretrain-steps sizes the token pre-training (on the pool outside the largest subset), not the rows."""
    paths = Paths(tmp_path)
    cfg = StoragePretrainConfig(output=str(tmp_path))  # quick: 4 x 1000 train images, largest subset 25%
    assert cfg.pool_images() == 3000 and pretrain_config(cfg, paths).optim.epochs == 22  # 46 steps of 64 each
    longer = dataclasses.replace(cfg, pretrain_steps=2000)
    assert pretrain_config(longer, paths).optim.epochs == 43
    assert labelled_config(longer, paths, 0.05, "finetune") == labelled_config(cfg, paths, 0.05, "finetune")
    with pytest.raises(ConfigError, match=r"--pretrain-steps must be >= 1, got 0"):
        StoragePretrainConfig(pretrain_steps=0)
    with pytest.raises(ConfigError, match=r"--labelled-steps must be >= 1, got 0"):
        StoragePretrainConfig(labelled_steps=0)


def test_a_new_pretraining_budget_redoes_only_the_pretraining_and_the_finetuned_rows(tiny, capsys):
    out, _ = tiny
    assert scenario(out) == 0  # complete again whatever the tests before did to the fixture's folder
    capsys.readouterr()
    assert scenario(out, "--pretrain-steps", "10") == 0
    err = capsys.readouterr().err
    for stage in (*STAGES[:-1], "scratch-10pct", "scratch-50pct"):
        assert f"seit: {stage}: done earlier" in err
    for stage in ("pretrain", "finetune-10pct", "finetune-50pct"):
        assert f"seit: {stage} ..." in err
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["pretrain_steps"] == 10 and report["pretrain"]["steps"] == 10  # 2 epochs of the 40-image pool
    assert "--pretrain-steps 10" in (out / "report" / "report.md").read_text()
    assert scenario(out) == 0  # the fixture's budget back for the tests after this one


def test_a_subset_smaller_than_a_batch_is_refused_naming_the_flag():
    with pytest.raises(ConfigError, match=r"--fractions 0.005 gives 20 labelled images at --size quick"):
        StoragePretrainConfig(fractions=(0.005,))
    with pytest.raises(ConfigError, match=r"--fractions"):
        StoragePretrainConfig(fractions=(0.6,))


def test_a_missing_tokenizer_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert scenario(out, "--tokenizer", str(tmp_path / "missing.safetensors")) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("missing.safetensors: no such file (give a tokenizer.safetensors, or leave it out)")
    )
    assert not out.exists()
