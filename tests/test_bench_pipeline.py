import json

import torch

from seit.bench.pipeline import in_memory_ids
from seit.cli import main


def test_pipeline_benchmark_reports_rates_and_bytes(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "pipeline.json"
    args = ["--batch-size", "8", "--rounds", "1", "--seit-batches", "1", "--baseline-samples", "4", "--grid", "8"]
    args += ["--codes", "20", "--dim", "4", "--classes", "3", "--allocator", "system", "--json", str(out)]
    assert main(["bench", "pipeline", *args]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert (
        figures["allocator"] == "system"
        and figures["crop"] == 7
        and figures["torch_threads"] == 1
        and torch.get_num_threads() == threads
    )
    assert figures["seit_bytes_per_sample"] == 2 * 8 * 8  # int16 ids
    assert figures["baseline_bytes_per_sample"] == 4 * 20 * 7 * 7  # float32 one-hot map after the crop
    for clock in ("cpu", "wall"):
        ours, base = figures[f"seit_samples_per_{clock}_s"], figures[f"baseline_samples_per_{clock}_s"]
        assert ours > 0 and base > 0 and len(figures["rounds"]["seit"][clock]) == 1
        assert abs(figures["speedup" if clock == "cpu" else "speedup_wall"] - ours / base) < 0.1
    assert "speedup" in capsys.readouterr().out


def test_in_memory_source_is_int16_ids_with_local_structure():
    synonyms = torch.stack([torch.arange(30), (torch.arange(30) + 1) % 30, (torch.arange(30) + 2) % 30], dim=1)
    ids = in_memory_ids(16, 32, synonyms, seed=0)
    assert ids.shape == (16, 32, 32) and ids.dtype.name == "int16" and ids.min() >= 0 and ids.max() < 30
    same_as_right = (ids[:, :, 1:] == ids[:, :, :-1]).mean()
    assert 0.3 < same_as_right < 0.9  # blocky like VQ tokens, not i.i.d. noise (which would give ~1/30)


def test_bad_arguments_are_refused_cleanly(capsys):
    assert main(["bench", "pipeline", "--batch-size", "7"]) == 1
    assert "--batch-size must be even" in capsys.readouterr().err
