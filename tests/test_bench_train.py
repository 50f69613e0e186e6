import json

from seit.cli import main


def test_bench_train_reports_both_rates_and_their_ratio(tmp_path, capsys):
    out = tmp_path / "train.json"
    args = ["bench", "train", "--batch-size", "2", "--steps", "1", "--rounds", "2", "--depth", "1", "--json", str(out)]
    assert main(args) == 0
    figures = json.loads(out.read_text())["figures"]
    assert len(figures["token_rounds"]) == len(figures["pixel_rounds"]) == 2
    assert figures["ratio"] == figures["token_steps_per_s"] / figures["pixel_steps_per_s"]
    assert "token / pixel" in capsys.readouterr().out
