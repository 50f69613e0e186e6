"""`seit demo` end to end: the quick run must learn and report true sizes; the tiny run tests the plumbing."""

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from seit.cli import main

PARTS = ("data", "tokenizer", "token-vit", "pixel-vit", "squeeze", "pixel-vit-jpeg-low", "pixel-vit-downsampled")
RUNS = {
    "tokens": "token-vit",
    "jpeg": "pixel-vit",
    "jpeg-low": "pixel-vit-jpeg-low",
    "downsampled": "pixel-vit-downsampled",
}


def folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The README's main command, `seit demo --quick` (about 3 minutes on 2 CPU cores)."""
    out = tmp_path_factory.mktemp("demo") / "quick"
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    return out, json.loads((out / "report" / "report.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "tiny"
    assert main(["demo", "--size", "tiny", "--output", str(out), "--num-workers", "0"]) == 0
    return out


def test_quick_demo_token_model_learns_far_above_chance(quick):
    _, report = quick
    acc = report["accuracy"]
    assert acc["held_out_images"] == 200 and acc["chance_top1"] == 25.0
    assert acc["tokens_top1"] >= acc["chance_top1"] + 12  # measured: 46% (4 classes)
    # the val store holds exactly what on-the-fly tokenization of the val images gives
    assert acc["tokens_top1_on_store"] == acc["tokens_top1"]


def test_quick_demo_sizes_are_the_files_on_disk(quick):
    out, report = quick
    storage = report["storage"]
    assert storage["jpeg_bytes"] == folder_bytes(out / "data", "*.jpg")
    assert storage["token_store_bytes_by_split"] == {
        split: folder_bytes(out / "stores" / split) for split in ("train", "val")
    }
    assert storage["token_store_bytes"] == folder_bytes(out / "stores")
    assert storage["ratio_tokens_to_jpeg"] == storage["token_store_bytes"] / storage["jpeg_bytes"] < 0.2
    assert storage["tokenizer_bytes"] == (out / "tokenizer" / "tokenizer.safetensors").stat().st_size


def test_quick_demo_tradeoff_rows_are_the_bytes_on_disk_and_the_evaluations(quick):
    out, report = quick
    rows = {r["row"]: r for r in report["tradeoff"]}
    assert list(rows) == list(RUNS)
    train_images = 1000
    on_disk = {
        "tokens": folder_bytes(out / "stores" / "train"),  # every file of the train store
        "jpeg": folder_bytes(out / "data" / "train", "*.jpg"),
        "jpeg-low": folder_bytes(out / "squeezed" / "jpeg-low", "*.jpg"),
        "downsampled": folder_bytes(out / "squeezed" / "downsampled", "*.webp"),
    }
    for name, row in rows.items():
        assert row["train_bytes"] == on_disk[name] and row["bytes_per_image"] == on_disk[name] / train_images
    assert rows["tokens"]["top1"] == report["accuracy"]["tokens_top1"]
    assert rows["jpeg"]["top1"] == report["accuracy"]["pixels_top1"]
    # the squeezed rows stay within the token store's bytes per image, unless their codec cannot get there
    budget = report["storage"]["squeeze_budget_bytes_per_image"]
    assert budget == rows["tokens"]["bytes_per_image"]
    assert rows["downsampled"]["bytes_per_image"] <= 1.05 * budget
    assert rows["jpeg"]["bytes_per_image"] > 5 * budget


def test_quick_demo_rows_share_one_recipe(quick):
    """The fairness claim: every row's run was trained with the same model size, optimiser, augmentation, seed."""
    import torch

    out, report = quick
    assert report["same_recipe"] is True

    def recipe(run):
        config = torch.load(out / run / "last.pt", weights_only=True)["config"]
        model = {k: v for k, v in config["model"].items() if k not in ("model", "finetune")}
        return model, config["optim"], config["augment"], config["run"]["seed"]

    recipes = {row: recipe(run) for row, run in RUNS.items()}
    assert all(r == recipes["tokens"] for r in recipes.values()), recipes


def test_quick_demo_report_says_which_input_wins_at_equal_bytes(quick):
    out, report = quick
    acc = report["accuracy"]
    assert acc["gap_points"] == pytest.approx(acc["pixels_top1"] - acc["tokens_top1"])
    markdown = (out / "report" / "report.md").read_text()
    assert report["tradeoff_verdict"] in markdown
    assert "points above" in report["tradeoff_verdict"] or "points below" in report["tradeoff_verdict"]
    for row in report["tradeoff"]:
        assert f"| {row['title']} | {row['stored_as']} | {row['train_bytes']:,} |" in markdown
    assert f"{report['storage']['ratio_tokens_to_jpeg']:.4f}" in markdown
    pictures = ["tradeoff.png", "reconstructions.png", "curves.png", *(f"confusion-{row}.png" for row in RUNS)]
    for png in pictures:
        with Image.open(out / "report" / png) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_quick_demo_artefacts_work_with_the_normal_commands(quick, tmp_path, capsys):
    out, report = quick
    assert main(["store", "verify", str(out / "stores" / "train")]) == 0
    evaluation = tmp_path / "eval"
    checkpoint = out / "token-vit" / "model.safetensors"
    args = ["eval", str(checkpoint), "--store", str(out / "stores" / "val")]
    assert main([*args, "--output", str(evaluation), "--num-workers", "0"]) == 0
    assert json.loads((evaluation / "eval.json").read_text())["top1"] == report["accuracy"]["tokens_top1_on_store"]


def tiny_demo(out: Path) -> int:
    return main(["demo", "--size", "tiny", "--output", str(out), "--num-workers", "0"])


def test_a_rerun_reuses_every_finished_part(tiny, capsys):
    records = {part: tiny / "state" / f"{part}.json" for part in PARTS}
    assert {p.stem for p in (tiny / "state").iterdir()} == set(PARTS)
    before = {part: (path.read_bytes(), path.stat().st_mtime_ns) for part, path in records.items()}
    capsys.readouterr()
    assert tiny_demo(tiny) == 0
    out, err = capsys.readouterr()
    assert err.count(": done earlier, reusing it") == len(PARTS)
    assert out.startswith("seit demo (tiny, ") and f"report: {tiny / 'report' / 'report.md'}" in out  # again
    assert {part: (path.read_bytes(), path.stat().st_mtime_ns) for part, path in records.items()} == before


def test_a_deleted_artefact_redoes_its_part_only(tiny, capsys):
    """The token ViT's weights are gone: its row continues from its last.pt; nothing else is redone."""
    model = tiny / "token-vit" / "model.safetensors"
    model.unlink()
    capsys.readouterr()
    assert tiny_demo(tiny) == 0
    err = capsys.readouterr().err
    assert "tokens-g16-k512-d32 ..." in err and "resumed" in err and model.exists()
    assert err.count(": done earlier, reusing it") == len(PARTS) - 1


def test_a_demo_stopped_by_a_signal_exits_75_and_a_rerun_finishes_it(tiny, capsys, monkeypatch):
    import dataclasses

    import seit.engine.train

    real = seit.engine.train.train
    (tiny / "state" / "pixel-vit.json").unlink()
    with monkeypatch.context() as m:
        m.setattr(seit.engine.train, "train", lambda t: dataclasses.replace(real(t), preempted=True))
        assert tiny_demo(tiny) == 75
    assert re.search(r"seit: stopped at step \d+; \S+/pixel-vit/last.pt saved: rerun the same command to continue",
                     capsys.readouterr().err)  # fmt: skip
    assert tiny_demo(tiny) == 0
    assert json.loads((tiny / "state" / "pixel-vit.json").read_text())["result"]["top1"] >= 0


def test_contradicting_sizes_are_refused(tmp_path, capsys):
    assert main(["demo", "--quick", "--size", "tiny", "--output", str(tmp_path)]) != 0
    assert "contradict" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()
