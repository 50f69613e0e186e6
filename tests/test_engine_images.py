"""seit eval on images: tokenize on the fly, map ids into the pruned codebook, centre-crop, classify."""

import json

import pytest

from seit.cli import main
from tokenizer_testdata import save_tiny_tokenizer, write_image_folder

TINY = ["--model", "deit_tiny_token_4", "--embed-dim", "32", "--depth", "1", "--num-heads", "2"]
FAST = ["--num-workers", "0", "--no-tensorboard", "--batch-size", "8", "--unscale-lr", "--no-model-ema"]


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("SEIT_NO_PROGRESS", "1")


def _eval(args, out):
    assert main(["eval", *args, "--num-workers", "0", "--output", str(out)]) == 0
    return json.loads((out / "eval.json").read_text())


def test_images_through_the_tokenizer_equal_their_token_store(tmp_path):
    tok = save_tiny_tokenizer(tmp_path / "tok.safetensors")
    write_image_folder(tmp_path / "train", 24, 40, classes=3, seed=0)
    write_image_folder(tmp_path / "val", 13, 48, classes=3, seed=1)
    common = ["--tokenizer", str(tok), "--num-workers", "0"]
    assert main(["tokenize", str(tmp_path / "train"), *common, "--out", str(tmp_path / "s-train"), "--prune"]) == 0
    assert (
        main(
            [
                "tokenize",
                str(tmp_path / "val"),
                *common,
                "--out",
                str(tmp_path / "s-val"),
                "--codes-from",
                str(tmp_path / "s-train"),
            ]
        )
        == 0
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--store",
                str(tmp_path / "s-train"),
                "--output",
                str(run),
                "--epochs",
                "2",
                "--warmup-epochs",
                "0",
                *TINY,
                *FAST,
            ]
        )
        == 0
    )
    model = str(run / "model.safetensors")
    on_store = _eval([model, "--store", str(tmp_path / "s-val")], tmp_path / "e-store")
    on_images = _eval([model, "--images", str(tmp_path / "val"), "--tokenizer", str(tok)], tmp_path / "e-images")
    assert on_images["count"] == on_store["count"] == 13
    assert on_images["confusion"] == on_store["confusion"]
    assert on_images["loss"] == pytest.approx(on_store["loss"], rel=1e-5)


def test_pixel_baseline_trains_and_evaluates_on_images(tmp_path):
    write_image_folder(tmp_path / "train", 16, 40, classes=2, seed=0)
    write_image_folder(tmp_path / "val", 6, 40, classes=2, seed=1)
    run = tmp_path / "pixel"
    args = [
        "train",
        "--images",
        str(tmp_path / "train"),
        "--val-images",
        str(tmp_path / "val"),
        "--image-size",
        "32",
        "--model",
        "deit_tiny_pixel_16",
        "--embed-dim",
        "32",
        "--depth",
        "1",
        "--num-heads",
        "2",
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--output",
        str(run),
        *FAST,
    ]
    assert main(args) == 0
    result = _eval([str(run / "model.safetensors"), "--images", str(tmp_path / "val")], tmp_path / "e")
    assert result["count"] == 6 and result["class_names"] == ["class0", "class1"]
