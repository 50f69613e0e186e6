"""StoreWriter and merge_parts on tiny raw stores (8-byte samples: a CRC and four 1-byte ids): every setting's
limits, what each record holds after each step, resume and merge checks and their messages (the mutation
pass's tests for store/writer.py; the whole file runs in seconds)."""

import json
import os
import re

import numpy as np
import pytest

import seit
from seit.store import StoreError, StoreWriter, TokenStore, merge_parts
from seit.store.files import StoreFiles
from seit.store.format import MANIFEST, encode_index, json_sha256, part_name, validate_record
from seit.store.shard import ShardReader
from seit.store.writer import MAX_SHARD_BYTES
from store_util import ProgressRecorder

GRID, K = (2, 2), 10


def samples(n, start=0):
    ids = (np.arange(start, start + n)[:, None, None] + np.arange(4).reshape(1, 2, 2)) % K
    return ids, np.arange(start, start + n) % 3, [f"k{i}" for i in range(start, start + n)]


def writer(path, **kwargs):
    return StoreWriter(path, **{"grid_shape": GRID, "codebook_size": K, "codec": "raw", **kwargs})


def record(path, part=0):
    return json.loads((path / part_name(part)).read_text())


# ---- settings --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"grid_shape": ()}, r"^grid_shape \[\]: needs at least one dimension, all >= 1$"),
        ({"grid_shape": (2, 0)}, r"^grid_shape \[2, 0\]: needs at least one dimension"),
        ({"codebook_size": 0}, r"^codebook_size 0 outside 1\.\.65536$"),
        ({"codebook_size": 65537}, r"^codebook_size 65537 outside 1\.\.65536$"),
        ({"shard_bytes": 0}, r"^shard_bytes 0 outside 1\.\.2147483648$"),
        ({"shard_bytes": MAX_SHARD_BYTES + 1}, r"^shard_bytes 2147483649 outside"),
        ({"fit_samples": 0}, r"^fit_samples must be >= 1, got 0$"),
        ({"codec": "ctx", "codec_options": {"gruop": 4}}, r"^codec 'ctx' has no option\(s\) \['gruop'\]"),
        ({"codec": "nope"}, r"^unknown codec 'nope'"),
        ({"part": -1}, r"^part must be >= 0, got -1$"),
        ({"config": {"f": object()}}, r"^config must be JSON-serialisable \(it goes into the manifest\): "),
        ({"codebook": np.zeros((K + 1, 2))}, r"^codebook: expected a float array \[10, D\]"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(StoreError, match=message):
        writer(tmp_path / "s", **kwargs)
    assert not (tmp_path / "s" / part_name(0)).exists()


def test_urls_are_refused_for_writing():
    message = r"^memory://x: writers need a local or mounted directory; write there, then copy the finished store "
    with pytest.raises(StoreError, match=message + r"to object storage \(reading from any fsspec URL works\)$"):
        writer("memory://x")


def test_settings_at_their_limits_are_accepted(tmp_path):
    for i, kwargs in enumerate(
        [
            {"codebook_size": 1, "shard_bytes": 1, "fit_samples": 1, "part": 0},
            {"codebook_size": 65536, "shard_bytes": MAX_SHARD_BYTES, "grid_shape": (1,)},
        ]
    ):
        w = writer(tmp_path / str(i), **kwargs)
        w.abort()
        assert record(tmp_path / str(i), 0)["codebook_size"] == kwargs["codebook_size"]


# ---- what a writer writes, step by step --------------------------------------------------------------------------
def test_the_record_lists_exactly_the_durable_shards_at_each_step(tmp_path, monkeypatch):
    path = tmp_path / "s"
    monkeypatch.setattr("seit.store.writer.platform.node", lambda: "host-a")
    w = writer(path, shard_bytes=16, fit_samples=3, class_names=[0, 1, 2], config={"model": "m"})
    first = record(path)
    validate_record(first, "r")
    assert first == {
        "format": "seit-token-store-part",
        "format_version": 2,
        "part": 0,
        "complete": False,
        "grid_shape": [2, 2],
        "codebook_size": K,
        "ids_dtype": "int16",
        "class_names": ["0", "1", "2"],
        "codec_name": "raw",
        "codec": None,
        "arrays": {"codebook": None, "synonyms": None, "code_ids": None},
        "config": {"model": "m"},
        "writer": {"shard_bytes": 16, "fit_samples": 3},
        "created": {"time": first["created"]["time"], "host": "host-a", "seit_version": seit.__version__},
        "shards": [],
        "checksum": json_sha256(first),
    }
    ids, labels, keys = samples(7)
    w.append_batch(ids[:2], labels[:2], keys[:2])  # buffered until 3 samples fit the codec
    assert record(path)["codec"] is None and not [n for n in os.listdir(path) if "shard" in n]
    w.append(ids[2], labels[2], keys[2])
    after_fit = record(path)
    assert after_fit["codec"] == {
        "name": "raw",
        "params": {"crc32": True},
        "file": "codec-00000.bin",
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "bytes": 0,
    }
    assert [s["file"] for s in after_fit["shards"]] == ["shard-00000-000000.tok"]  # 2 x 8 bytes fill a shard
    assert after_fit["shards"][0]["samples"] == 2 and after_fit["shards"][0]["part"] == 0
    assert after_fit["shards"][0]["codec"] == 0 and after_fit["created"] == first["created"]
    w.append_batch(ids[3:], labels[3:], keys[3:])
    assert [s["samples"] for s in record(path)["shards"]] == [2, 2, 2]
    w.close()
    assert not (path / part_name(0)).exists()
    store = TokenStore.open(path)
    assert store.keys == keys and store.labels.tolist() == labels.tolist()
    np.testing.assert_array_equal(store.get_batch(range(7))[0], ids)
    assert [s["file"] for s in store.manifest["shards"]][-1] == "shard-00000-000003.tok"
    assert store.config == {"model": "m"} and store.class_names == ["0", "1", "2"]
    created = store.manifest["created"]
    assert created["time"] == first["created"]["time"] and created["hosts"] == ["host-a"] and created["parts"] == 1
    assert created["writer"] == {"shard_bytes": 16, "fit_samples": 3, "codec": "raw"}
    w.close()  # a second close does nothing


def test_a_part_closes_its_record_and_leaves_the_manifest_to_merge(tmp_path):
    path = tmp_path / "s"
    w = writer(path, part=2, fit_samples=50)
    ids, labels, keys = samples(3)
    w.append_batch(ids, labels, keys)  # fewer samples than fit_samples: fitted at close
    w.close()
    rec = record(path, 2)
    assert rec["complete"] and rec["part"] == 2 and rec["codec"]["file"] == "codec-00002.bin"
    assert [s["file"] for s in rec["shards"]] == ["shard-00002-000000.tok"] and not (path / MANIFEST).exists()
    with pytest.raises(StoreError, match=r"writer is closed"):
        w.append(ids[0], 0, "x")


def test_an_empty_writer_makes_an_empty_store(tmp_path):
    writer(tmp_path / "s").close()
    store = TokenStore.open(tmp_path / "s")
    assert len(store) == 0 and store.manifest["codecs"] == [] and store.manifest["shards"] == []


def test_a_grouped_codec_writes_whole_groups_then_the_rest_at_close(tmp_path):
    path = tmp_path / "s"
    w = writer(path, codec="ctx-ans", codec_options={"group": 4}, fit_samples=2, shard_bytes=1)
    ids, labels, keys = samples(10)
    w.append_batch(ids[:3], labels[:3], keys[:3])
    assert record(path)["shards"] == []  # 3 samples: no whole group yet
    w.append_batch(ids[3:9], labels[3:9], keys[3:9])
    assert sum(s["samples"] for s in record(path)["shards"]) == 8
    w.close()
    np.testing.assert_array_equal(TokenStore.open(path).get_batch(range(9))[0], ids[:9])


def test_progress_counts_appended_samples(tmp_path, monkeypatch):
    monkeypatch.setattr("seit.store.writer.progress", ProgressRecorder)
    ProgressRecorder.made = []
    w = writer(tmp_path / "out", total=5)
    ids, labels, keys = samples(5)
    w.append_batch(ids[:3], labels[:3], keys[:3])
    w.append(ids[3], labels[3], keys[3])
    w.close()
    shown = writer(tmp_path / "b", show_progress=True)
    shown.abort()
    quiet, bar = ProgressRecorder.made
    assert quiet.kwargs == {"total": 5, "desc": "write out", "unit": "sample", "disable": True}
    assert quiet.updates == [3, 1] and quiet.closed and bar.closed
    assert bar.kwargs == {"total": None, "desc": "write b", "unit": "sample", "disable": None}


# ---- appended samples are checked ----------------------------------------------------------------------------------
def test_bad_batches_are_refused_and_nothing_is_lost(tmp_path):
    w = writer(tmp_path / "s", class_names=list("abc"))
    ids, labels, keys = samples(3)
    w.append_batch(ids[:1], labels[:1], keys[:1])
    cases = [
        ((ids.astype(float), labels, keys), r"^ids must be integers, got dtype float64$"),
        ((ids[:, :1], labels, keys), r"^ids batch has sample shape \[1, 2\], the store holds \[2, 2\]$"),
        ((ids, labels[:, None], keys), r"^got ids \[3, 2, 2\], labels \[3, 1\] and 3 keys; expected \[B, \*grid"),
        ((ids, labels[:2], keys), r"labels \[2\] and 3 keys"),
        ((ids, labels, keys[:2]), r"labels \[3\] and 2 keys"),
        ((ids[:2], labels, keys), r"^got ids \[2, 2, 2\]"),
        ((ids + K - 1, labels, keys), r"^ids in \[9, 14\], outside the codebook of size 10$"),
        ((ids - 1, labels, keys), r"^ids in \[-1, 4\], outside the codebook"),
        ((np.full((3, 2, 2), K), labels, keys), r"^ids in \[10, 10\], outside the codebook"),
        ((ids, labels, ["a", "b" * 100 + "\n", "d"]), rf"^key '{'b' * 80}': keys must be strings"),
        ((ids, labels.astype(float), keys), r"^labels must be integers, got dtype float64$"),
        ((ids, [0, -2, 1], keys), r"^labels in \[-2, 1\], expected -1 \(unlabelled\) \.\. 2$"),
        ((ids, [0, 3, 1], keys), r"^labels in \[0, 3\], expected -1"),
        (
            (ids, labels, ["a", "b\nc", "d"]),
            r"^key 'b\\nc': keys must be strings without newlines, of at most 4096 bytes",
        ),
        ((ids, labels, ["a", 5, "d"]), r"keys must be strings"),
        ((ids, labels, ["a", "é" * 2049, "d"]), r"keys must be strings"),  # 4098 bytes in UTF-8
    ]
    for args, message in cases:
        with pytest.raises(StoreError, match=message):
            w.append_batch(*args)
    w.append_batch(ids[1:], [-1, 2], ["x" * 4096, "é" * 2048])
    w.close()
    store = TokenStore.open(tmp_path / "s")
    assert store.keys == ["k0", "x" * 4096, "é" * 2048] and store.labels.tolist() == [0, -1, 2]


def test_labels_span_int32_without_class_names(tmp_path):
    w = writer(tmp_path / "s")
    ids, _, keys = samples(2)
    w.append_batch(ids, [-1, (1 << 31) - 1], keys)
    with pytest.raises(StoreError, match=r"expected -1 \(unlabelled\) \.\. 2147483647$"):
        w.append_batch(ids, [0, 1 << 31], ["a", "b"])
    w.close()
    assert TokenStore.open(tmp_path / "s").labels.tolist() == [-1, (1 << 31) - 1]


def test_ids_of_any_integer_dtype_are_stored_as_the_store_dtype(tmp_path):
    w = writer(tmp_path / "s", codebook_size=40000)
    w.append_batch(np.array([[[39999, 0], [1, 2]]], dtype=np.uint16), [0], ["a"])
    w.close()
    ids = TokenStore.open(tmp_path / "s")[0][0]
    assert ids.dtype == np.int32 and ids.tolist() == [[39999, 0], [1, 2]]


# ---- stopping, resuming ------------------------------------------------------------------------------------------
def test_abort_drops_the_unfinished_shard_and_keeps_the_durable_ones(tmp_path):
    path = tmp_path / "s"
    w = writer(path, shard_bytes=16, fit_samples=1)
    ids, labels, keys = samples(5)
    w.append_batch(ids, labels, keys)
    w.abort()
    w.abort()
    assert [s["samples"] for s in record(path)["shards"]] == [2, 2]
    assert sorted(n for n in os.listdir(path) if "shard" in n) == ["shard-00000-000000.tok", "shard-00000-000001.tok"]
    with writer(path, shard_bytes=16, fit_samples=1, resume=True) as again:  # the lock was released
        assert again.done_keys == set(keys[:4])
        again.append(ids[4], labels[4], keys[4])
    assert TokenStore.open(path).keys == keys


def test_an_exception_inside_the_with_block_aborts(tmp_path):
    ids, labels, keys = samples(3)
    with pytest.raises(RuntimeError), writer(tmp_path / "s", fit_samples=1) as w:
        w.append_batch(ids, labels, keys)
        raise RuntimeError
    assert not (tmp_path / "s" / MANIFEST).exists() and not record(tmp_path / "s")["complete"]


def test_a_fresh_write_removes_only_its_own_part_s_leftovers(tmp_path):
    path = tmp_path / "s"
    path.mkdir()
    mine = ["shard-00000-000003.tok", ".shard-00000-000000.tok.x1.tmp", ".part-00000.json.x.tmp", ".codec-00000.bin.a"]
    others = ["shard-00001-000000.tok", ".shard-00001-000000.tok.x.tmp", "notes.txt", "part-00001.json"]
    for name in mine + others:
        (path / name).write_text("x")
    writer(path).abort()
    assert sorted(os.listdir(path)) == sorted([*others, part_name(0)])


def test_resume_skips_the_durable_keys_and_removes_strays(tmp_path):
    path = tmp_path / "s"
    w = writer(path, shard_bytes=16, fit_samples=1, config={"a": 1})
    ids, labels, keys = samples(6)
    w.append_batch(ids[:5], labels[:5], keys[:5])
    w.abort()
    (path / "shard-00000-000009.tok").write_text("stray")
    created = record(path)["created"]["time"]
    with pytest.raises(StoreError, match=r"holds an unfinished write of part 0 \(part-00000\.json\); pass resume=True"):
        writer(path, shard_bytes=16, fit_samples=1)
    w = writer(path, shard_bytes=16, fit_samples=1, config={"a": 1}, resume=True)
    assert w.done_keys == set(keys[:4]) and not (path / "shard-00000-000009.tok").exists()
    with pytest.raises(StoreError, match=r"^key 'k0' is already in the store; a resumed job must skip"):
        w.append(ids[0], labels[0], keys[0])
    w.append_batch(ids[4:], labels[4:], keys[4:])
    w.close()
    store = TokenStore.open(path)
    assert store.keys == keys and store.manifest["created"]["time"] == created
    np.testing.assert_array_equal(store.get_batch(range(6))[0], ids)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"grid_shape": (4,)}, r"has grid_shape=\[2, 2\], this writer \[4\]; resume with the original settings"),
        ({"codebook_size": 11}, r"has codebook_size=10, this writer 11"),
        ({"class_names": ["a"]}, r"has class_names=None, this writer \['a'\]"),
        (
            {"config": {"a": 2}},
            r"was made with another config \(a: 1 there, 2 now\); resume with the original",
        ),
        ({"config": {}}, r"was made with another config \(a: 1 there, absent now\)"),
        ({"codec": "zstd"}, r"uses codec 'raw', this writer 'zstd'; resume with the original codec$"),
        ({"codebook": np.ones((K, 2))}, r"has a different codebook; pass the original$"),
    ],
)
def test_resume_refuses_other_settings(tmp_path, changes, message):
    path = tmp_path / "s"
    ids, labels, keys = samples(3)
    w = writer(path, fit_samples=1, config={"a": 1})
    w.append_batch(ids, labels, keys)
    w.abort()
    with pytest.raises(StoreError, match=rf"part-00000\.json: the write being resumed {message}"):
        writer(path, fit_samples=1, resume=True, **{"config": {"a": 1}, **changes})


def test_resume_refuses_another_codebook_than_the_one_saved(tmp_path):
    path = tmp_path / "s"
    w = writer(path, codebook=np.zeros((K, 2)))
    w.abort()
    with pytest.raises(StoreError, match="different codebook"):
        writer(path, codebook=np.ones((K, 2)), resume=True)
    writer(path, codebook=np.zeros((K, 2)), resume=True).close()
    writer(tmp_path / "t").abort()
    with pytest.raises(StoreError, match="different synonyms"):
        writer(tmp_path / "t", synonyms=np.zeros((K, 1), int), resume=True)


def test_resume_refuses_a_damaged_codec_state(tmp_path):
    path = tmp_path / "s"
    ids, labels, keys = samples(3)
    w = writer(path, codec="zstd", fit_samples=1)
    w.append_batch(ids, labels, keys)
    w.abort()
    with open(path / "codec-00000.bin", "ab") as f:
        f.write(b"x")
    with pytest.raises(StoreError, match=r"codec-00000\.bin"):
        writer(path, codec="zstd", fit_samples=1, resume=True)


def test_resume_names_a_codec_that_cannot_load(tmp_path, monkeypatch):
    path = tmp_path / "s"
    ids, labels, keys = samples(3)
    w = writer(path, fit_samples=1)
    w.append_batch(ids, labels, keys)
    w.abort()

    def broken(*args):
        raise ValueError("bad table")

    monkeypatch.setattr("seit.store.codec.RawCodec.load", broken)
    with pytest.raises(StoreError, match=r"codec-00000\.bin: cannot load codec 'raw': bad table$"):
        writer(path, fit_samples=1, resume=True)


def test_resume_of_a_finished_store_has_nothing_to_append(tmp_path):
    path = tmp_path / "s"
    ids, labels, keys = samples(3)
    with writer(path, config={"a": 1}) as w:
        w.append_batch(ids, labels, keys)
    with pytest.raises(StoreError, match=r"already holds a finished token store; write to a new directory"):
        writer(path)
    with pytest.raises(StoreError, match=r"manifest\.json: the write being resumed has codebook_size=10"):
        writer(path, codebook_size=11, resume=True)
    with pytest.raises(StoreError, match=r"manifest\.json: the write being resumed was made with another config"):
        writer(path, resume=True)
    w = writer(path, config={"a": 1}, resume=True)
    assert w.done_keys == set(keys)
    with pytest.raises(StoreError, match=r"the store is already complete; nothing is left to append$"):
        w.append(ids[0], 0, "new")
    w.close()
    assert TokenStore.open(path).keys == keys


# ---- merging parts -------------------------------------------------------------------------------------------------
def write_parts(path, sizes, hosts=None, monkeypatch=None, **kwargs):
    start = 0
    for r, n in enumerate(sizes):
        if hosts:
            monkeypatch.setattr("seit.store.writer.platform.node", lambda r=r: hosts[r])
        w = writer(path, part=r, fit_samples=1, shard_bytes=16, config={"rank": r}, **kwargs)
        ids, labels, keys = samples(n, start)
        w.append_batch(ids, labels, keys)
        w.close()
        start += n
    return start


def test_merged_parts_read_in_part_order_with_one_codec_per_nonempty_part(tmp_path, monkeypatch):
    path = tmp_path / "s"
    n = write_parts(path, [3, 0, 2], hosts=["b", "a", "b"], monkeypatch=monkeypatch)
    (path / ".stray.tmp").write_text("x")
    manifest = merge_parts(path, 3)
    assert [c["file"] for c in manifest["codecs"]] == ["codec-00000.bin", "codec-00002.bin"]
    assert [(s["part"], s["codec"], s["samples"]) for s in manifest["shards"]] == [(0, 0, 2), (0, 0, 1), (2, 1, 2)]
    assert manifest["num_samples"] == n == 5 and manifest["created"]["hosts"] == ["a", "b"]
    assert manifest["created"]["parts"] == 3 and manifest["created"]["config"] == {"rank": 0}
    files = [MANIFEST, "codec-00000.bin", "codec-00002.bin", *[s["file"] for s in manifest["shards"]]]
    assert sorted(os.listdir(path)) == sorted(files)  # part 1 fitted no codec; records and strays are gone
    store = TokenStore.open(path)
    assert store.keys == [f"k{i}" for i in range(5)] and store.manifest == manifest
    assert merge_parts(path, 3) == manifest  # merged already: the manifest is returned


def test_merge_takes_the_earliest_start_time(tmp_path, monkeypatch):
    times = iter(["2026-01-02T00:00:00+00:00", "2026-01-01T00:00:00+00:00"])
    monkeypatch.setattr("seit.store.writer._now", lambda: next(times, "2026-01-03T00:00:00+00:00"))
    write_parts(tmp_path / "s", [1, 1])
    created = merge_parts(tmp_path / "s", 2)["created"]
    assert created["time"] == "2026-01-01T00:00:00+00:00" and created["merged"] == "2026-01-03T00:00:00+00:00"


def test_merge_refuses_unfinished_missing_extra_and_disagreeing_parts(tmp_path):
    path = tmp_path / "s"
    write_parts(path, [2])
    w = writer(path, part=1, fit_samples=1, shard_bytes=16)
    ids, labels, keys = samples(5, 2)
    w.append_batch(ids, labels, keys)
    w.abort()
    with pytest.raises(StoreError, match=r"cannot merge, unfinished: part 1 \(4 samples durable\); re-run those"):
        merge_parts(path, 2)
    with pytest.raises(StoreError, match=r"found writer records \['part-00001.json'\] beyond num_parts=1; pass"):
        merge_parts(path, 1)
    with pytest.raises(StoreError, match=r"part-00002\.json: missing: part 2 was never started"):
        merge_parts(path, 3)
    for i, (key, value) in enumerate(
        [("grid_shape", (4,)), ("codebook_size", 11), ("class_names", ["a"]), ("codec", "zstd")]
    ):
        other = tmp_path / str(i)
        write_parts(other, [1])
        writer(other, part=1, **{key: value}).close()
        shown = "codec_name" if key == "codec" else key
        with pytest.raises(StoreError, match=rf"part 1 has {shown}=.*, part 0 .*; parts must agree$"):
            merge_parts(other, 2)


def test_merge_refuses_different_side_arrays_and_changed_shards(tmp_path):
    path = tmp_path / "s"
    write_parts(path, [1], codebook=np.zeros((K, 2)))
    writer(path, part=1, codebook=np.ones((K, 2))).close()
    with pytest.raises(StoreError, match=r"parts were given different codebook arrays; every part must pass"):
        merge_parts(path, 2)
    same = tmp_path / "same"
    write_parts(same, [1, 1], codebook=np.zeros((K, 2)))
    writer(same, part=2).close()  # a part without the array takes the others'
    assert merge_parts(same, 3)["codebook"]["shape"] == [K, 2]
    grown = tmp_path / "grown"
    write_parts(grown, [1])
    with open(grown / "shard-00000-000000.tok", "ab") as f:
        f.write(b"x")
    with pytest.raises(StoreError, match=r"shard-00000-000000\.tok: size differs from its writer record; re-run"):
        merge_parts(grown, 1)


def test_a_writer_record_holding_another_part_is_refused(tmp_path):
    path = tmp_path / "s"
    writer(path, part=1).close()
    os.rename(path / part_name(1), path / part_name(0))
    with pytest.raises(StoreError, match=r"part-00000\.json: holds part 1 \(corrupt writer record\)$"):
        merge_parts(path, 1)


def test_a_config_message_lists_three_differences_clipped_to_500_characters(tmp_path):
    path = tmp_path / "s"
    writer(path, config={"a": 1, "b": 1, "c": 1, "d": 1}).abort()
    with pytest.raises(StoreError) as e:
        writer(path, config={"a": 2, "b": 2, "c": 2, "d": 2}, resume=True)
    assert "another config (a: 1 there, 2 now; b: 1 there, 2 now; c: 1 there, 2 now); resume" in str(e.value)
    writer(tmp_path / "t", config={"a": "x" * 600}).abort()
    with pytest.raises(StoreError) as e:
        writer(tmp_path / "t", config={"a": "y" * 600}, resume=True)
    listed = str(e.value).split("another config (", 1)[1].split("); resume with", 1)[0]
    assert len(listed) == 500 and listed.startswith("a: 'xxx")


def test_a_resumed_write_reloads_its_fitted_codec(tmp_path):
    path = tmp_path / "s"
    ids, labels, keys = samples(30)
    w = writer(path, codec="ctx", fit_samples=10, shard_bytes=20)
    w.append_batch(ids[:20], labels[:20], keys[:20])
    w.abort()
    with writer(path, codec="ctx", fit_samples=10, shard_bytes=20, resume=True) as w:
        todo = [i for i in range(30) if keys[i] not in w.done_keys]
        w.append_batch(ids[todo], labels[todo], [keys[i] for i in todo])
    store = TokenStore.open(path)
    assert store.keys == keys and len(store.manifest["codecs"]) == 1
    np.testing.assert_array_equal(store.get_batch(range(30))[0], ids)


def test_resume_checks_the_durable_labels_against_the_classes(tmp_path):
    path = tmp_path / "s"
    ids, labels, keys = samples(4)
    w = writer(path, class_names=list("abc"), fit_samples=1, shard_bytes=16)
    w.append_batch(ids, labels, keys)
    w.abort()
    entry = record(path)["shards"][0]
    shard = ShardReader(StoreFiles(path), entry, verify=False)
    data = (path / entry["file"]).read_bytes()
    forged = data[: entry["payload_bytes"]] + encode_index(shard.offsets, np.array([0, 7]), shard.sample_keys())
    assert len(forged) == len(data)  # a label forged with its index CRC: only the class check can tell
    (path / entry["file"]).write_bytes(forged)
    with pytest.raises(StoreError, match=r"shard-00000-000000\.tok: sample 1 has label 7, outside -1\.\.2"):
        writer(path, class_names=list("abc"), fit_samples=1, shard_bytes=16, resume=True)


def test_an_aborted_writer_stays_closed(tmp_path):
    path = tmp_path / "s"
    ids, labels, keys = samples(3)
    w = writer(path, fit_samples=1)
    w.append_batch(ids, labels, keys)
    w.abort()
    w.close()  # does not finish the store
    assert not (path / MANIFEST).exists()
    with pytest.raises(StoreError, match=r"writer is closed$"):
        w.append(ids[0], 0, "new")


def test_merge_messages_name_every_unfinished_part_and_the_manifest(tmp_path):
    with pytest.raises(StoreError, match=r"part-00000\.json: missing: part 0 was never started"):
        merge_parts(tmp_path, 1)  # neither records nor manifest
    path = tmp_path / "s"
    for r in range(2):
        writer(path, part=r).abort()
    with pytest.raises(StoreError, match=r"unfinished: part 0 \(0 samples durable\), part 1 \(0 samples durable\); "):
        merge_parts(path, 2)
    with pytest.raises(StoreError, match=r"re-run those writers with resume=True, then merge$"):
        merge_parts(path, 2)
    done = tmp_path / "done"
    writer(done).close()
    (done / MANIFEST).write_text("{")
    with pytest.raises(StoreError, match=rf"^{re.escape(str(done / MANIFEST))}: not valid JSON"):
        merge_parts(done, 1)
    (done / MANIFEST).write_text("{}")
    with pytest.raises(StoreError, match=rf"^{re.escape(str(done / MANIFEST))}: missing or invalid 'format'"):
        merge_parts(done, 1)


def test_defaults_nested_directories_utc_times_and_named_side_array_files(tmp_path):
    path = tmp_path / "a" / "b" / "s"
    w = StoreWriter(path, grid_shape=GRID, codebook_size=K, codebook=np.zeros((K, 2)))
    rec = record(path)
    assert rec["writer"] == {"shard_bytes": 128 << 20, "fit_samples": 4096} and rec["codec_name"] == "ctx-ans"
    assert rec["created"]["time"].endswith("+00:00")
    assert (
        rec["arrays"]["codebook"]["file"].startswith("codebook-")
        and (path / rec["arrays"]["codebook"]["file"]).exists()
    )
    w.abort()


def test_a_damaged_writer_record_is_named(tmp_path):
    path = tmp_path / "s"
    writer(path).abort()
    (path / part_name(0)).write_text("{")
    with pytest.raises(StoreError, match=r"part-00000\.json: not valid JSON"):
        writer(path, resume=True)
    (path / part_name(0)).write_text("{}")
    with pytest.raises(StoreError, match=r"part-00000\.json: not a seit writer record$"):
        writer(path, resume=True)


def test_merged_manifests_carry_every_side_array_and_the_seit_version(tmp_path):
    path = tmp_path / "s"
    synonyms, code_ids = np.zeros((K, 2), int), np.arange(K) + 5
    write_parts(path, [1, 1], synonyms=synonyms, code_ids=code_ids)
    manifest = merge_parts(path, 2)
    assert manifest["created"]["seit_version"] == seit.__version__
    store = TokenStore.open(path)
    np.testing.assert_array_equal(store.synonyms, synonyms)
    np.testing.assert_array_equal(store.code_ids, code_ids)
