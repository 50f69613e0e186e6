import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import seit.demo.dataset as demo
from seit.demo.baselines import colour_histogram, mean_colour, nearest_centroid_accuracy
from seit.demo.dataset import MANIFEST, PARTIAL, load_split, make_demo_dataset
from seit.demo.patterns import CLASS_NAMES, MAX_ASPECT, MAX_SIDE, MIN_ASPECT, MIN_SIDE
from seit.errors import SeitError

SMALL = {"train_per_class": 3, "val_per_class": 2}


def snapshot(root: Path) -> dict[str, bytes]:
    """Every image's bytes by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A complete small dataset (10 classes x (3 + 2) images), built once, copied by tests that change it."""
    root = tmp_path_factory.mktemp("demo") / "small"
    make_demo_dataset(root, **SMALL, num_workers=0)
    return root


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """10 classes x (30 + 20) images, read at 64 px: enough for the trivial baselines and the size statistics."""
    root = tmp_path_factory.mktemp("demo") / "medium"
    info = make_demo_dataset(root, train_per_class=30, val_per_class=20, seed=3)
    return info, load_split(root, "train", 64), load_split(root, "val", 64)


def test_layout_counts_and_info(small):
    info = make_demo_dataset(small, **SMALL)
    assert info.generated == 0
    assert info.classes == CLASS_NAMES and len(CLASS_NAMES) >= 10
    assert sorted(p.name for p in small.iterdir()) == [MANIFEST, "train", "val"]
    for split, per_class in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (small / split).iterdir()) == sorted(CLASS_NAMES)
        for name in CLASS_NAMES:
            names = sorted(p.name for p in (small / split / name).iterdir())
            assert names == [f"{i:05d}.jpg" for i in range(per_class)]
    assert info.num_train == 30 and info.num_val == 20
    assert info.train_dir == small / "train" and info.val_dir == small / "val"
    assert info.train_bytes == sum(p.stat().st_size for p in info.train_dir.rglob("*.jpg"))
    assert info.val_bytes == sum(p.stat().st_size for p in info.val_dir.rglob("*.jpg"))
    manifest = json.loads((small / MANIFEST).read_text())
    assert manifest["seed"] == 0 and manifest["counts"] == {"train": 3, "val": 2}


def test_every_file_is_an_rgb_jpeg_at_quality_90(small):
    reference = Image.new("RGB", (16, 16))
    reference.save(small.parent / "q90.jpg", quality=90)
    with Image.open(small.parent / "q90.jpg") as ref:
        q90 = ref.quantization
    for path in small.rglob("*.jpg"):
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert img.quantization == q90
            img.load()  # decodes the whole stream


def test_same_seed_same_bytes_other_seed_other_bytes(small, tmp_path):
    again = make_demo_dataset(tmp_path / "again", **SMALL, num_workers=0)
    assert again.generated == 50
    assert snapshot(tmp_path / "again") == snapshot(small)
    make_demo_dataset(tmp_path / "seed1", **SMALL, seed=1, num_workers=0)
    a, b = snapshot(small), snapshot(tmp_path / "seed1")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)


def test_parallel_workers_write_the_same_bytes(tmp_path):
    kwargs = {"train_per_class": 15, "val_per_class": 1, "num_classes": 10}  # 160 images: 4 worker chunks
    make_demo_dataset(tmp_path / "serial", **kwargs, num_workers=0)
    make_demo_dataset(tmp_path / "parallel", **kwargs, num_workers=2)
    assert snapshot(tmp_path / "parallel") == snapshot(tmp_path / "serial")


def test_sizes_and_aspects_vary_within_bounds(medium):
    info, _, _ = medium
    sizes = []
    for path in list(info.train_dir.rglob("*.jpg")) + list(info.val_dir.rglob("*.jpg")):
        with Image.open(path) as img:
            sizes.append(img.size)
    w, h = np.array(sizes).T
    aspect = w / h
    assert w.min() >= MIN_SIDE and h.min() >= MIN_SIDE and w.max() <= MAX_SIDE and h.max() <= MAX_SIDE
    assert aspect.min() >= MIN_ASPECT - 0.01 and aspect.max() <= MAX_ASPECT + 0.01
    assert aspect.min() < 0.75 and aspect.max() > 1.35  # both portrait and landscape
    assert w.max() - w.min() > 60 and h.max() - h.min() > 60
    assert len(set(sizes)) > 0.8 * len(sizes)


def test_trivial_colour_statistics_are_far_from_solving_it(medium):
    _, (x, y, classes), (vx, vy, _) = medium
    assert classes == sorted(CLASS_NAMES) and x.shape == (300, 64, 64, 3) and vx.shape == (200, 64, 64, 3)
    chance = 1 / len(classes)
    for feature in (mean_colour, colour_histogram):
        acc = nearest_centroid_accuracy(feature(x), y, feature(vx), vy)
        assert acc < chance + 0.15, (feature.__name__, acc)


def test_the_colour_baselines_do_solve_a_colour_coded_problem():
    # Control for the test above: the baselines are not broken, they fail on the demo data for a reason.
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, size=(10, 3))
    y = np.repeat(np.arange(10), 30)
    noise = rng.integers(-30, 31, size=(len(y), 16, 16, 3))
    x = np.clip(palette[y][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    for feature in (mean_colour, colour_histogram):
        assert nearest_centroid_accuracy(feature(x[::2]), y[::2], feature(x[1::2]), y[1::2]) > 0.9


def test_complete_folder_is_reused_untouched(small):
    before = {p: p.stat().st_mtime_ns for p in small.rglob("*")}
    info = make_demo_dataset(small, **SMALL)
    assert info.generated == 0
    assert {p: p.stat().st_mtime_ns for p in small.rglob("*")} == before


def test_interrupted_run_is_completed_with_identical_bytes(small, tmp_path, monkeypatch):
    root = tmp_path / "crashed"
    real, calls = demo.encode_image, []

    def crash_after_20(*args):
        calls.append(args)
        if len(calls) > 20:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(demo, "encode_image", crash_after_20)
    with pytest.raises(KeyboardInterrupt):
        make_demo_dataset(root, **SMALL, num_workers=0)
    monkeypatch.setattr(demo, "encode_image", real)
    assert (root / PARTIAL).exists() and not (root / MANIFEST).exists()
    assert len(snapshot(root)) == 20
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]

    info = make_demo_dataset(root, **SMALL, num_workers=0)
    assert info.generated == 30
    assert not (root / PARTIAL).exists()
    assert snapshot(root) == snapshot(small)


def test_changed_counts_and_classes_add_and_remove_only_what_changed(small, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(small, root)
    info = make_demo_dataset(root, train_per_class=5, val_per_class=2, num_workers=0)
    assert info.generated == 20  # two new train images per class
    bigger = snapshot(root)
    assert {k: v for k, v in bigger.items() if k in snapshot(small)} == snapshot(small)

    info = make_demo_dataset(root, train_per_class=2, val_per_class=1, num_classes=3, num_workers=0)
    assert info.generated == 0 and info.classes == CLASS_NAMES[:3]
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(CLASS_NAMES[:3])
    assert snapshot(root) == {k: v for k, v in bigger.items() if k in snapshot(root)}
    assert len(snapshot(root)) == 3 * (2 + 1)


def test_changed_seed_redraws_everything(small, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(small, root)
    info = make_demo_dataset(root, **SMALL, seed=1, num_workers=0)
    assert info.generated == 50 and info.seed == 1
    make_demo_dataset(tmp_path / "fresh1", **SMALL, seed=1, num_workers=0)
    assert snapshot(root) == snapshot(tmp_path / "fresh1")


def test_tampered_image_is_redrawn(small, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(small, root)
    (root / "val" / "rings" / "00001.jpg").write_bytes(b"not a jpeg")
    (root / "train" / "grid" / "00002.jpg").unlink()
    with pytest.raises(SeitError, match=r"rings/00001\.jpg: unreadable image.*rerun make_demo_dataset"):
        load_split(root, "val", 32)
    info = make_demo_dataset(root, **SMALL, num_workers=0)
    assert info.generated == 2 + 3  # the two touched class folders, redrawn whole
    assert snapshot(root) == snapshot(small)


def test_foreign_files_are_refused_and_kept(small, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(small, root)
    (root / "train" / "stripes" / "notes.txt").write_text("mine")
    before = snapshot(root)
    with pytest.raises(SeitError, match=r"notes\.txt.*empty or new folder"):
        make_demo_dataset(root, **SMALL, seed=2)
    assert snapshot(root) == before and (root / "train" / "stripes" / "notes.txt").exists()


def test_bad_arguments_are_clear_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SeitError, match="is a file"):
        make_demo_dataset(tmp_path / "file", **SMALL)
    with pytest.raises(SeitError, match="at least one image"):
        make_demo_dataset(tmp_path / "d", train_per_class=0, val_per_class=1)
    with pytest.raises(SeitError, match="seed must be"):
        make_demo_dataset(tmp_path / "d", **SMALL, seed=-1)
    with pytest.raises(SeitError, match="num_classes"):
        make_demo_dataset(tmp_path / "d", **SMALL, num_classes=11)
    with pytest.raises(SeitError, match="build the demo dataset first"):
        load_split(tmp_path / "d", "train", 64)
    assert not (tmp_path / "d").exists()
