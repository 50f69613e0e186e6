import json

import pytest
import torch
from PIL import Image

from seit.cli import main
from seit.tokenizer.checkpoint import load_tokenizer
from tokenizer_testdata import FIXTURES, TINY32_YAML, write_image_folder

CKPT = str(FIXTURES / "vitvq-tiny.ckpt")


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("SEIT_NO_PROGRESS", "1")


def test_info_text_and_json(capsys):
    assert main(["tokenizer", "info", CKPT]) == 0
    out = capsys.readouterr().out
    assert "enhancing-transformers Lightning checkpoint" in out and "ids grid:    8x8" in out
    assert "512 codes of dim 32" in out
    assert main(["tokenizer", "info", CKPT, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["encoder"]["depth"] == 2 and info["parameters"]["total"] > 0


def test_convert_writes_our_format(tmp_path, capsys):
    assert main(["tokenizer", "convert", CKPT, "--out", str(tmp_path / "tok.safetensors")]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == str(tmp_path / "tok.safetensors")
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(load_tokenizer(tmp_path / "tok.safetensors").encode(images), load_tokenizer(CKPT).encode(images))


def test_eval_prints_json_and_writes_its_files(tmp_path, capsys):
    write_image_folder(tmp_path / "imgs", 5, 48)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    args = ["tokenizer", "eval", str(tmp_path / "imgs"), "--tokenizer", CKPT, "--num-workers", "0"]
    files = [
        "--grid",
        str(tmp_path / "g.png"),
        "--json",
        str(tmp_path / "r.json"),
        "--skipped",
        str(tmp_path / "s.jsonl"),
    ]
    assert main([*args, *files, "--grid-images", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 5 and report["skipped"] == 1 and 0 < report["usage"] <= 1
    assert report["codebook_size"] == 512 and -1 <= report["ssim"] <= 1 and report["psnr"] > 0
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert json.loads((tmp_path / "s.jsonl").read_text())["key"] == "broken.png"
    assert Image.open(tmp_path / "g.png").size == (3 * 66 + 2, 2 * 66 + 2)
    assert main([*args, "--max-images", "3"]) == 0  # spread over the sorted list: broken.png, img001, img004
    subset = json.loads(capsys.readouterr().out)
    assert (subset["images"], subset["skipped"]) == (2, 1)


def test_train_runs_and_errors_are_one_line(tmp_path, capsys):
    write_image_folder(tmp_path / "imgs", 8, 32)
    (tmp_path / "t.yaml").write_text(TINY32_YAML)
    args = ["tokenizer", "train", str(tmp_path / "imgs"), "--out", str(tmp_path / "run"), "--config",
            str(tmp_path / "t.yaml"), "--steps", "2", "--batch-size", "4", "--num-workers", "0"]  # fmt: skip
    assert main(args) == 0
    assert "tokenizer written to" in capsys.readouterr().err
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("seit: error: ") and "--resume" in err and "Traceback" not in err
    assert main(["tokenizer", "info", str(tmp_path / "nothing.ckpt")]) == 1
    assert "no such tokenizer file" in capsys.readouterr().err
