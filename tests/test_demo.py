"""`seit demo` end to end: the quick run must learn and report true sizes; the tiny run tests the plumbing."""

import json
from pathlib import Path

import pytest
from PIL import Image

from seit.cli import main

STAGES = (
    "data",
    "tokenizer",
    "tokenize",
    "squeeze",
    "token-vit",
    "pixel-vit",
    "pixel-vit-jpeg-low",
    "pixel-vit-downsampled",
    "evaluate",
)
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


def test_a_rerun_reuses_every_finished_stage(tiny, capsys):
    before = json.loads((tiny / "demo-state.json").read_text())
    assert set(before["stages"]) == set(STAGES)
    capsys.readouterr()
    assert main(["demo", "--size", "tiny", "--output", str(tiny), "--num-workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert all(f"[demo] {name}: done earlier" in printed for name in STAGES)
    assert json.loads((tiny / "demo-state.json").read_text())["stages"] == before["stages"]


def test_a_deleted_artefact_redoes_its_stage_and_the_later_ones(tiny, capsys):
    model = tiny / "token-vit" / "model.safetensors"
    model.unlink()
    stale = tiny / "pixel-vit" / "stale-file"
    stale.write_text("made from the old token-vit run's inputs")
    capsys.readouterr()
    assert main(["demo", "--size", "tiny", "--output", str(tiny), "--num-workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "[demo] tokenizer: done earlier" in printed and "[demo] tokenize: done earlier" in printed
    assert all(f"[demo] {name} ..." in printed for name in STAGES[STAGES.index("token-vit") :])
    assert model.exists() and not stale.exists()  # later stages start from a clean folder


def test_contradicting_sizes_are_refused(tmp_path, capsys):
    assert main(["demo", "--quick", "--size", "tiny", "--output", str(tmp_path)]) != 0
    assert "contradict" in capsys.readouterr().err
    assert not (tmp_path / "demo-state.json").exists()
