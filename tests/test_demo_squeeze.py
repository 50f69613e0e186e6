"""Pixels squeezed to a byte budget (the trade-off's baselines): settings, budget matching, folders."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from seit.demo.squeeze import (
    MANIFEST,
    Squeeze,
    downsample_settings,
    jpeg_settings,
    match_budget,
    mean_bytes,
    squeeze_folder,
)
from seit.errors import SeitError
from seit.images import list_images


def make_folder(root, classes=("a", "b"), per_class=3, size=(96, 80)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            x = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
            pixels = (x + rng.normal(0, 20, x.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.jpg", quality=95)
    return root


def test_setting_encodes_in_its_codec_at_its_size():
    image = Image.new("RGB", (120, 90), (200, 30, 40))
    jpeg = Image.open(io.BytesIO(Squeeze("jpeg", 5).encode(image)))
    assert jpeg.format == "JPEG" and jpeg.size == (120, 90)
    small = Image.open(io.BytesIO(Squeeze("webp", 80, side=30).encode(image)))
    assert small.format == "WEBP" and small.size == (40, 30)  # the shorter side, aspect kept
    big = Image.open(io.BytesIO(Squeeze("webp", 80, side=500).encode(image)))
    assert big.size == (120, 90)  # never upsampled


@pytest.mark.parametrize(
    "kwargs", [dict(format="png", quality=5), dict(format="jpeg", quality=0), dict(format="jpeg", quality=5, side=0)]
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(SeitError):
        Squeeze(**kwargs)


def fake_measure(sizes):
    calls = []

    def measure(paths, setting):
        calls.append(setting.quality)
        return sizes[setting.quality]

    return measure, calls


def test_match_budget_takes_the_largest_setting_within_the_budget():
    settings = [Squeeze("jpeg", q) for q in range(1, 65)]
    sizes = {q: 100 + 10 * q for q in range(1, 65)}
    measure, calls = fake_measure(sizes)
    chosen, size = match_budget(["x"], 455, settings, measure)
    assert chosen.quality == 35 and size == 450  # 460 would exceed the budget
    assert len(calls) <= 8  # bisection, not a scan of 64 settings
    for budget in (110, 111, 739, 740, 10_000):
        measure, _ = fake_measure(sizes)
        chosen, size = match_budget(["x"], budget, settings, measure)
        assert size <= budget and (chosen.quality == 64 or sizes[chosen.quality + 1] > budget)


def test_match_budget_falls_back_to_the_smallest_setting_when_nothing_fits():
    measure, _ = fake_measure({1: 300, 2: 310})
    chosen, size = match_budget(["x"], 100, [Squeeze("jpeg", 1), Squeeze("jpeg", 2)], measure)
    assert chosen.quality == 1 and size == 300


def test_real_bytes_grow_with_quality_and_side(tmp_path):
    paths = [s.path for s in list_images(make_folder(tmp_path / "imgs")).samples]
    assert mean_bytes(paths, Squeeze("jpeg", 5)) < mean_bytes(paths, Squeeze("jpeg", 50))
    sides = downsample_settings(max_side=64)
    assert sides[0].side == 8 and sides[-1].side == 64
    assert mean_bytes(paths, sides[0]) < mean_bytes(paths, sides[-1])
    assert [s.quality for s in jpeg_settings()] == list(range(1, 96))


def test_squeeze_folder_mirrors_the_tree_and_reuses_a_finished_folder(tmp_path):
    src = make_folder(tmp_path / "imgs")
    dst = tmp_path / "small"
    setting = Squeeze("webp", 80, side=16)
    total = squeeze_folder(src, dst, setting)
    files = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.webp"))
    assert files == [f"{c}/{i}.webp" for c in "ab" for i in range(3)]
    assert total == sum((dst / f).stat().st_size for f in files)
    listing = list_images(dst)
    assert list(listing.classes) == ["a", "b"] and [s.label for s in listing.samples] == [0, 0, 0, 1, 1, 1]
    manifest = json.loads((dst / MANIFEST).read_text())
    assert manifest["bytes"] == total and manifest["images"] == 6
    (dst / "a" / "0.webp").write_bytes(b"left alone by a rerun of a finished folder")
    assert squeeze_folder(src, dst, setting) == total
    assert (dst / "a" / "0.webp").read_bytes().startswith(b"left alone")
    other = squeeze_folder(src, dst, Squeeze("webp", 80, side=32))  # another setting: rebuilt
    assert other != total and Image.open(dst / "a" / "0.webp").size[1] == 32


def test_squeeze_folder_refuses_a_folder_it_did_not_write(tmp_path):
    src = make_folder(tmp_path / "imgs")
    dst = tmp_path / "mine"
    dst.mkdir()
    (dst / "notes.txt").write_text("a user's file")
    with pytest.raises(SeitError, match="not a folder of squeezed images"):
        squeeze_folder(src, dst, Squeeze("jpeg", 10))
    assert (dst / "notes.txt").read_text() == "a user's file"
