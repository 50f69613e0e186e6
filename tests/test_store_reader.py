"""TokenStore on two tiny stores written once: every accessor, every index edge, each way a decode can fail and
what the error names (the mutation pass's tests for store/reader.py; the whole file runs in seconds)."""

import copy
import pickle
import re
import shutil

import numpy as np
import pytest

from seit.store import StoreError, StoreWriter, TokenStore
from seit.store.files import StoreFiles
from seit.store.format import part_name
from store_util import K, ProgressRecorder, make_samples, write_v1_store

N = 40  # 36-byte raw samples in 300-byte shards: shards of 9, 9, 9, 9 and 4 samples


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(path of a store with side arrays and a config, ids, labels, keys)."""
    path = tmp_path_factory.mktemp("reader") / "s"
    ids, labels, keys = make_samples(N)
    labels[5] = -1
    rng = np.random.default_rng(1)
    with StoreWriter(
        path,
        grid_shape=(4, 4),
        codebook_size=K,
        class_names=[f"c{i}" for i in range(10)],
        codebook=rng.normal(size=(K, 3)),
        synonyms=rng.integers(0, K, size=(K, 2)),
        code_ids=np.arange(K) * 2,
        shard_bytes=300,
        codec="raw",
        config={"model": "tiny"},
    ) as w:
        w.append_batch(ids, labels, keys)
    return path, ids, labels, keys


@pytest.fixture
def store(written):
    with TokenStore.open(written[0]) as s:
        yield s


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A store of 4097 samples (one more than a default batch), without side arrays, config or class names,
    whose codec has a state (ctx: its tables and zstd dictionary)."""
    path = tmp_path_factory.mktemp("plain") / "s"
    ids, labels, keys = make_samples(4097, (2, 2))
    with StoreWriter(path, grid_shape=(2, 2), codebook_size=K, codec="ctx", fit_samples=50) as w:
        w.append_batch(ids, labels, keys)
    return path


def test_metadata_and_side_arrays(store, written):
    path, _, labels, keys = written
    assert (len(store), store.num_shards, store.grid_shape, store.codebook_size) == (N, 5, (4, 4), K)
    assert store.ids_dtype == np.int16 and store.format_version == 2 and store.class_names[9] == "c9"
    assert store.config == {"model": "tiny"}
    assert store.codebook.shape == (K, 3) and store.codebook.dtype == np.float32
    assert store.synonyms.shape == (K, 2)
    assert store.code_ids.dtype == np.int64 and store.code_ids.tolist() == list(range(0, 2 * K, 2))
    assert store.labels.dtype == np.int64 and store.labels.tolist() == labels.tolist()
    assert store.keys == keys and store.key(0) == keys[0] and store.key(N - 1) == keys[-1] and store.key(9) == keys[9]
    assert [store.shard_range(s) for s in range(5)] == [range(9 * s, min(9 * s + 9, N)) for s in range(5)]
    assert repr(store) == f"TokenStore({str(path)!r}, samples=40, grid=[4, 4], codebook_size=391, shards=5)"


def test_a_store_without_side_arrays_says_none(plain):
    store = TokenStore.open(plain)
    assert (store.codebook, store.synonyms, store.code_ids, store.class_names) == (None, None, None, None)
    assert store.config == {} and len(store) == 4097 and store.num_shards == 1
    assert [len(idx) for idx, _, _ in store.iter_batches()] == [4096, 1]
    np.testing.assert_array_equal(store.get_batch([4096, 7])[0], make_samples(4097, (2, 2))[0][[4096, 7]])


def test_batches_in_any_order_across_shards(store, written):
    _, ids, labels, _ = written
    order = [39, 0, 9, 8, 8, 20, 5, 31]
    got_ids, got_labels = store.get_batch(order)
    np.testing.assert_array_equal(got_ids, ids[order])
    assert got_ids.dtype == np.int16 and got_labels.dtype == np.int64
    assert got_labels.tolist() == labels[order].tolist()
    assert store.labels_of(np.array(order)).tolist() == labels[order].tolist()  # from the shards
    assert store.labels.size == N
    assert store.labels_of(order).tolist() == labels[order].tolist()  # from the cache
    blobs = store.read_blobs(order)
    assert len(blobs) == len(order) and bytes(blobs[3]) == bytes(blobs[4]) != bytes(blobs[2])
    np.testing.assert_array_equal(store.decode(order, blobs), ids[order])
    assert store.get_batch([])[0].shape == (0, 4, 4) and store.get_batch([])[1].shape == (0,)


def test_single_samples_and_negative_indices(store, written):
    _, ids, labels, _ = written
    for index in (0, 9, 39, -1, -40):
        got, label = store[index]
        np.testing.assert_array_equal(got, ids[index])
        assert label == labels[index] and isinstance(label, int)


@pytest.mark.parametrize("index", [-1, N, N + 100])
def test_indices_outside_the_store_raise_index_error_naming_them(store, index):
    for call in (store.get_batch, store.read_blobs, store.labels_of):
        with pytest.raises(IndexError, match=rf"^sample index {index} out of range for a store of 40 samples$"):
            call([0, index, 3])
    store.labels  # noqa: B018 (the cached path checks the range too)
    with pytest.raises(IndexError, match="out of range"):
        store.labels_of([index])
    with pytest.raises(IndexError, match="out of range"):
        store.key(index)


def test_negative_indices_below_the_store_raise(store):
    with pytest.raises(IndexError, match="sample index -1 out of range"):
        store[-41]


def test_iter_batches_covers_the_store_once_in_order(store, written):
    _, ids, labels, _ = written
    seen = list(store.iter_batches(16))
    assert [len(idx) for idx, _, _ in seen] == [16, 16, 8]
    np.testing.assert_array_equal(np.concatenate([idx for idx, _, _ in seen]), np.arange(N))
    np.testing.assert_array_equal(np.concatenate([b for _, b, _ in seen]), ids)
    np.testing.assert_array_equal(np.concatenate([lab for _, _, lab in seen]), labels)
    assert [len(idx) for idx, _, _ in store.iter_batches()] == [N]


def test_iter_batches_reports_progress_in_samples(store, monkeypatch):
    monkeypatch.setattr("seit.store.reader.progress", ProgressRecorder)
    ProgressRecorder.made = []
    list(store.iter_batches(16))
    list(store.iter_batches(32, show_progress=True, desc="verify"))
    quiet, shown = ProgressRecorder.made
    assert quiet.kwargs == {"total": N, "desc": "read", "unit": "sample", "disable": True} and quiet.updates == [
        16,
        16,
        8,
    ]
    assert shown.kwargs == {"total": N, "desc": "verify", "unit": "sample", "disable": None} and shown.updates == [
        32,
        8,
    ]


def test_any_integer_index_array_of_any_shape_reads(store, written):
    _, ids, labels, _ = written
    for indices in (np.array([3, 12], np.uint64), np.array([3, 12], np.int32), np.array([[3], [12]])):
        got_ids, got_labels = store.get_batch(indices)
        np.testing.assert_array_equal(got_ids, ids[[3, 12]])
        assert got_labels.tolist() == labels[[3, 12]].tolist() == store.labels_of(indices).tolist()
        assert [bytes(b) for b in store.read_blobs(indices)] == [bytes(b) for b in store.read_blobs([3, 12])]
    np.testing.assert_array_equal(store.get_batch(12)[0], ids[[12]])
    np.testing.assert_array_equal(store.decode([[3, 12]], store.read_blobs([3, 12])), ids[[3, 12]])
    assert store.labels_of(12).tolist() == [labels[12]] and len(store.read_blobs(12)) == 1


# ---- opening --------------------------------------------------------------------------------------------------
def test_opening_what_is_no_store_says_what_to_do(tmp_path):
    with pytest.raises(StoreError, match=r"missing: no such directory \(expected a token store\)"):
        TokenStore.open(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="file: no such directory"):
        TokenStore.open(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=r"empty: not a token store \(no manifest.json\); create one with `seit"):
        TokenStore.open(tmp_path / "empty")
    with pytest.raises(StoreError, match=r"with `seit tokenize` or `seit store import-seit`$"):
        TokenStore.open(tmp_path / "empty")
    for part in range(5):
        (tmp_path / "empty" / part_name(part)).write_text("{}")
    with pytest.raises(StoreError) as e:
        TokenStore.open(tmp_path / "empty")
    names = ", ".join(part_name(p) for p in range(4))
    assert str(e.value).endswith(
        f"unfinished token store (no manifest.json; writer records {names}): re-run the write with resume=True "
        "(--resume), or call merge_parts once every part finished"
    )
    assert part_name(4) not in str(e.value)


# ---- decoding failures name the sample ---------------------------------------------------------------------------
def failing_decode(store, monkeypatch, fail):
    """Make codec 0's decode_many call ``fail(blobs)`` first (it may raise or return other ids)."""
    codec = store.codec_for(0)
    real = codec.decode_many

    def decode_many(blobs):
        return fail(blobs, real)

    monkeypatch.setattr(codec, "decode_many", decode_many)


def test_a_batch_that_fails_only_together_is_called_a_codec_bug(store, monkeypatch):
    def fail(blobs, real):
        if len(blobs) > 1:
            raise ValueError("batch")
        return real(blobs)

    failing_decode(store, monkeypatch, fail)
    with pytest.raises(StoreError, match=r"s: a batch failed to decode but every sample decodes alone \(codec bug\?\)"):
        store.get_batch([0, 10])
    assert store[10][0].shape == (4, 4)


@pytest.mark.parametrize(
    "fail,problem",
    [
        (lambda b, real: (_ for _ in ()).throw(ValueError("boom")), r"cannot be decoded \(ValueError: boom\)"),
        (lambda b, real: real(b).reshape(len(b), 2, 8), r"decodes to shape \[2, 8\], the store holds \[4, 4\]"),
        (lambda b, real: real(b)[..., :2], r"decodes to shape \[4, 2\]"),
        (lambda b, real: np.full((len(b), 4, 4), K), rf"decodes to ids in \[{K}, {K}\], outside the codebook"),
        (lambda b, real: np.full((len(b), 4, 4), -1), r"decodes to ids in \[-1, -1\], outside the codebook"),
    ],
)
def test_a_sample_that_decodes_wrong_is_named_with_its_shard_index_and_key(store, monkeypatch, written, fail, problem):
    keys = written[3]
    failing_decode(store, monkeypatch, fail)
    with pytest.raises(StoreError) as e:
        store.get_batch([3, 12, 13])
    message = str(e.value)
    assert f"shard-00000-000000.tok: sample 3 (store index 3, key {keys[3]!r}) " in message
    assert message.endswith("the shard is corrupt: run `seit store verify`, then re-copy or re-create the store")
    assert len(re.findall(problem, message)) == 1


def test_the_first_bad_sample_of_a_batch_is_the_one_named(store, monkeypatch, written):
    keys = written[3]

    bad = bytes(store.read_blobs([13])[0])

    def fail(blobs, real):
        ids = real(blobs)
        if len(blobs) > 1 or bytes(blobs[0]) == bad:
            ids[:] = K
        return ids

    failing_decode(store, monkeypatch, fail)
    with pytest.raises(StoreError, match=rf"shard-00000-000001.tok: sample 4 \(store index 13, key '{keys[13]}'\)"):
        store.get_batch([3, 12, 13, 14])


def test_ids_at_the_edges_of_the_codebook_decode(store, monkeypatch):
    failing_decode(store, monkeypatch, lambda b, real: np.tile([[0, K - 1]], (len(b), 8)).reshape(len(b), 4, 4))
    assert store.get_batch([0, 1])[0].max() == K - 1


# ---- codecs and shards ---------------------------------------------------------------------------------------------
def with_codec(path, **changes):
    manifest = TokenStore.open(path).manifest
    manifest = copy.deepcopy(manifest)
    manifest["codecs"][0].update(changes)
    return TokenStore(StoreFiles(path), manifest)


def test_a_codec_that_cannot_load_is_a_store_error_naming_its_file(plain):
    store = with_codec(plain, name="zstd", params={"level": "high"})
    with pytest.raises(StoreError, match=r"codec-00000.bin: cannot load codec 'zstd': invalid literal"):
        store.get_batch([0])
    with pytest.raises(StoreError, match=r"^unknown codec 'nope'"):  # already a StoreError: passed on as it is
        with_codec(plain, name="nope").get_batch([0])
    assert with_codec(plain).codec_for(0) is not None


def test_check_shard_rereads_the_whole_shard(tmp_path, written):
    path = tmp_path / "s"
    shutil.copytree(written[0], path)
    store = TokenStore.open(path, verify=False)
    np.testing.assert_array_equal(store.get_batch([16])[0][0], written[1][16])
    for s in range(store.num_shards):
        store.check_shard(s)
    shard = path / "shard-00000-000002.tok"
    data = bytearray(shard.read_bytes())
    data[5] ^= 1  # an id byte of sample 0: its own CRC would catch it, but only once decoded
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"shard-00000-000002\.tok: sha256 mismatch"):
        store.check_shard(2)
    store.check_shard(1)
    np.testing.assert_array_equal(store.get_batch([9, 17])[0], written[1][[9, 17]])  # served by the rechecked shard


def test_verify_checks_the_shard_hash_before_the_first_sample(tmp_path, written):
    path = tmp_path / "s"
    shutil.copytree(written[0], path)
    shard = path / "shard-00000-000000.tok"
    data = bytearray(shard.read_bytes())
    data[5] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="sha256 mismatch"):
        TokenStore.open(path)[1]
    with pytest.raises(StoreError, match="sha256 mismatch"):
        pickle.loads(pickle.dumps(TokenStore.open(path)))[1]
    with pytest.raises(StoreError, match="sha256 mismatch"):  # verifying is the default
        TokenStore(StoreFiles(path), TokenStore.open(path).manifest)[1]
    unverified = TokenStore.open(path, verify=False)
    np.testing.assert_array_equal(unverified[1][0], written[1][1])  # only sample 0 is damaged
    with pytest.raises(StoreError, match=r"sample 0 \(store index 0.*checksum mismatch"):
        pickle.loads(pickle.dumps(unverified))[0]


def test_a_pickled_store_reopens_what_it_touches(store, written):
    store.get_batch([0, 30])
    copy_ = pickle.loads(pickle.dumps(store))
    assert copy_.manifest == store.manifest and copy_.verify and copy_._shards == {} and copy_._cache == {}
    np.testing.assert_array_equal(copy_.get_batch([30, 1])[0], written[1][[30, 1]])
    store.close()
    assert store._shards == {} and store._cache == {}


def test_the_context_manager_closes(written):
    with TokenStore.open(written[0]) as store:
        assert store.labels.size == N
        store.get_batch([0])
        assert store._shards and store._cache
    assert store._shards == {} and store._cache == {}


def test_manifest_errors_name_the_manifest(tmp_path, written):
    path = tmp_path / "s"
    shutil.copytree(written[0], path)
    manifest = path / "manifest.json"
    good = manifest.read_text()
    manifest.write_text("{")
    with pytest.raises(StoreError, match=rf"^{re.escape(str(manifest))}: not valid JSON"):
        TokenStore.open(path)
    manifest.write_text(good.replace('"num_samples": 40', '"num_samples": 41'))
    with pytest.raises(StoreError, match=rf"^{re.escape(str(manifest))}: shards hold 40 samples"):
        TokenStore.open(path)
    manifest.write_text(good.replace('"grid_shape"', '"grid_shape_"'))
    with pytest.raises(StoreError, match=rf"^{re.escape(str(manifest))}: missing or invalid 'grid_shape'"):
        TokenStore.open(path)


def test_storage_options_reach_the_store_files(written):
    assert TokenStore.open(written[0], storage_options={"anon": True}).files.storage_options == {"anon": True}


def test_labels_outside_the_class_list_are_refused(written):
    manifest = copy.deepcopy(TokenStore.open(written[0]).manifest)
    manifest["class_names"] = ["a", "b", "c"]  # the samples' labels go up to 9
    store = TokenStore(StoreFiles(written[0]), manifest)
    with pytest.raises(StoreError, match=r"shard-00000-000000\.tok: sample \d+ has label \d+, outside -1\.\.2"):
        store[0]


def test_format_1_stores_read_and_check_by_their_version(tmp_path):
    ids, _, keys = write_v1_store(tmp_path / "v1")
    store = TokenStore.open(tmp_path / "v1", verify=False)
    np.testing.assert_array_equal(store.get_batch([0, 29])[0], ids[[0, 29]])
    assert store.keys == keys and store.format_version == 1
    store.check_shard(0)
    np.testing.assert_array_equal(store[3][0], ids[3])
