import json
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zstandard

import seit
from seit.store import (
    StoreError,
    StoreWriter,
    TokenStore,
    merge_parts,
    remap_store,
    set_codebook,
    set_synonyms,
    verify_store,
)
from seit.store.format import MANIFEST, TRAILER
from store_util import CODEC_NAMES, K, make_samples, write_store


def shard_files(path):
    return [s["file"] for s in json.loads((Path(path) / MANIFEST).read_text())["shards"]]


def entry_payload(path, s: int) -> int:
    return json.loads((Path(path) / MANIFEST).read_text())["shards"][s]["payload_bytes"]


# ---- round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", CODEC_NAMES)
@pytest.mark.parametrize("grid,k", [((4, 4), K), ((7,), 40000), ((2, 3, 2), 2)])
def test_random_access_returns_what_was_written(tmp_path, codec, grid, k):
    ids, labels, keys = make_samples(120, grid, k=max(k, 2))
    if k == 2:
        ids = ids % 2
    with StoreWriter(
        tmp_path / "s", grid_shape=grid, codebook_size=k, shard_bytes=200, codec=codec, fit_samples=30
    ) as w:
        w.append_batch(ids[:70], labels[:70], keys[:70])
        for i in range(70, 120):
            w.append(ids[i], int(labels[i]), keys[i])
    store = TokenStore.open(tmp_path / "s")
    assert len(store) == 120 and store.num_shards > 2
    assert store.grid_shape == grid and store.codebook_size == k
    picks = np.array([5, 119, 0, 64, 5, 33])
    batch, batch_labels = store.get_batch(picks)
    assert batch.dtype == (np.int16 if k <= 32768 else np.int32)
    np.testing.assert_array_equal(batch, ids[picks])
    np.testing.assert_array_equal(batch_labels, labels[picks])
    one, label = store[-1]
    np.testing.assert_array_equal(one, ids[-1])
    assert label == labels[-1]
    np.testing.assert_array_equal(store.labels, labels)
    assert store.keys == keys and store.key(64) == keys[64]
    with pytest.raises(IndexError):
        store.get_batch([120])


def test_empty_store_and_unlabelled_samples(tmp_path):
    with StoreWriter(tmp_path / "empty", grid_shape=(2, 2), codebook_size=5):
        pass
    empty = TokenStore.open(tmp_path / "empty")
    assert len(empty) == 0 and empty.get_batch([])[0].shape == (0, 2, 2)
    with StoreWriter(tmp_path / "u", grid_shape=(2, 2), codebook_size=5) as w:
        w.append(np.zeros((2, 2), dtype=np.uint8), -1, "a")
    assert TokenStore.open(tmp_path / "u")[0][1] == -1


def test_index_costs_a_few_bytes_per_sample(tmp_path):
    ids, labels, keys = make_samples(5000, (4, 4))
    with StoreWriter(tmp_path / "s", grid_shape=(4, 4), codebook_size=K, shard_bytes=1 << 20) as w:
        w.append_batch(ids, labels, keys)
    shards = json.loads((tmp_path / "s" / MANIFEST).read_text())["shards"]
    index_bytes = sum(s["bytes"] - s["payload_bytes"] for s in shards)
    # 4 B offset + 2 B label + the compressed key, far below an 8-byte offset plus raw keys (~13 B)
    assert index_bytes / 5000 < 8


# ---- opening is O(1): only the manifest is read -----------------------------------------------------------
def test_open_reads_only_the_manifest(tmp_path):
    write_store(tmp_path / "s")
    names = shard_files(tmp_path / "s")
    for name in names[1:]:
        (tmp_path / "s" / name).unlink()
    store = TokenStore.open(tmp_path / "s")
    assert len(store) == 200 and store.class_names[3] == "class3"
    assert store.get_batch([0])[0].shape == (1, 4, 4)  # shard 0 is still there
    with pytest.raises(StoreError, match=names[-1]):
        store.get_batch([199])


# ---- integrity ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_byte_flip_fails_verify_naming_the_shard(tmp_path, codec):
    write_store(tmp_path / "s", codec=codec)
    name = shard_files(tmp_path / "s")[1]
    path = tmp_path / "s" / name
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"{name}: sha256 mismatch"):
        verify_store(tmp_path / "s", show_progress=False)
    store = TokenStore.open(tmp_path / "s")
    start = store.shard_range(1).start
    with pytest.raises(StoreError, match=name):
        store.get_batch([start])
    ok = store.shard_range(0)
    assert len(store.get_batch(list(ok))[0]) == len(ok)  # other shards still read


def test_truncated_shard_gives_a_clear_error_at_access_and_verify(tmp_path):
    ids, _, _ = write_store(tmp_path / "s")
    names = shard_files(tmp_path / "s")
    for name, cut in ((names[0], 7), (names[2], None)):
        path = tmp_path / "s" / name
        data = path.read_bytes()
        path.write_bytes(data[:cut] if cut else data[: len(data) - 5])
    store = TokenStore.open(tmp_path / "s", verify=False)
    for s in (0, 2):
        with pytest.raises(StoreError, match=f"{names[s]}: shard is .* bytes, the manifest says"):
            store.get_batch([store.shard_range(s).start])
    np.testing.assert_array_equal(store.get_batch([store.shard_range(1).start])[0][0], ids[store.shard_range(1).start])
    with pytest.raises(StoreError, match="2 problem") as e:
        verify_store(tmp_path / "s", show_progress=False)
    assert names[0] in str(e.value) and names[2] in str(e.value)


def test_ids_outside_the_codebook_name_the_sample(tmp_path):
    _, _, keys = write_store(tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / MANIFEST).read_text())
    name = manifest["shards"][1]["file"]
    n0 = manifest["shards"][0]["samples"]
    path = tmp_path / "s" / name
    data = bytearray(path.read_bytes())
    # the raw codec (write_store's default) stores a CRC-32, then ids as uint16 (K > 256): make sample 1's
    # first id 65535, with a matching CRC (a forged sample, not a damaged one)
    data[40:42] = b"\xff\xff"
    data[36:40] = zlib.crc32(data[40:72]).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=rf"{name}: sample 1 \(store index {n0 + 1}, key '{keys[n0 + 1]}'\).*outside"):
        TokenStore.open(tmp_path / "s", verify=False).get_batch([n0, n0 + 1])


def test_writer_rejects_bad_samples_without_losing_the_good_ones(tmp_path):
    ids, labels, keys = make_samples(10)
    w = StoreWriter(tmp_path / "s", grid_shape=(4, 4), codebook_size=K, class_names=list("abcdefghij"))
    w.append_batch(ids[:5], labels[:5], keys[:5])
    bad_cases = [
        ((np.zeros((1, 4, 5), int), [0], ["x"]), "sample shape"),
        ((np.full((1, 4, 4), K), [0], ["x"]), "outside the codebook"),
        ((np.full((1, 4, 4), -1), [0], ["x"]), "outside the codebook"),
        ((np.zeros((1, 4, 4)), [0], ["x"]), "must be integers"),
        ((np.zeros((1, 4, 4), int), [10], ["x"]), "labels in"),
        ((np.zeros((1, 4, 4), int), [0], ["a\nb"]), "newlines"),
        ((np.zeros((2, 4, 4), int), [0], ["x"]), r"expected \[B, \*grid_shape\]"),
        ((np.zeros((1, 4, 4), int), 0, ["x"]), "labels \\[\\]"),
    ]
    for args, message in bad_cases:
        with pytest.raises(StoreError, match=message):
            w.append_batch(*args)
    w.append_batch(ids[5:], labels[5:], keys[5:])
    w.close()
    np.testing.assert_array_equal(TokenStore.open(tmp_path / "s").get_batch(range(10))[0], ids)
    with pytest.raises(StoreError, match="already holds a finished token store"):
        StoreWriter(tmp_path / "s", grid_shape=(4, 4), codebook_size=K)
    with pytest.raises(StoreError, match="unknown codec"):
        StoreWriter(tmp_path / "t", grid_shape=(4, 4), codebook_size=K, codec="nope")


def test_reader_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(StoreError, match="no such directory"):
        TokenStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a token store"):
        TokenStore.open(tmp_path / "empty")
    w = StoreWriter(tmp_path / "unfinished", grid_shape=(4, 4), codebook_size=K)
    w.abort()
    with pytest.raises(StoreError, match=r"unfinished token store.*resume"):
        TokenStore.open(tmp_path / "unfinished")
    write_store(tmp_path / "s")
    manifest_path = tmp_path / "s" / MANIFEST
    good = manifest_path.read_text()
    edits = {
        "not valid JSON": lambda m: "{",
        "store format version 99": lambda m: json.dumps({**json.loads(m), "format_version": 99}),
        "shards hold 200 samples, the manifest says 201": lambda m: json.dumps({**json.loads(m), "num_samples": 201}),
        "invalid file name": lambda m: m.replace('"shard-00000-000000.tok"', '"../x.tok"'),
        "ids_dtype": lambda m: m.replace('"int16"', '"int32"'),
    }
    for message, edit in edits.items():
        manifest_path.write_text(edit(good))
        with pytest.raises(StoreError, match=message):
            TokenStore.open(tmp_path / "s")
    manifest_path.write_text(good)
    (tmp_path / "s" / shard_files(tmp_path / "s")[0]).unlink()
    with pytest.raises(StoreError, match=r"shard-00000-000000\.tok: missing file"):
        TokenStore.open(tmp_path / "s")[0]


# ---- crash safety and resume -----------------------------------------------------------------------------
CHILD = """
import sys, time
sys.path.insert(0, sys.argv[5])
from store_util import CODEC_OPTIONS, make_samples
from seit.store import StoreWriter
path, codec, stop_at, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ids, labels, keys = make_samples(n)
with StoreWriter(path, grid_shape=(4, 4), codebook_size=391, shard_bytes=300, codec=codec, fit_samples=20,
                 codec_options=CODEC_OPTIONS.get(codec), resume=True) as w:
    done = w.done_keys
    print(len(done), flush=True)
    for i in range(n):
        if keys[i] not in done:
            w.append(ids[i], int(labels[i]), keys[i])
        if i == stop_at:
            print("PAUSED", flush=True)
            time.sleep(600)
"""


def run_child(path, codec, stop_at, n=150):
    src = Path(seit.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", CHILD, str(path), codec, str(stop_at), str(n), str(Path(__file__).parent)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, env=env, text=True)


@pytest.mark.parametrize("codec", CODEC_NAMES)
@pytest.mark.parametrize("stop_at", [10, 97])  # while buffering the codec's fit samples / mid-shard
def test_sigkill_then_resume_writes_every_sample_exactly_once(tmp_path, codec, stop_at):
    path = tmp_path / "s"
    child = run_child(path, codec, stop_at)
    assert child.stdout.readline().strip() == "0"
    assert child.stdout.readline().strip() == "PAUSED"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    with pytest.raises(StoreError, match="unfinished"):
        TokenStore.open(path)
    record = json.loads((path / "part-00000.json").read_text())
    durable = sum(s["samples"] for s in record["shards"])
    assert durable == 0 if stop_at < 20 else 0 < durable <= stop_at
    if stop_at >= 20:  # killed with a shard half written
        assert any(name.startswith(".shard-") for name in os.listdir(path))
    resumed = run_child(path, codec, -1)
    out, _ = resumed.communicate(timeout=60)
    assert resumed.returncode == 0 and int(out.split()[0]) == durable
    ids, labels, keys = make_samples(150)
    store = TokenStore.open(path)
    assert store.keys == keys
    np.testing.assert_array_equal(store.get_batch(range(150))[0], ids)
    np.testing.assert_array_equal(store.labels, labels)
    assert not [n for n in os.listdir(path) if n.startswith(".") or n.startswith("part-")]
    verify_store(path, show_progress=False)


def test_resume_checks_settings_and_rejects_already_written_keys(tmp_path):
    ids, labels, keys = make_samples(60)
    small_groups = {"codec_options": {"group": 16}}  # the default codec writes whole groups of samples
    w = StoreWriter(tmp_path / "s", grid_shape=(4, 4), codebook_size=K, shard_bytes=200, fit_samples=10, **small_groups)
    w.append_batch(ids[:40], labels[:40], keys[:40])
    w.abort()
    with pytest.raises(StoreError, match="unfinished write of part 0"):
        StoreWriter(tmp_path / "s", grid_shape=(4, 4), codebook_size=K)
    with pytest.raises(StoreError, match="codebook_size=391, this writer 500"):
        StoreWriter(tmp_path / "s", grid_shape=(4, 4), codebook_size=500, resume=True)
    w = StoreWriter(
        tmp_path / "s", grid_shape=(4, 4), codebook_size=K, shard_bytes=200, fit_samples=10, resume=True, **small_groups
    )
    assert 0 < len(w.done_keys) < 40 and w.done_keys == set(keys[: len(w.done_keys)])
    with pytest.raises(StoreError, match="already in the store"):
        w.append(ids[0], 0, keys[0])
    todo = [i for i in range(60) if keys[i] not in w.done_keys]
    w.append_batch(ids[todo], labels[todo], [keys[i] for i in todo])
    w.close()
    assert TokenStore.open(tmp_path / "s").keys == keys
    finished = StoreWriter(tmp_path / "s", grid_shape=(4, 4), codebook_size=K, resume=True)
    assert finished.done_keys == set(keys)
    finished.close()


# ---- several writers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_parts_merged_equal_the_single_writer_store(tmp_path, codec):
    ids, labels, keys = make_samples(150)
    book = np.random.default_rng(1).normal(size=(K, 8))
    common = dict(grid_shape=(4, 4), codebook_size=K, class_names=list("abcdefghij"), codebook=book, codec=codec)
    with StoreWriter(tmp_path / "single", shard_bytes=400, fit_samples=30, **common) as w:
        w.append_batch(ids, labels, keys)
    bounds = [0, 70, 70, 150]  # part 1 of 3 gets nothing
    writers = [
        StoreWriter(tmp_path / "multi", part=r, shard_bytes=300, fit_samples=20, config={"rank": r}, **common)
        for r in range(3)
    ]
    for r in (2, 0, 1):  # parts finish in any order
        writers[r].append_batch(
            ids[bounds[r] : bounds[r + 1]], labels[bounds[r] : bounds[r + 1]], keys[bounds[r] : bounds[r + 1]]
        )
        writers[r].close()
        if r != 1:
            with pytest.raises(StoreError, match=r"unfinished: .*part 1 \(0 samples"):
                merge_parts(tmp_path / "multi", 3)
    manifest = merge_parts(tmp_path / "multi", 3)
    assert manifest["created"]["parts"] == 3 and len(manifest["codecs"]) == 2
    assert merge_parts(tmp_path / "multi", 3) == manifest  # idempotent
    single, multi = TokenStore.open(tmp_path / "single"), TokenStore.open(tmp_path / "multi")
    assert multi.keys == single.keys == keys and multi.class_names == single.class_names
    np.testing.assert_array_equal(multi.get_batch(range(150))[0], single.get_batch(range(150))[0])
    np.testing.assert_array_equal(multi.labels, single.labels)
    np.testing.assert_array_equal(multi.codebook, single.codebook)
    verify_store(tmp_path / "multi", show_progress=False)


def test_merge_refuses_parts_that_disagree(tmp_path):
    for r, k in enumerate((K, K + 1)):
        StoreWriter(tmp_path / "s", part=r, grid_shape=(4, 4), codebook_size=k).close()
    with pytest.raises(StoreError, match="part 1 has codebook_size=392"):
        merge_parts(tmp_path / "s", 2)
    with pytest.raises(StoreError, match=r"part-00002\.json: missing"):
        merge_parts(tmp_path / "s", 3)
    with pytest.raises(StoreError, match="beyond num_parts=1"):
        merge_parts(tmp_path / "s", 1)


# ---- codebook, synonyms, remapping ---------------------------------------------------------------------
def test_codebook_and_synonyms_are_stored_and_replaceable(tmp_path):
    rng = np.random.default_rng(0)
    book = rng.normal(size=(K, 32))
    syn = np.argsort(-book @ book.T, axis=1)[:, :5]
    write_store(tmp_path / "s", codebook=book, synonyms=syn)
    store = TokenStore.open(tmp_path / "s")
    np.testing.assert_array_equal(store.codebook, book.astype(np.float32))
    assert store.codebook.dtype == np.float32
    np.testing.assert_array_equal(store.synonyms, syn)
    old = store.manifest["codebook"]["file"]
    entry = set_codebook(tmp_path / "s", book * 2)
    assert not (tmp_path / "s" / old).exists() and (tmp_path / "s" / entry["file"]).exists()
    np.testing.assert_array_equal(TokenStore.open(tmp_path / "s").codebook, (book * 2).astype(np.float32))
    set_synonyms(tmp_path / "s", None)
    assert TokenStore.open(tmp_path / "s").synonyms is None
    with pytest.raises(StoreError, match=r"expected a float array \[391, D\]"):
        set_codebook(tmp_path / "s", book[:10])
    with pytest.raises(StoreError, match="outside the codebook"):
        set_synonyms(tmp_path / "s", syn + 1)
    with pytest.raises(StoreError, match="NaN"):
        set_codebook(tmp_path / "s", np.full((K, 2), np.nan))
    verify_store(tmp_path / "s", show_progress=False)
    book_path = tmp_path / "s" / entry["file"]
    book_path.write_bytes(book_path.read_bytes()[:-1] + b"?")
    with pytest.raises(StoreError, match="sha256 mismatch"):
        _ = TokenStore.open(tmp_path / "s").codebook


@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_remap_prunes_the_codebook(tmp_path, codec):
    rng = np.random.default_rng(0)
    used = np.sort(rng.choice(K, size=60, replace=False))
    ids, labels, keys = make_samples(80)
    ids = used[ids % 60]
    book = rng.normal(size=(K, 4))
    with StoreWriter(
        tmp_path / "src", grid_shape=(4, 4), codebook_size=K, codebook=book, codec=codec, shard_bytes=300
    ) as w:
        w.append_batch(ids, labels, keys)
    mapping = np.full(K, -1)
    mapping[used] = np.arange(60)
    dst = remap_store(tmp_path / "src", tmp_path / "dst", mapping, codebook=book[used])
    assert dst.codebook_size == 60 and dst.keys == keys
    np.testing.assert_array_equal(dst.get_batch(range(80))[0], mapping[ids])
    np.testing.assert_array_equal(dst.codebook[dst.get_batch([3])[0][0]], book[ids[3]].astype(np.float32))
    np.testing.assert_array_equal(dst.labels, labels)
    assert dst.config["remap"]["source_codebook_size"] == K
    verify_store(tmp_path / "dst", show_progress=False)
    mapping[used[7]] = -1
    with pytest.raises(StoreError, match=rf"uses ids \[{used[7]}\] that the mapping drops"):
        remap_store(tmp_path / "src", tmp_path / "dst2", mapping, codebook=book[used])
    assert not (tmp_path / "dst2").exists()
    with pytest.raises(StoreError, match=r"integer array \[391\]"):
        remap_store(tmp_path / "src", tmp_path / "dst3", mapping[:5])


# ---- any fsspec URL ------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["raw", "ctx-ans"])
def test_store_reads_from_an_fsspec_url(tmp_path, codec):
    ids, labels, _ = write_store(tmp_path / "s", codec=codec, codebook=np.eye(K, 4))
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path / "s"), "/remote-store", recursive=True)
    try:
        store = TokenStore.open("memory://remote-store")
        picks = [199, 3, 100, 101, 3]
        np.testing.assert_array_equal(store.get_batch(picks)[0], ids[picks])
        np.testing.assert_array_equal(store.labels, labels)
        np.testing.assert_array_equal(store.codebook, np.eye(K, 4))
        assert verify_store("memory://remote-store", show_progress=False)["samples"] == 200
        name = shard_files(tmp_path / "s")[0]
        data = bytearray(fs.cat_file(f"/remote-store/{name}"))
        data[3] ^= 0x10
        fs.pipe_file(f"/remote-store/{name}", bytes(data))
        with pytest.raises(StoreError, match=f"{name}: sha256 mismatch"):
            TokenStore.open("memory://remote-store").get_batch([0])
    finally:
        fs.rm("/remote-store", recursive=True)


def test_shard_layout_is_the_documented_one(tmp_path):
    _, labels, keys = write_store(tmp_path / "s")
    data = (tmp_path / "s" / shard_files(tmp_path / "s")[0]).read_bytes()
    magic, n, payload, label_bytes, key_bytes, size, _, key_text, crc = TRAILER.unpack(data[-48:])
    manifest = json.loads((tmp_path / "s" / MANIFEST).read_text())["shards"][0]
    assert (magic, n, payload, size) == (b"SEITSHD2", manifest["samples"], manifest["payload_bytes"], 2)
    assert crc == zlib.crc32(data[payload:-4])  # the index and the trailer before the CRC
    start = payload + (-payload % 8)
    offsets = np.frombuffer(data, "<u4", n + 1, start)
    assert offsets[0] == 0 and offsets[-1] == payload and np.all(np.diff(offsets) == 36)  # raw: CRC + 16 ids x 2
    sample = data[offsets[1] : offsets[2]]
    assert int.from_bytes(sample[:4], "little") == zlib.crc32(sample[4:])
    pos = start + 4 * (n + 1)
    stored_labels = np.frombuffer(zstandard.decompress(data[pos : pos + label_bytes]), "<i2")
    np.testing.assert_array_equal(stored_labels, labels[:n])
    pos += label_bytes
    key_list = zstandard.decompress(data[pos : pos + key_bytes])
    assert len(key_list) == key_text and key_list.decode().split("\n") == keys[:n]
    assert pos + key_bytes + TRAILER.size == len(data) == manifest["bytes"]


def test_grouped_shards_hold_each_group_header_where_its_samples_are(tmp_path):
    ids, _, _ = write_store(tmp_path / "s", codec="ctx-ans")  # groups of 16 samples, shards of ~600 bytes
    manifest = json.loads((tmp_path / "s" / MANIFEST).read_text())
    headers_of_group: dict[int, bytes] = {}
    start = 0
    for entry in manifest["shards"]:
        data = (tmp_path / "s" / entry["file"]).read_bytes()
        *_, label_bytes, key_bytes, _, group_bytes, _, _ = TRAILER.unpack(data[-TRAILER.size :])
        n, payload = entry["samples"], entry["payload_bytes"]
        pos = payload + (-payload % 8) + 4 * (n + 1) + label_bytes + key_bytes
        assert pos + group_bytes + TRAILER.size == len(data)
        g = int(np.frombuffer(data, "<u4", 1, pos)[0])
        first = np.frombuffer(data, "<u4", g, pos + 4)
        ends = np.frombuffer(data, "<u4", g, pos + 4 + 4 * g)
        body = data[pos + 4 + 8 * g : pos + group_bytes]
        # a group starts at every 16th sample of the store, and at the start of every shard
        expected = [j - start for j in range(start, start + n) if j == start or j % 16 == 0]
        assert first.tolist() == expected and ends[-1] == len(body)
        for f, a, b in zip(first.tolist(), [0, *ends[:-1].tolist()], ends.tolist()):
            group = (start + f) // 16
            assert headers_of_group.setdefault(group, body[a:b]) == body[a:b]  # split groups: same header
        start += n
    assert start == 200 and len(headers_of_group) == 13
    split = [
        e for e, a in zip(manifest["shards"], np.cumsum([0] + [e["samples"] for e in manifest["shards"]])) if a % 16
    ]
    assert split  # some shards begin inside a group, so those groups' headers are in two shards
    np.testing.assert_array_equal(TokenStore.open(tmp_path / "s").get_batch(range(200))[0], ids)


def test_a_damaged_group_table_names_the_shard(tmp_path):
    write_store(tmp_path / "s", codec="ctx-ans")
    name = shard_files(tmp_path / "s")[0]
    path = tmp_path / "s" / name
    data = bytearray(path.read_bytes())
    *_, group_bytes, _, _ = TRAILER.unpack(bytes(data[-TRAILER.size :]))
    data[-TRAILER.size - group_bytes] ^= 0x40  # the group count, with the index CRC to match (a forged table)
    data[-4:] = zlib.crc32(data[entry_payload(tmp_path / "s", 0) : -4]).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"{name}: corrupt group table"):
        TokenStore.open(tmp_path / "s", verify=False).get_batch([0])


# ---- code ids, config checks on resume, resumable remap --------------------------------------------------
def test_code_ids_are_stored_merged_and_checked(tmp_path):
    ids, labels, keys = make_samples(60)
    code_ids = np.arange(K) * 3 + 7  # tokenizer id of each row, e.g. after pruning a 1180-code book
    common = dict(grid_shape=(4, 4), codebook_size=K, code_ids=code_ids, shard_bytes=300)
    writers = [StoreWriter(tmp_path / "m", part=r, **common) for r in range(2)]
    for r, w in enumerate(writers):
        part = slice(30 * r, 30 * (r + 1))
        w.append_batch(ids[part], labels[part], keys[part])
        w.close()
    merge_parts(tmp_path / "m", 2)
    store = TokenStore.open(tmp_path / "m")
    assert store.code_ids.dtype == np.int64
    np.testing.assert_array_equal(store.code_ids, code_ids)
    assert store.manifest["code_ids"]["shape"] == [K] and store.manifest["code_ids"]["dtype"] == "int32"
    verify_store(tmp_path / "m", show_progress=False)
    write_store(tmp_path / "plain")
    assert TokenStore.open(tmp_path / "plain").code_ids is None

    with pytest.raises(StoreError, match="appears twice"):
        StoreWriter(tmp_path / "bad", grid_shape=(4,), codebook_size=3, code_ids=[1, 1, 2])
    with pytest.raises(StoreError, match=r"integer array \[3\]"):
        StoreWriter(tmp_path / "bad", grid_shape=(4,), codebook_size=3, code_ids=[1, 2])
    w = StoreWriter(tmp_path / "two", part=0, **common)
    w.close()
    w = StoreWriter(tmp_path / "two", part=1, **{**common, "code_ids": code_ids + 1})
    w.close()
    with pytest.raises(StoreError, match="different code_ids"):
        merge_parts(tmp_path / "two", 2)


def test_resume_refuses_a_different_config(tmp_path):
    ids, labels, keys = make_samples(40)
    settings = dict(grid_shape=(4, 4), codebook_size=K, shard_bytes=200)
    w = StoreWriter(tmp_path / "s", config={"tokenizer": {"sha256": "aa"}, "resize": "squash"}, **settings)
    w.append_batch(ids[:30], labels[:30], keys[:30])
    w.abort()
    other = {"tokenizer": {"sha256": "bb"}, "resize": "squash"}
    with pytest.raises(StoreError, match=r"another config \(tokenizer.sha256: 'aa' there, 'bb' now\)"):
        StoreWriter(tmp_path / "s", config=other, resume=True, **settings)
    w = StoreWriter(tmp_path / "s", config={"tokenizer": {"sha256": "aa"}, "resize": "squash"}, resume=True, **settings)
    todo = [i for i in range(40) if keys[i] not in w.done_keys]
    w.append_batch(ids[todo], labels[todo], [keys[i] for i in todo])
    w.close()
    with pytest.raises(StoreError, match="another config"):
        StoreWriter(tmp_path / "s", config=other, resume=True, **settings)


def test_an_interrupted_remap_resumes_without_rewriting_durable_shards(tmp_path, monkeypatch):
    ids, labels, keys = write_store(tmp_path / "src", n=120)
    mapping = K - 1 - np.arange(K)
    real_commit = StoreWriter._commit
    calls = []

    def commit_then_stop(self):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the job were stopped while writing its third shard
        real_commit(self)

    monkeypatch.setattr(StoreWriter, "_commit", commit_then_stop)
    with pytest.raises(KeyboardInterrupt):
        remap_store(tmp_path / "src", tmp_path / "dst", mapping, shard_bytes=300, resume=True)
    monkeypatch.undo()
    record = json.loads((tmp_path / "dst" / "part-00000.json").read_text())
    durable = [s["file"] for s in record["shards"]]
    assert len(durable) == 2
    before = {name: os.stat(tmp_path / "dst" / name).st_ino for name in durable}
    dst = remap_store(tmp_path / "src", tmp_path / "dst", mapping, shard_bytes=300, resume=True)
    assert {name: os.stat(tmp_path / "dst" / name).st_ino for name in durable} == before  # kept, not rewritten
    assert dst.keys == keys
    np.testing.assert_array_equal(dst.get_batch(range(120))[0], mapping[ids])
    np.testing.assert_array_equal(dst.labels, labels)


def test_writer_record_names_are_parsed_in_one_place():
    from seit.store.format import part_name, part_of, part_records

    assert part_of(part_name(3)) == 3 and part_of("part-3.json") is None and part_of("part-00003.json.tmp") is None
    # a stray file that only looks like a record (it used to crash int(name[5:10])) is not one
    names = ["part-notes.json", part_name(1), "manifest.json", part_name(0)]
    assert part_records(names) == [part_name(0), part_name(1)]
