import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import seit
from seit.cli import main
from seit.errors import SeitError
from seit.images import DEFAULT_MAX_PIXELS, load_image
from seit.runtime import RunError
from seit.store import StoreError, StoreWriter, TokenStore, verify_store
from seit.store.lock import WriterLock
from seit.tokenizer import TokenizeConfig, load_tokenizer, tokenize
from seit.tokenizer.config import TokenizerError
from seit.tokenizer.render import decode_to_images, store_ids_to_tokenizer
from seit.utils.io import sha256_file
from tokenizer_testdata import PIXEL_LIMIT, save_tiny_tokenizer, write_image_folder, write_labelled_tree

SRC = str(Path(seit.__file__).parents[1])


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory):
    return save_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok.safetensors")


@pytest.fixture(scope="module")
def tok(tok_path):
    return load_tokenizer(tok_path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    labels, bad = write_labelled_tree(root)
    return root, labels, bad


def config(images, tok_path, out, **kw) -> TokenizeConfig:
    defaults = dict(num_workers=0, device="cpu", shard_mb=0.001, max_pixels=PIXEL_LIMIT)
    return TokenizeConfig(images=str(images), tokenizer=str(tok_path), out=str(out), **{**defaults, **kw})


def direct_ids(tok, root, keys, resize="squash"):
    """Reference: every image decoded and encoded on its own."""
    images = np.stack([load_image(root / k, 32, resize, PIXEL_LIMIT) for k in keys])
    return tok.encode(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).numpy()


def assert_same_store(a: TokenStore, b: TokenStore) -> None:
    assert a.keys == b.keys and len(a) == len(b)
    np.testing.assert_array_equal(a.get_batch(range(len(a)))[0], b.get_batch(range(len(b)))[0])
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.codebook, b.codebook)
    assert a.class_names == b.class_names and np.array_equal(a.code_ids, b.code_ids)


def test_bad_files_are_reported_and_every_good_image_is_stored(tmp_path, tok, tok_path, tree, capsys):
    root, labels, bad = tree
    out = tmp_path / "s"
    args = ["tokenize", str(root), "--tokenizer", str(tok_path), "--out", str(out), "--num-workers", "2"]
    assert main([*args, "--device", "cpu", "--max-pixels", str(PIXEL_LIMIT), "--batch-size", "3"]) == 0
    summary = capsys.readouterr().out
    assert f"{len(labels)} samples in {out}" in summary and f"4 of {len(labels) + 4} images skipped" in summary

    store = TokenStore.open(out)
    assert store.keys == sorted(labels) and store.class_names == ["a", "b"]
    assert store.labels.tolist() == [labels[k] for k in store.keys]
    np.testing.assert_array_equal(store.get_batch(range(len(store)))[0], direct_ids(tok, root, store.keys))
    report = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [r["key"] for r in report] == sorted(bad) and all(r["kind"] and r["reason"] for r in report)
    # self-describing: the codebook rows, which tokenizer codes they are, the tokenizer and the preprocessing
    np.testing.assert_array_equal(store.codebook, tok.classifier_codebook().numpy())
    np.testing.assert_allclose(np.linalg.norm(store.codebook, axis=1), np.sqrt(store.codebook.shape[1]), rtol=1e-5)
    np.testing.assert_array_equal(store.code_ids, np.arange(64))
    assert store.config["tokenizer"]["sha256"] == sha256_file(tok_path)
    assert store.config["tokenizer"]["config"]["codebook_size"] == 64
    assert store.config["tokenize"] | {"images": None} == {
        "images": None,
        "root": None,
        "resize": "squash",
        "image_size": 32,
        "interpolation": "bicubic",
        "input_range": [0.0, 1.0],
        "max_pixels": PIXEL_LIMIT,
        "precision": "fp32",
        "prune": False,
        "codes_from": None,
    }
    verify_store(out, show_progress=False)

    # a resumed rerun has nothing left to do; other settings are refused, naming the difference
    again = tokenize(config(root, tok_path, out, resume="auto"))
    assert (again.encoded, again.resumed, len(again.skipped)) == (0, len(labels), 4)
    with pytest.raises(TokenizerError, match=r"tokenize.resize: 'squash' there, 'crop' now"):
        tokenize(config(root, tok_path, out, resize="crop", resume="auto"))
    with pytest.raises(RunError, match="already holds a run; continue it with --resume auto"):
        tokenize(config(root, tok_path, out, resume=False))


def test_a_second_tokenize_into_the_same_output_stops_and_the_first_is_untouched(tmp_path, tok_path, tree):
    root, _, _ = tree
    out = tmp_path / "s"
    out.mkdir()
    first = WriterLock(out, 0)  # what a running `seit tokenize --out s` holds
    with pytest.raises(SeitError, match=rf"{out}: already being written by pid {os.getpid()}"):
        tokenize(config(root, tok_path, out, resume="auto"))
    assert os.listdir(out) == [".writer-00000.lock"]
    first.release()
    assert len(TokenStore.open(tokenize(config(root, tok_path, out, resume="auto")).store)) > 0


KILL_CHILD_ENV = {**os.environ, "PYTHONPATH": SRC, "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def test_sigkill_then_rerun_continues_without_duplicates_or_redoing_durable_work(tmp_path, tok_path):
    write_image_folder(tmp_path / "imgs" / "x", 120, 36)
    write_image_folder(tmp_path / "imgs" / "y", 120, 36, seed=1)
    (tmp_path / "imgs" / "y" / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "seit", "tokenize", str(tmp_path / "imgs"), "--tokenizer", str(tok_path)]
    cmd += ["--out", str(out), "--shard-mb", "0.0002", "--batch-size", "2", "--num-workers", "0", "--device", "cpu"]
    child = subprocess.Popen(cmd, env=KILL_CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while not (out / "shard-00000-000003.tok").exists():  # the child ends by itself if it never writes one
        assert child.poll() is None, child.stderr.read().decode()
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    record = json.loads((out / "part-00000.json").read_text())
    durable = sum(s["samples"] for s in record["shards"])
    assert 3 * 4 <= durable < 240  # shards 0-2 are listed; shard 3 may have been renamed just before its record

    resumed = tokenize(
        config(tmp_path / "imgs", tok_path, out, shard_mb=0.0002, max_pixels=DEFAULT_MAX_PIXELS, resume="auto")
    )
    assert (resumed.resumed, resumed.encoded) == (durable, 240 - durable)  # durable work is not redone
    assert [r.key for r in resumed.skipped] == ["y/broken.png"]
    tokenize(config(tmp_path / "imgs", tok_path, tmp_path / "straight", shard_mb=0.0002))  # uninterrupted
    assert_same_store(TokenStore.open(out), TokenStore.open(tmp_path / "straight"))
    assert len(set(TokenStore.open(out).keys)) == 240
    assert (out / "skipped.jsonl").read_text() == (tmp_path / "straight" / "skipped.jsonl").read_text()
    assert not [n for n in os.listdir(out) if n.startswith(".") or n.startswith("part-")]
    verify_store(out, show_progress=False)


@pytest.mark.slow
def test_two_torchrun_processes_write_the_store_one_process_writes(tmp_path, tok_path, tree):
    root, labels, bad = tree
    common = ["--tokenizer", str(tok_path), "--num-workers", "0", "--device", "cpu", "--shard-mb", "0.0005"]
    common += ["--max-pixels", str(PIXEL_LIMIT), "--batch-size", "2", "--synonyms", "3"]
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*run, "-m", "seit", "tokenize", str(root), "--out", str(tmp_path / "two"), *common],
        env=KILL_CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"{len(labels)} samples in")  # printed once, by rank 0
    assert main(["tokenize", str(root), "--out", str(tmp_path / "one"), *common]) == 0
    two, one = TokenStore.open(tmp_path / "two"), TokenStore.open(tmp_path / "one")
    assert_same_store(two, one)
    np.testing.assert_array_equal(two.synonyms, one.synonyms)
    assert two.manifest["created"]["parts"] == 2 and {s["part"] for s in two.manifest["shards"]} == {0, 1}
    assert (tmp_path / "two" / "skipped.jsonl").read_text() == (tmp_path / "one" / "skipped.jsonl").read_text()
    assert len((tmp_path / "two" / "skipped.jsonl").read_text().splitlines()) == len(bad)
    verify_store(tmp_path / "two", show_progress=False)


def test_prune_then_codes_from_and_decode_through_code_ids(tmp_path, tok, tok_path, tree, capsys):
    root, _, _ = tree
    full = tokenize(config(root, tok_path, tmp_path / "full"))
    pruned = tokenize(config(root, tok_path, tmp_path / "train", prune=True, synonyms=4))
    unpruned, train = TokenStore.open(tmp_path / "full"), TokenStore.open(tmp_path / "train")
    used = np.unique(unpruned.get_batch(range(len(unpruned)))[0])
    assert full.prune is None and (pruned.prune.codes_used, pruned.codebook_size) == (len(used), len(used))
    np.testing.assert_array_equal(train.code_ids, used)
    np.testing.assert_array_equal(
        train.code_ids[train.get_batch(range(len(train)))[0]], unpruned.get_batch(range(len(unpruned)))[0]
    )
    np.testing.assert_array_equal(train.codebook, tok.classifier_codebook().numpy()[used])
    assert train.synonyms.shape == (len(used), 4) and (train.synonyms[:, 0] == np.arange(len(used))).all()
    assert not (tmp_path / "train" / ".unpruned").exists() and (tmp_path / "train" / "skipped.jsonl").exists()

    # decode: PNGs of the pruned store equal the tokenizer's decoding of the unpruned ids
    picks = [0, 3, len(train) - 1]
    args = ["decode", str(tmp_path / "train"), "--tokenizer", str(tok_path), "--out", str(tmp_path / "png")]
    assert main([*args, "--indices", *map(str, picks), "--device", "cpu"]) == 0
    files = sorted((tmp_path / "png").iterdir())
    assert [f.name[:7] for f in files] == [f"{i:07d}" for i in picks] and files[0].name == "0000000-a_img000.png"
    expected = decode_to_images(tok, unpruned.get_batch(picks)[0])
    np.testing.assert_array_equal(np.stack([np.asarray(Image.open(f)) for f in files]), expected)

    # a validation split through the train store's codes: drop one used code from a copy of the train store
    dropped = int(np.bincount(unpruned.get_batch(range(len(unpruned)))[0].ravel()).argmax())
    keep = used[used != dropped]
    book = tok.classifier_codebook().numpy()
    with StoreWriter(
        tmp_path / "train-less",
        grid_shape=(8, 8),
        codebook_size=len(keep),
        codebook=book[keep],
        code_ids=keep,
        class_names=["a", "c"],
    ) as w:
        w.append(np.zeros((8, 8), dtype=np.int64), -1, "dummy")
    val = tokenize(config(root, tok_path, tmp_path / "val", codes_from=str(tmp_path / "train-less")))
    assert "class folders here (2, e.g. 'a') differ from" in capsys.readouterr().err
    full_ids = unpruned.get_batch(range(len(unpruned)))[0].astype(np.int64)
    unit = book / np.linalg.norm(book, axis=1, keepdims=True)
    nearest = {
        int(c): int(np.flatnonzero(keep == c)[0]) if c in keep else int(np.argmax(unit[keep] @ unit[c])) for c in used
    }
    expected_ids = np.vectorize(nearest.get)(full_ids)
    got = TokenStore.open(tmp_path / "val")
    np.testing.assert_array_equal(got.get_batch(range(len(got)))[0], expected_ids)
    np.testing.assert_array_equal(got.code_ids, keep)
    assert val.prune.mapped_codes == 1 and val.prune.mapped_tokens == int((full_ids == dropped).sum()) > 0
    assert "mapped to their nearest kept code" in val.summary()

    other = save_tiny_tokenizer(tmp_path / "other.safetensors", seed=1)
    with pytest.raises(TokenizerError, match="not this tokenizer's"):
        store_ids_to_tokenizer(train, load_tokenizer(other), np.zeros((1, 8, 8), dtype=np.int64))
    with pytest.raises(StoreError, match="different tokenizers"):
        tokenize(config(root, other, tmp_path / "val2", codes_from=str(tmp_path / "train")))
    assert not (tmp_path / "val2").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_keeps_durable_shards_exits_75_and_a_rerun_finishes_the_same_store(
    tmp_path, tok_path, monkeypatch, capsys, sig
):
    write_image_folder(tmp_path / "imgs" / "x", 24, 36)
    out = tmp_path / "s"
    args = ["tokenize", str(tmp_path / "imgs"), "--tokenizer", str(tok_path), "--output", str(out), "--shard-mb",
            "0.0002", "--batch-size", "2", "--num-workers", "0", "--device", "cpu"]  # fmt: skip
    real_append = StoreWriter.append_batch
    calls = []

    def append_then_signal(self, *a, **kw):
        real_append(self, *a, **kw)
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(StoreWriter, "append_batch", append_then_signal)
    assert main(args) == 75
    err = capsys.readouterr().err
    assert f"{out} saved: rerun the same command with --resume auto to continue" in err and "stopped after " in err
    assert len(calls) == 4 and not (out / "manifest.json").exists()  # stopped after that batch, not merged
    monkeypatch.setattr(StoreWriter, "append_batch", real_append)
    durable = sum(s["samples"] for s in json.loads((out / "part-00000.json").read_text())["shards"])
    monkeypatch.delenv("SEIT_NO_PROGRESS", raising=False)
    assert main([*args, "--resume", "auto"]) == 0
    err = capsys.readouterr().err
    assert f"seit tokenize: writing to {out}" in err  # named as it starts
    assert f"encode: {100 * durable // 24:3d}%" in err and f"| {durable}/24 [" in err  # the bar counts the whole job
    tokenize(config(tmp_path / "imgs", tok_path, tmp_path / "straight", shard_mb=0.0002))
    assert_same_store(TokenStore.open(out), TokenStore.open(tmp_path / "straight"))


def test_a_used_output_is_refused_without_resume_and_restart_moves_it_aside(tmp_path, tok_path, capsys):
    write_image_folder(tmp_path / "imgs" / "x", 6, 36)
    out = tmp_path / "s"
    args = ["tokenize", str(tmp_path / "imgs"), "--tokenizer", str(tok_path), "--output", str(out),
            "--num-workers", "0", "--device", "cpu"]  # fmt: skip
    out.mkdir()
    (out / "notes.txt").write_text("someone's files")
    for refused in ([], ["--no-resume"]):  # the former switch parses and means what no flag means now
        assert main([*args, *refused]) == 1
        assert f"{out} already holds a run; continue it with --resume auto, start over with --restart" in (
            capsys.readouterr().err
        )
        assert os.listdir(out) == ["notes.txt"]  # nothing written, nothing lost
    assert main([*args, "--resume", str(tmp_path / "elsewhere")]) == 2
    assert "this job continues in --output" in capsys.readouterr().err
    assert main([*args, "--restart"]) == 0
    assert (tmp_path / "s.old-1" / "notes.txt").read_text() == "someone's files"
    assert len(TokenStore.open(out)) == 6 and not (out / "notes.txt").exists()
    assert main([*args, "--resume", str(out)]) == 0  # PATH = OUTPUT: a finished store, nothing left to do
    assert "already complete, nothing left to encode" in capsys.readouterr().out


def test_the_python_api_keeps_resume_true_and_a_failed_check_leaves_no_output(tmp_path, tok_path):
    assert config(tmp_path, tok_path, tmp_path / "o", resume=True).resume == "auto"
    assert config(tmp_path, tok_path, tmp_path / "o", resume=False).resume is None
    write_image_folder(tmp_path / "imgs" / "x", 2, 36)
    with pytest.raises(SeitError, match="missing-tokenizer"):
        tokenize(config(tmp_path / "imgs", tmp_path / "missing-tokenizer", tmp_path / "never"))
    assert not (tmp_path / "never").exists()
