import json

import numpy as np

from seit.bench.store import store_bytes
from seit.cli import main
from seit.store.codec import codec_class


def test_store_benchmark_runs_and_its_figures_add_up(tmp_path, capsys):
    out = tmp_path / "files"
    args = ["bench", "store", "--samples", "300", "--fit-samples", "150", "--batches", "3", "--batch-size", "16"]
    args += ["--sensitivity", "0.5", "--out", str(out), "--json", str(tmp_path / "f.json")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "ratio (seit / SeiT)" in printed and "alternative" in printed
    f = json.loads((tmp_path / "f.json").read_text())["figures"]
    seit, ours = f["seit_release"], f["ours"]
    assert seit["data"] == (out / "bench-token.data.bin.gz").stat().st_size  # real files, really measured
    assert seit["index"] == (out / "bench-token.index.npy.gz").stat().st_size
    on_disk = {p.name: p.stat().st_size for p in (out / "store").iterdir()}
    assert ours["files"] == on_disk and ours["bytes"] == sum(on_disk.values())  # every file of the real store
    assert ours["bytes"] == ours["shards"] + ours["codec_state"] + ours["manifest"]
    assert ours["codec_params"]["neighbours"] == "pair"
    assert abs(f["ratio_bytes"] - ours["bytes"] / seit["bytes"]) < 1e-12
    assert abs(seit["bits_per_token"] - 8 * seit["bytes"] / (300 * 1024)) < 1e-9
    assert {a["codec"] for a in f["alternatives"]} == {"raw", "zstd", "ctx", "ctx-ans"}
    raw = next(a for a in f["alternatives"] if a["codec"] == "raw")
    assert raw["samples"] == 300 * (1024 * 2 + 4)  # 391 codes: two bytes per id, and a CRC-32 per sample
    assert f["sensitivity"][0]["correlation"] == 0.5
    assert f["entropy_bits_per_token"]["H(X)"]["held_out"] > f["entropy_bits_per_token"]["H(X|left)"]["held_out"]


def test_store_bytes_counts_every_part():
    samples = np.random.default_rng(0).integers(0, 391, size=(30, 4, 4))
    codec = codec_class("ctx").fit(samples, (4, 4), 391)
    blobs = codec.encode_many(samples)
    parts = store_bytes(codec, blobs, 3)
    assert parts["samples"] == sum(map(len, blobs)) and parts["state"] == len(codec.state())
    assert parts["index"] == 90 and parts["bytes"] == sum(v for k, v in parts.items() if k != "bytes")
    grouped = codec_class("ctx-ans").fit(samples, (4, 4), 391, group=20)
    blobs = grouped.encode_many(samples)  # two groups: each header counts once
    headers = len(blobs[0].header) + len(blobs[20].header)
    assert store_bytes(grouped, blobs, 3)["samples"] == sum(len(b.body) for b in blobs) + headers


def test_store_benchmark_refuses_settings_it_cannot_measure(capsys):
    assert main(["bench", "store", "--samples", "10", "--codebook-size", "600"]) == 1
    assert "--codebook-size 510" in capsys.readouterr().err
    assert (
        main(["bench", "store", "--samples", "10", "--grid", "4", "4", "4"]) == 2
    )  # a flag value that cannot work: usage
    assert "grid" in capsys.readouterr().err
