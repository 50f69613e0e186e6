import json

from seit.cli import main


def test_tokenize_benchmark_reports_rates_and_the_ratio(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEIT_NO_PROGRESS", "1")
    args = ["bench", "tokenize", "--presets", "vitvq-tiny", "--images", "6", "--repeats", "1", "--num-workers", "0"]
    assert main([*args, "--source-size", "80", "60", "--json", str(tmp_path / "b.json")]) == 0
    assert "vitvq-tiny" in capsys.readouterr().out
    row = json.loads((tmp_path / "b.json").read_text())["figures"]["presets"]["vitvq-tiny"]
    assert row["images"] == 6 and row["image_size"] == 64
    rates = ("decode", "model", "encode", "store")
    assert min(row[f"{name}_images_per_s"] for name in rates) > 0
    ratio = row["decode_images_per_s"] / row["encode_images_per_s"]
    assert abs(row["encode_over_decode_time"] - ratio) < 1e-6 * ratio
    ratio = row["encode_images_per_s"] / row["store_images_per_s"]
    assert abs(row["store_over_encode_time"] - ratio) < 1e-6 * ratio
