import gzip
import json
from pathlib import Path

import numpy as np

from seit.cli import main
from seit.store.format import MANIFEST
from store_util import write_store

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"


def test_info_and_stats_report_sizes_usage_and_entropy(tmp_path, capsys):
    ids, labels, _ = write_store(tmp_path / "s", codebook=np.ones((391, 4)))
    assert main(["store", "info", str(tmp_path / "s"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    payload = sum(s["payload_bytes"] for s in json.loads((tmp_path / "s" / MANIFEST).read_text())["shards"])
    assert info["samples"] == 200 and info["classes"] == 10 and info["codebook"] == [391, 4]
    assert info["bits_per_token"] == 8 * payload / (200 * 16)

    png = tmp_path / "usage.png"
    assert main(["store", "stats", str(tmp_path / "s"), "--json", "--png", str(png)]) == 0
    stats = json.loads(capsys.readouterr().out)
    _, counts = np.unique(ids, return_counts=True)
    p = counts / counts.sum()
    assert abs(stats["entropy_bits_per_token"] - float(-(p * np.log2(p)).sum())) < 1e-9
    assert stats["codes_used"] == len(counts) and sum(stats["code_usage"]) == ids.size
    assert stats["label_counts"] == np.bincount(labels).tolist()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["store", "stats", str(tmp_path / "s"), "--max-samples", "50"]) == 0
    table = capsys.readouterr().out
    assert "entropy" in table and "50 samples" in table


def test_verify_exit_status_names_the_corrupt_shard(tmp_path, capsys):
    write_store(tmp_path / "s")
    assert main(["store", "verify", str(tmp_path / "s")]) == 0
    assert "ok: 200 samples" in capsys.readouterr().out
    shard = tmp_path / "s" / "shard-00000-000001.tok"
    data = bytearray(shard.read_bytes())
    data[5] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["store", "verify", str(tmp_path / "s")]) == 1
    assert "shard-00000-000001.tok: sha256 mismatch" in capsys.readouterr().err


def test_import_with_prefix_then_export_reproduces_the_release(tmp_path, capsys):
    out = tmp_path / "val"
    assert main(["store", "import-seit", "--prefix", str(TOKENS / "tiny-val"), "--shard-mb", "0.01", str(out)]) == 0
    assert main(["store", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 32 and info["codebook"] == [391, 32] and info["synonyms"] == [391, 10]
    assert main(["store", "export-seit", str(out), str(tmp_path / "exp" / "tiny-val")]) == 0
    for suffix in ("-token.data.bin.gz", "-token.index.npy.gz"):
        mine = gzip.decompress((tmp_path / "exp" / f"tiny-val{suffix}").read_bytes())
        assert mine == gzip.decompress((TOKENS / f"tiny-val{suffix}").read_bytes())
    assert main(["store", "import-seit", str(tmp_path / "x")]) == 1
    assert "needs --tokens" in capsys.readouterr().err
    assert main(["store", "info", str(tmp_path / "nothing")]) == 1
    assert "no such directory" in capsys.readouterr().err


def test_json_alone_prints_json_and_json_path_writes_it_beside_the_usual_output(tmp_path, capsys):
    write_store(tmp_path / "s")
    assert main(["store", "verify", str(tmp_path / "s"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["store", "verify", str(tmp_path / "s"), "--json", str(tmp_path / "v.json")]) == 0
    assert capsys.readouterr().out.startswith("ok: ")  # the usual line, and the figures in the file
    assert json.loads((tmp_path / "v.json").read_text())["ok"] is True
    assert main(["store", "info", str(tmp_path / "s"), "--json", str(tmp_path / "i.json")]) == 0
    assert "samples" in capsys.readouterr().out and json.loads((tmp_path / "i.json").read_text())["samples"] == 200
