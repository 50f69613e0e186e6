"""`seit tradeoff` on a tiny folder: the report, true bytes, one recipe, cached rows, stops and resumes, bad flags."""

import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

from seit.cli import build_parser, main
from seit.config import from_args
from seit.tradeoff.config import TradeoffConfig
from seit.tradeoff.report import pareto_front, verdict
from seit.tradeoff.stages import token_model

TOKENS = "grid=8,codes=16,dim=8"  # a 64 px tokenizer: the smallest the ViT's 7x7 crop fits
TINY = ["--tokenizer-steps", "2", "--embed-dim", "32", "--depth", "1", "--num-heads", "2", "--epochs", "1"]
TINY += ["--batch-size", "8", "--num-workers", "0", "--device", "cpu"]
ROWS = ["tokens-g8-k16-d8", "stored", "jpeg-q5", "downsample-16"]


def folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def row_folder(out: Path, row: str) -> Path:
    (folder,) = [p for p in (out / "rows").iterdir() if re.fullmatch(rf"{re.escape(row)}-[0-9a-f]{{10}}", p.name)]
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from seit.demo.dataset import make_demo_dataset

    root = tmp_path_factory.mktemp("tradeoff") / "data"
    make_demo_dataset(root, train_per_class=8, val_per_class=3, num_classes=2, num_workers=0)
    return root


def tradeoff(data: Path, out: Path, *extra: str) -> int:
    args = [str(data / "train"), "--val", str(data / "val"), "--output", str(out), *TINY]
    return main(["tradeoff", *args, *extra])


@pytest.fixture(scope="module")
def run(data):
    out = data.parent / "out"
    extra = ["--tokens", TOKENS, "--jpeg-qualities", "5", "--downsample", "16", "--match-tokens"]
    assert tradeoff(data, out, *extra) == 0
    return out, extra, json.loads((out / "report" / "report.json").read_text())


def test_the_report_has_a_table_a_verdict_and_a_frontier_plot(run):
    out, _, report = run
    names = [r["row"] for r in report["rows"]]
    assert names[:4] == ROWS and len(names) == 6  # + the JPEG quality and the side matched to the tokens' bytes
    assert [r["row"] for r in report["rows"] if r["matched"]] == names[4:]
    markdown = (out / "report" / "report.md").read_text()
    assert report["verdict"] in markdown and report["verdict"].startswith("The front")
    for r in report["rows"]:
        assert re.search(rf"\| {r['row']} \| [^|]+ \| {r['bytes_per_image']:,.0f} \| {r['top1']:.1f} \|", markdown)
    assert report["front"] == [r["row"] for r in sorted(report["rows"], key=lambda r: r["bytes_per_image"])
                               if r["on_front"]]  # fmt: skip
    assert (out / "report" / "frontier.png").read_bytes().startswith(b"\x89PNG")
    assert report["held_out_images"] == 6 and all(r["held_out_images"] == 6 for r in report["rows"])


def test_bytes_per_image_are_every_byte_of_the_rows_training_data_on_disk(run, data):
    out, _, report = run
    rows = {r["row"]: r for r in report["rows"]}
    on_disk = {
        "tokens-g8-k16-d8": folder_bytes(row_folder(out, "tokens-g8-k16-d8") / "store" / "train"),  # every file
        "stored": folder_bytes(data / "train", "*.jpg"),
        "jpeg-q5": folder_bytes(row_folder(out, "jpeg-q5") / "images", "*.jpg"),
        "downsample-16": folder_bytes(row_folder(out, "downsample-16") / "images", "*.webp"),
    }
    for name, size in on_disk.items():
        assert rows[name]["train_bytes"] == size and rows[name]["bytes_per_image"] == size / 16


def test_every_row_trains_the_same_vit_with_the_same_recipe(run):
    """The fairness claim, from each run's own checkpoint: only the data and the input stem differ."""
    import torch

    out, _, report = run
    assert report["same_recipe"] is True

    def recipe(row):
        config = torch.load(row_folder(out, row) / "run" / "last.pt", weights_only=True)["config"]
        model = {k: v for k, v in config["model"].items() if k not in ("model", "finetune")}
        return model, config["optim"], config["augment"], config["run"]["seed"], config["model"]["model"]

    recipes = {row: recipe(row) for row in ROWS}
    assert all(r[:4] == recipes["stored"][:4] for r in recipes.values()), recipes
    assert recipes["tokens-g8-k16-d8"][4] == "deit_tiny_token_32_s1" and recipes["stored"][4] == "deit_tiny_pixel_8"
    pixels = torch.load(row_folder(out, "stored") / "run" / "last.pt", weights_only=True)["config"]
    assert pixels["data"]["image_size"] == 56  # 8 px patches: the token ViT's 7x7 sequence


def test_matched_rows_take_the_most_bytes_within_the_tokens_bytes(run):
    _, _, report = run
    budget = report["rows"][0]["bytes_per_image"]
    for row in report["rows"][4:]:  # each at most the tokens' bytes, unless its codec's smallest setting is above
        assert row["bytes_per_image"] <= budget or row["row"] in ("jpeg-q1", "downsample-8"), row


def test_a_tokenizer_file_makes_a_token_row_without_training_one(run, data, caplog):
    out, _, _ = run
    (tokenizer,) = (out / "tokenizers").glob("tokens-g8-k16-d8-*/tokenizer.safetensors")
    with caplog.at_level("INFO", logger="seit"):
        assert tradeoff(data, out, "--no-stored", "--tokenizer", str(tokenizer)) == 0
    assert "tokens-file-g8-k16-d8 ..." in caplog.text and "seit tokenizer train" not in caplog.text
    assert "tokenizer tokens" not in caplog.text
    report = json.loads((out / "report" / "report.json").read_text())
    assert [r["row"] for r in report["rows"]] == ["tokens-file-g8-k16-d8"]


def test_adding_a_row_trains_only_that_row(run, data, caplog):
    out, extra, _ = run
    results = {row: row_folder(out, row) / "result.json" for row in ROWS}
    before = {row: (path.read_bytes(), path.stat().st_mtime_ns) for row, path in results.items()}
    with caplog.at_level("INFO", logger="seit"):
        assert tradeoff(data, out, *extra, "--downsample", "16", "24") == 0
    log = caplog.text
    assert all(f"{row}: done earlier" in log for row in ROWS) and "tokenizer tokens-g8-k16-d8: done earlier" in log
    assert "downsample-24 ..." in log and log.count("seit train: writing to") == 1
    assert {row: (path.read_bytes(), path.stat().st_mtime_ns) for row, path in results.items()} == before
    report = json.loads((out / "report" / "report.json").read_text())
    assert "downsample-24" in [r["row"] for r in report["rows"]]


def test_a_changed_recipe_makes_new_rows_and_keeps_the_old_ones_unreported(run, data, caplog):
    out, _, _ = run
    old = row_folder(out, "tokens-g8-k16-d8")
    with caplog.at_level("INFO", logger="seit"):
        assert tradeoff(data, out, "--tokens", TOKENS, "--no-stored", "--lr", "0.002") == 0
    assert "tokenizer tokens-g8-k16-d8: done earlier" in caplog.text  # the tokenizer does not depend on the recipe
    assert "tokens-g8-k16-d8 ..." in caplog.text
    folders = [p for p in (out / "rows").iterdir() if p.name.startswith("tokens-g8-k16-d8-")]
    assert len(folders) == 2 and old in folders and (old / "result.json").exists()
    report = json.loads((out / "report" / "report.json").read_text())
    assert [r["row"] for r in report["rows"]] == ["tokens-g8-k16-d8"] and report["recipe"]["lr"] == 0.002
    assert Path(report["rows"][0]["run"]).parent != old


def test_a_row_stopped_by_a_signal_exits_75_and_a_rerun_continues_it(run, data, capsys, monkeypatch):
    import seit.engine.train

    out, _, _ = run
    real = seit.engine.train.train
    with monkeypatch.context() as m:
        m.setattr(seit.engine.train, "train", lambda t: dataclasses.replace(real(t), preempted=True))
        assert tradeoff(data, out, "--no-stored", "--tokens", TOKENS, "--jpeg-qualities", "40") == 75
    err = capsys.readouterr().err
    assert re.search(r"seit: stopped at step 2; \S+/rows/jpeg-q40-\w+/run/last.pt saved: rerun the same command to "
                     r"continue", err), err  # fmt: skip
    record = row_folder(out, "jpeg-q40") / "result.json"
    assert json.loads(record.read_text())["result"] is None  # its settings, no result
    assert tradeoff(data, out, "--no-stored", "--tokens", TOKENS, "--jpeg-qualities", "40") == 0
    err = capsys.readouterr().err
    assert "resumed" in err and "jpeg-q40 ..." in err and json.loads(record.read_text())["result"]["top1"] >= 0


def test_pareto_front_keeps_ties_and_duplicates_and_drops_dominated_points():
    # (bytes, top-1)
    assert pareto_front([(100, 50.0), (200, 60.0), (300, 55.0)]) == [True, True, False]
    assert pareto_front([(100, 50.0), (100, 50.0)]) == [True, True]  # duplicates: neither beats the other
    assert pareto_front([(100, 50.0), (100, 40.0)]) == [True, False]  # same bytes, lower top-1
    assert pareto_front([(100, 50.0), (200, 50.0)]) == [True, False]  # same top-1, more bytes
    assert pareto_front([(300, 70.0), (100, 20.0), (200, 20.0)]) == [True, True, False]
    assert pareto_front([]) == []


def test_the_verdict_names_the_front_and_whether_tokens_match_every_pixel_row():
    def row(name, kind, size, top1, on_front):
        return {"row": name, "kind": kind, "bytes_per_image": size, "top1": top1, "on_front": on_front}

    rows = [row("t", "tokens", 300, 40.0, True), row("q1", "pixels", 460, 33.5, False),
            row("stored", "pixels", 4600, 34.0, False)]  # fmt: skip
    words = verdict(rows)
    assert words.startswith("The front (the most top-1 for the bytes): t (300 B, 40.0%).")
    assert "Every pixel row is matched by a token row" in words
    rows.append(row("s16", "pixels", 160, 30.0, True))
    words = verdict(rows)
    assert "front (the most top-1 for the bytes): s16 (160 B, 30.0%), t (300 B, 40.0%)." in words
    assert words.endswith("Not every pixel row is matched by a token row at no more bytes and at least its top-1: "
                          "s16 (160 B, 30.0%) is not.")  # fmt: skip


def test_the_token_model_follows_the_grid():
    assert token_model(32) == token_model(16) == "deit_tiny_token_32"
    assert token_model(8) == token_model(4) == "deit_tiny_token_32_s1"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tokens", "grid=16"], "--tokens 'grid=16': missing codes, dim"),
        (["--tokens", "grid=16,codes=x,dim=8"], "--tokens 'grid=16,codes=x,dim=8': give grid=N,codes=N,dim=N"),
        (["--tokens", "grid=16,codes=8,dim=8,grid=8"], "give grid=N,codes=N,dim=N"),
        (["--tokens", "grid=1,codes=8,dim=8"], "grid and codes must be >= 2"),
        (["--tokens", TOKENS, TOKENS], "--tokens: each spec once"),
        (["--jpeg-qualities", "0"], "--jpeg-qualities values must be in [1, 100]"),
        (["--downsample", "4"], "--downsample values must be >= 8"),
        (["--downsample", "16", "16"], "--downsample: each value once"),
        (["--no-stored", "--tokens", TOKENS, "--embed-dim", "30"], "--embed-dim 30 must be divisible by --num-heads"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it_and_writes_nothing(flags, message, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["tradeoff", str(tmp_path), "--val", str(tmp_path), "--output", str(out), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_bad_folders_are_refused_naming_them(data, tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("not a tradeoff")
    assert tradeoff(data, used) == 1
    assert "not empty and not a seit tradeoff folder" in capsys.readouterr().err
    assert tradeoff(data, data / "train" / "out") == 1
    assert "is inside IMAGES" in capsys.readouterr().err and not (data / "train" / "out").exists()
    assert tradeoff(data, tmp_path / "a", "--tokenizer", str(tmp_path / "missing.safetensors")) == 1
    assert "--tokenizer" in capsys.readouterr().err and not (tmp_path / "a").exists()
    args = [str(data / "train"), "--val", str(data / "train" / "stripes"), "--output", str(tmp_path / "b")]
    assert main(["tradeoff", *args]) == 1
    assert "--val" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_restart_moves_a_used_folder_aside(data, tmp_path, monkeypatch):
    import seit.tradeoff.report
    import seit.tradeoff.run

    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("not a tradeoff")
    monkeypatch.setattr(seit.tradeoff.run, "run_rows", lambda *a: [])  # the folder handling only
    monkeypatch.setattr(seit.tradeoff.report, "write_report", lambda *a: {})
    assert tradeoff(data, used, "--restart") == 0
    assert (tmp_path / "used.old-1" / "notes.txt").exists() and (used / "tradeoff.json").exists()


def test_help_examples_build_the_config():
    from seit.cli.tradeoff import EPILOG

    lines = re.sub(r"\\\n\s*", " ", EPILOG).splitlines()
    examples = [shlex.split(line.strip())[1:] for line in lines if line.strip().startswith("seit tradeoff")]
    assert len(examples) == 3
    for argv in examples:
        cfg = from_args(TradeoffConfig, build_parser().parse_args(argv))
        assert cfg.token_specs() or cfg.tokenizer
