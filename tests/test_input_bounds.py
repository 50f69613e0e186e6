"""Hostile SeiT release files, label files and image folders: every field checked before it sizes anything."""

import gzip
import io
import json
import os
import resource
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seit.cli import main
from seit.errors import SeitError
from seit.images import ImageSkipped, list_images, open_rgb
from seit.interop.legacy import load_legacy_pickle
from seit.interop.seit_release import (
    SeitReleaseDataset,
    import_seit,
    read_codebook,
    read_index,
    read_labels,
    read_synonyms,
)
from seit.runtime.metrics import read_metrics
from seit.store import TokenStore
from seit.store.writer import StoreWriter
from tokenizer_testdata import save_tiny_tokenizer

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"
FAST = ["--num-workers", "0", "--no-tensorboard", "--log-every", "1", "--batch-size", "16", "--unscale-lr"]
TINY = ["--model", "deit_tiny_token_32", "--embed-dim", "32", "--depth", "1", "--num-heads", "2", "--epochs", "1"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture
def release(tmp_path):
    """A copy of the fixture's train split (tokens, index, labels, codebook, synonyms) to damage."""
    for name in ("tiny-train-token.data.bin.gz", "tiny-train-token.index.npy.gz", "tiny-train-label.txt"):
        shutil.copy(TOKENS / name, tmp_path / name)
    for name in ("codebook.ckpt", "synonyms.json"):
        shutil.copy(TOKENS / name, tmp_path / name)
    return {
        "tokens": tmp_path / "tiny-train-token.data.bin.gz",
        "index": tmp_path / "tiny-train-token.index.npy.gz",
        "labels": tmp_path / "tiny-train-label.txt",
        "codebook": tmp_path / "codebook.ckpt",
        "synonyms": tmp_path / "synonyms.json",
    }


def offsets_of(path):
    return np.load(io.BytesIO(gzip.decompress(Path(path).read_bytes())))


def write_index(path, offsets):
    buf = io.BytesIO()
    np.save(buf, np.asarray(offsets), allow_pickle=False)
    Path(path).write_bytes(gzip.compress(buf.getvalue()))


def test_index_offsets_far_beyond_the_data_are_refused_before_any_read(release, tmp_path):
    offsets = offsets_of(release["index"])
    offsets[-1] = 10**15
    write_index(release["index"], offsets)
    before = peak_rss_mb()
    with pytest.raises(SeitError, match=r"index\.npy\.gz: sample 63 spans \d+ bytes; a grid of 1024 ids"):
        SeitReleaseDataset(release["tokens"], labels=release["labels"])
    with pytest.raises(SeitError, match=r"index\.npy\.gz: sample 63 spans"):
        import_seit(tmp_path / "s", **release)
    assert peak_rss_mb() - before < 200


def test_index_offsets_that_decrease_or_do_not_start_at_zero_are_refused(release):
    offsets = offsets_of(release["index"])
    write_index(release["index"], offsets[::-1])
    with pytest.raises(SeitError, match="offsets must start at 0"):
        read_index(release["index"])
    swapped = offsets.copy()
    swapped[[3, 4]] = swapped[[4, 3]]
    write_index(release["index"], swapped)
    with pytest.raises(SeitError, match=r"sample 2 spans -?\d+ bytes; a grid of 1024"):
        read_index(release["index"], numel=1024)
    with pytest.raises(SeitError, match="offsets never decrease"):
        read_index(release["index"])


def test_a_gzip_bomb_index_is_refused_without_inflating_it(release):
    """A header declaring 64M offsets over a token file that can hold a few hundred samples at most."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (1 << 26,)})
    with gzip.open(release["index"], "wb", compresslevel=1) as f:
        f.write(header.getvalue())
        zeros = bytes(1 << 20)
        for _ in range(512):
            f.write(zeros)
    before = peak_rss_mb()
    with pytest.raises(SeitError, match=r"index\.npy\.gz: declares 67108863 samples, more than its token file"):
        SeitReleaseDataset(release["tokens"], labels=release["labels"])
    assert peak_rss_mb() - before < 100


def test_a_token_file_longer_than_its_index_is_refused_without_inflating_all_of_it(release):
    data = gzip.decompress(release["tokens"].read_bytes())
    with gzip.open(release["tokens"], "wb", compresslevel=1) as f:
        f.write(data)
        for _ in range(256):
            f.write(bytes(1 << 20))
    before = peak_rss_mb()
    with pytest.raises(SeitError, match=r"data\.bin\.gz: decompresses to more than \d+ bytes, its index says"):
        SeitReleaseDataset(release["tokens"], labels=release["labels"])
    assert peak_rss_mb() - before < 100


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("99999999999\n", r"label 99999999999 \(entry 1\) is outside -1 \(unlabelled\) .. 1048575"),
        ("-7\n", r"label -7 \(entry 1\) is outside"),
        ("1\n\xff\n", "cannot read it as a label file"),
        ("1.5\n", "every line must be one integer"),
    ],
)
def test_label_values_are_bounded_and_named(tmp_path, content, message):
    path = tmp_path / "x-label.txt"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(SeitError, match=r"x-label\.txt: " + message):
        read_labels(path)


def test_a_label_file_far_larger_than_its_count_is_not_read(tmp_path):
    path = tmp_path / "x-label.txt"
    path.write_text("1\n" * 100_000)
    with pytest.raises(SeitError, match=r"x-label\.txt: 200000 bytes is far more than 64 labels take"):
        read_labels(path, 64)


def test_a_huge_label_does_not_size_the_class_list(release, tmp_path, capsys):
    """The tester's case: one label 99999999999 had seit train build 1e11 class names and die at 23 GB."""
    labels = release["labels"].read_text().split()
    labels[5] = "99999999999"
    release["labels"].write_text("\n".join(labels) + "\n")
    args = ["train", "--train-token-file", str(release["tokens"]), "--train-label-file", str(release["labels"])]
    args += ["--codebook-path", str(release["codebook"]), "--output", str(tmp_path / "run"), *TINY, *FAST]
    assert main(args) == 1
    assert "tiny-train-label.txt: label 99999999999 (entry 6) is outside" in capsys.readouterr().err


def test_a_store_without_class_names_and_a_huge_label_is_refused(tmp_path, capsys):
    """A store may hold labels up to 2**31 - 1 without names; training must not make a name per id."""
    with StoreWriter(tmp_path / "s", grid_shape=(32, 32), codebook_size=391) as w:
        w.append_batch(np.zeros((2, 32, 32), dtype=np.int64), [0, (1 << 31) - 1], ["a", "b"])
    assert main(["train", "--store", str(tmp_path / "s"), "--output", str(tmp_path / "run"), *TINY, *FAST]) == 1
    assert "label 2147483647 implies 2147483648 classes, above the limit of 1048576" in capsys.readouterr().err


def test_readme_import_without_class_names_then_train(tmp_path, capsys):
    """README: `seit store import-seit --prefix ...` (no class names), then `seit train --store`."""
    store = tmp_path / "tokens" / "train"
    assert main(["store", "import-seit", "--prefix", str(TOKENS / "tiny-train"), str(store)]) == 0
    out = tmp_path / "run"
    assert main(["train", "--store", str(store), "--output", str(out), *TINY, *FAST]) == 0
    assert read_metrics(out / "metrics.jsonl", "train")
    assert main(["eval", str(out / "model.safetensors"), "--store", str(store), "--num-workers", "0"]) == 0
    assert "top1" in capsys.readouterr().out.lower()


def test_synonyms_of_the_wrong_shape_or_type_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "synonyms.json"
    for content, message in [
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ('"0123"', "expected an object"),
        (json.dumps({"0": [0, 1.5], "1": [1, 0]}), "every entry must be a list of integer code ids"),
        (json.dumps({"0": "01", "1": "10"}), "every entry must be a list of integer code ids"),
        (json.dumps({"0": [0, 1], "1": [1, 2**70]}), "synonym ids must lie in"),
    ]:
        path.write_text(content)
        with pytest.raises(SeitError, match=r"synonyms\.json: " + message):
            read_synonyms(path, 2)


def test_a_zip_bomb_codebook_is_refused_before_torch_inflates_it(tmp_path):
    torch.save(torch.zeros(4, 4), tmp_path / "plain.ckpt")
    bomb = tmp_path / "codebook.ckpt"
    with zipfile.ZipFile(tmp_path / "plain.ckpt") as src, zipfile.ZipFile(bomb, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data/0"):
                out.writestr(info.filename, bytes(256 << 20), compress_type=zipfile.ZIP_DEFLATED)
            else:
                out.writestr(info.filename, data)
    before = peak_rss_mb()
    with pytest.raises(SeitError, match=r"codebook\.ckpt: its members unpack to \d+ bytes, more than"):
        read_codebook(bomb)
    with pytest.raises(SeitError, match=r"codebook\.ckpt: its members unpack to"):
        load_legacy_pickle(bomb)
    assert peak_rss_mb() - before < 100


# ---- image folders ---------------------------------------------------------------------------------------
def image_tree(root: Path, per_class: int = 3) -> list[str]:
    """Two class folders of ``per_class`` small PNGs; returns the keys."""
    keys = []
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), 40 * i + c.encode()[0], dtype=np.uint8)).save(root / c / f"{i}.png")
            keys.append(f"{c}/{i}.png")
    return keys


def test_a_link_to_a_parent_folder_is_listed_once_and_reported(tmp_path):
    """The tester's case: one link to the parent turned 6 images into 246 samples without a word."""
    root = tmp_path / "images"
    keys = image_tree(root)
    os.symlink("..", root / "a" / "up")
    listing = list_images(root)
    assert [s.key for s in listing.samples] == keys
    assert [(r.key, r.kind) for r in listing.skipped] == [("a/up", "repeated-folder")]
    assert "a folder already listed" in listing.skipped[0].reason


def test_two_links_to_parents_do_not_hang_the_listing(tmp_path):
    root = tmp_path / "images"
    keys = image_tree(root)
    os.symlink("..", root / "a" / "up")
    os.symlink("../a", root / "b" / "sideways")
    os.symlink(".", root / "b" / "self")
    listing = list_images(root)
    assert [s.key for s in listing.samples] == keys
    assert {r.key for r in listing.skipped} == {"a/up", "b/self", "b/sideways"}


def test_a_second_link_to_a_real_folder_is_read_once(tmp_path):
    root = tmp_path / "images"
    keys = image_tree(root)
    os.symlink(root / "b", root / "a" / "again")
    listing = list_images(root)
    assert [s.key for s in listing.samples] == keys and [r.key for r in listing.skipped] == ["a/again"]


def test_a_fifo_named_like_an_image_is_skipped_not_waited_for(tmp_path):
    root = tmp_path / "images"
    keys = image_tree(root)
    os.mkfifo(root / "a" / "x.png")
    os.symlink(root / "nowhere.png", root / "b" / "broken.png")
    listing = list_images(root)
    assert [s.key for s in listing.samples] == keys
    assert [(r.key, r.kind) for r in listing.skipped] == [("a/x.png", "not-a-file"), ("b/broken.png", "missing")]
    assert "a FIFO, not a regular file" in listing.skipped[0].reason
    with pytest.raises(ImageSkipped, match="not-a-file: a FIFO"):  # a list file may name one too
        open_rgb(root / "a" / "x.png")


def truncated_jpeg_declaring(path: Path, width: int, height: int, keep: int) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data[:keep]))


def test_a_header_declaring_far_more_pixels_than_the_file_holds_is_skipped_before_decoding(tmp_path):
    """The tester's case: a 779-byte truncated JPEG whose header claims 65000x65000 was stored as a sample."""
    path = tmp_path / "bomb.jpg"
    truncated_jpeg_declaring(path, 65000, 65000, 779)
    before = peak_rss_mb()
    with pytest.raises(ImageSkipped, match=r"implausible: its header declares 65000x65000 pixels, more than 16384"):
        open_rgb(path)
    assert peak_rss_mb() - before < 100
    assert open_rgb(image_tree(tmp_path / "ok") and tmp_path / "ok" / "a" / "0.png").size == (8, 8)


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    return save_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok.safetensors")


def test_names_a_store_key_cannot_hold_are_skipped_at_listing_and_tokenize_finishes(tmp_path, tiny_tokenizer):
    """A non-UTF-8 name crashed seit tokenize after all the encoding, and every rerun the same way."""
    root = tmp_path / "images"
    keys = image_tree(root, per_class=2)
    shutil.copy(root / "a" / "0.png", os.fsdecode(bytes(root / "a") + b"/caf\xe9.png"))
    shutil.copy(root / "b" / "0.png", root / "b" / "new\nline.png")
    os.mkfifo(root / "b" / "pipe.png")
    shutil.copy(root / "b" / "1.png", root / "b" / "-ünï cødé\t.png")  # storable: kept, key exact
    keys = sorted([*keys, "b/-ünï cødé\t.png"])
    out = tmp_path / "store"
    args = ["tokenize", str(root), "--tokenizer", str(tiny_tokenizer), "--out", str(out), "--num-workers", "0"]
    for again in ([], ["--resume", "auto"]):  # the resumed rerun finds the finished store and the same report
        assert main([*args, "--device", "cpu", *again]) == 0
        assert TokenStore.open(out).keys == keys
        report = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
        assert [(r["key"], r["kind"]) for r in report] == [
            ("a/caf\udce9.png", "bad-name"),
            ("b/new\nline.png", "bad-name"),
            ("b/pipe.png", "not-a-file"),
        ]


def test_the_pixel_baseline_lists_a_linked_tree_once(tmp_path):
    from seit.engine.pixels import PixelDataset

    root = tmp_path / "images"
    keys = image_tree(root)
    os.symlink("..", root / "a" / "up")
    dataset = PixelDataset(root, 8)
    assert [s.key for s in dataset.samples] == keys and dataset.class_names == ["a", "b"]
