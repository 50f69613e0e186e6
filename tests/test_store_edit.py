"""Changes to finished stores on tiny stores: replacing and removing side arrays (which files stay, the lock,
the seal) and remapping ids (every bound of the mapping with its exact message, what the new store keeps and
records, cleanup and resume) - the mutation pass's tests for store/edit.py; the whole file runs in seconds."""

import hashlib
import json
import re
import shutil

import numpy as np
import pytest

from seit.store import StoreError, StoreWriter, TokenStore, remap_store, set_codebook, set_synonyms
from seit.store.arrays import array_entry
from seit.store.format import MANIFEST
from seit.store.lock import WriterLock
from store_util import K, ProgressRecorder, make_samples, write_store

N = 12


def refused(message: str):
    return pytest.raises(StoreError, match=f"^{re.escape(message)}$")


def manifest(path):
    return json.loads((path / MANIFEST).read_text())


# ---- set_codebook / set_synonyms -----------------------------------------------------------------------
def test_a_codebook_is_added_replaced_kept_and_removed(tmp_path):
    path = tmp_path / "s"
    write_store(path, N, grid=(2, 2), shard_bytes=40)
    book = np.arange(K * 2).reshape(K, 2)
    entry = set_codebook(path, book)
    assert entry == array_entry("codebook", book.astype(np.float32))[0] and entry["file"].startswith("codebook-")
    assert manifest(path)["codebook"] == entry and (path / entry["file"]).exists()
    with TokenStore.open(path) as store:  # the manifest is sealed again: a verified open passes
        assert store.codebook.dtype == np.float32 and store.codebook.tolist() == book.tolist()
    assert set_codebook(path, book) == entry and (path / entry["file"]).exists()  # the same file: kept
    new = set_codebook(f"file://{path}", book + 1)
    assert not (path / entry["file"]).exists() and (path / new["file"]).exists()
    assert TokenStore.open(path).codebook.tolist() == (book + 1).tolist()
    assert set_codebook(path, None) is None
    assert manifest(path)["codebook"] is None and not (path / new["file"]).exists()
    assert set_codebook(path, None) is None and manifest(path)["codebook"] is None  # nothing to remove
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith(("shard-", "codec-"))) == [MANIFEST]


def test_synonyms_are_checked_against_the_store_and_leave_the_codebook_alone(tmp_path):
    path = tmp_path / "s"
    write_store(path, N, grid=(2, 2), codebook=np.ones((K, 2)))
    book = manifest(path)["codebook"]
    syn = np.arange(K).reshape(K, 1)[::-1]
    entry = set_synonyms(path, syn)
    assert manifest(path)["synonyms"] == entry and manifest(path)["codebook"] == book
    assert entry["dtype"] == "int16" and TokenStore.open(path).synonyms.tolist() == syn.tolist()
    with refused(f"synonyms: ids in [1, {K}], outside the codebook of size {K}"):
        set_synonyms(path, syn + 1)
    with refused(f"codebook: expected a float array [{K}, D], got float64 [10, 2]"):
        set_codebook(path, np.ones((10, 2)))
    assert manifest(path)["synonyms"] == entry and manifest(path)["codebook"] == book  # refusals change nothing
    assert set_synonyms(path, None) is None
    assert manifest(path)["synonyms"] is None and not (path / entry["file"]).exists()
    assert (path / book["file"]).exists()


def test_an_array_whose_old_file_is_already_gone_is_still_replaced(tmp_path):
    path = tmp_path / "s"
    write_store(path, N, grid=(2, 2), synonyms=np.zeros((K, 1), dtype=int))
    (path / manifest(path)["synonyms"]["file"]).unlink()
    entry = set_synonyms(path, np.ones((K, 1), dtype=int))
    assert manifest(path)["synonyms"] == entry and TokenStore.open(path).synonyms.tolist() == [[1]] * K


def test_an_edit_holds_the_writer_lock_and_releases_it_after_a_refusal(tmp_path):
    path = tmp_path / "s"
    write_store(path, N, grid=(2, 2), shard_bytes=40)
    lock = WriterLock(path, 0)
    with pytest.raises(StoreError, match=f"^{re.escape(str(path))}: already being written by pid"):
        set_codebook(path, np.ones((K, 1)))
    lock.release()
    with pytest.raises(StoreError, match="NaN"):
        set_codebook(path, np.full((K, 1), np.nan))
    assert set_codebook(path, np.ones((K, 1)))["shape"] == [K, 1]  # the refused edit let its lock go
    assert not list(path.glob(".writer-*"))


def test_a_store_given_by_url_is_not_edited(tmp_path):
    with refused("s3://bucket/s: stores are edited in a local or mounted directory, then copied"):
        set_codebook("s3://bucket/s", np.ones((K, 1)))
    with refused("memory://s: stores are edited in a local or mounted directory, then copied"):
        set_synonyms("memory://s", None)


# ---- remap_store ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A store whose samples use ids < 100 (sample i < 12: id i, then ids >= 50), with a config; (path, ids,
    labels, keys)."""
    path = tmp_path_factory.mktemp("edit") / "src"
    ids, labels, keys = make_samples(N, (2, 2))
    ids = ids % 50 + 50
    ids[:, 0, 0] = np.arange(N)  # sample i uses id i, and no other sample does
    with StoreWriter(
        path,
        grid_shape=(2, 2),
        codebook_size=K,
        class_names=[f"c{i}" for i in range(10)],
        shard_bytes=40,
        codec="zstd",
        fit_samples=8,
        config={"a": 1, "b": 2},
    ) as w:
        w.append_batch(ids, labels, keys)
    return path, ids, labels, keys


def reverse(n=100):
    """new id 99 - i for old ids i < 100; the others dropped."""
    mapping = np.full(K, -1)
    mapping[:n] = n - 1 - np.arange(n)
    return mapping


def test_a_remap_writes_the_mapped_ids_and_keeps_the_rest(source, tmp_path):
    src, ids, labels, keys = source
    mapping = reverse()
    book, syn, code_ids = np.ones((100, 3)), np.zeros((100, 1), dtype=int), np.arange(100) * 3
    dst = remap_store(
        src, tmp_path / "d", mapping, codebook=book, synonyms=syn, code_ids=code_ids, config={"b": 3, "c": 4}
    )
    assert (dst.codebook_size, dst.grid_shape, len(dst)) == (100, (2, 2), N)
    np.testing.assert_array_equal(dst.get_batch(range(N))[0], mapping[ids])
    assert dst.labels.tolist() == labels.tolist() and dst.keys == keys
    assert dst.class_names == [f"c{i}" for i in range(10)]
    assert dst.codebook.tolist() == book.tolist() and dst.synonyms.tolist() == syn.tolist()
    assert dst.code_ids.tolist() == code_ids.tolist()
    sha = hashlib.sha256(mapping.astype("<i8").tobytes()).hexdigest()
    assert dst.config == {
        "a": 1,
        "b": 3,
        "c": 4,
        "remap": {"source": str(src), "source_codebook_size": K, "mapping_sha256": sha},
    }
    assert dst.manifest["created"]["writer"] == {"shard_bytes": 128 << 20, "fit_samples": 4096, "codec": "zstd"}
    assert dst.num_shards == 1


def test_the_new_codebook_size_is_the_largest_new_id_plus_one_without_a_codebook(source, tmp_path):
    src, ids, _, _ = source
    mapping = reverse(50) + 7  # old 0..49 -> 56..7, the others -> 6
    dst = remap_store(src, tmp_path / "d", mapping, codec="raw", shard_bytes=50, fit_samples=3)
    assert dst.codebook_size == 57 and dst.codebook is None and dst.synonyms is None and dst.code_ids is None
    np.testing.assert_array_equal(dst.get_batch(range(N))[0], mapping[ids])
    assert dst.config == {"a": 1, "b": 2, "remap": dst.config["remap"]}
    assert dst.manifest["created"]["writer"] == {"shard_bytes": 50, "fit_samples": 3, "codec": "raw"}
    assert dst.num_shards == 2  # 12 samples of 8 bytes in shards of 50 bytes


def test_a_remap_onto_a_single_code(source, tmp_path):
    dst = remap_store(source[0], tmp_path / "d", np.zeros(K, dtype=int))
    assert dst.codebook_size == 1 and not dst.get_batch(range(N))[0].any()


def test_the_source_is_verified_on_the_way(source, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(source[0], src)
    shard = sorted(src.glob("shard-*"))[1]
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"^{re.escape(str(shard))}: sha256 mismatch, the shard is corrupt"):
        remap_store(src, tmp_path / "d", reverse())
    assert not (tmp_path / "d").exists()


def test_the_first_error_is_raised_when_the_output_is_already_gone(source, tmp_path, monkeypatch):
    def vanish(self, ids, labels, keys):
        shutil.rmtree(self.path)  # e.g. deleted by hand while the remap ran
        raise StoreError("the append failed")

    monkeypatch.setattr(StoreWriter, "append_batch", vanish)
    with refused("the append failed"):
        remap_store(source[0], tmp_path / "d", reverse())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.astype(float), f"got float64 [{K}]"),
        (lambda m: m[:-1], f"got int64 [{K - 1}]"),
        (lambda m: np.append(m, 0), f"got int64 [{K + 1}]"),
        (lambda m: m.reshape(1, K), f"got int64 [1, {K}]"),
    ],
)
def test_a_mapping_of_the_wrong_shape_or_kind_is_refused(source, tmp_path, change, message):
    with refused(f"mapping must be an integer array [{K}] (one new id per old id), {message}"):
        remap_store(source[0], tmp_path / "d", change(reverse()))
    assert not (tmp_path / "d").exists()


def test_mapping_values_are_bounded_at_both_ends(source, tmp_path):
    src = source[0]
    mapping = reverse()
    mapping[150] = -2
    with refused("mapping values in [-2, 99], expected -1 or 0..99"):
        remap_store(src, tmp_path / "d", mapping)
    with refused("mapping values in [-1, 99], expected -1 or 0..98"):
        remap_store(src, tmp_path / "d", reverse(), codebook=np.ones((99, 2)))
    with refused("mapping values in [-1, -1], expected -1 or 0..-1"):
        remap_store(src, tmp_path / "d", np.full(K, -1))
    with refused("mapping values in [-1, 0], expected -1 or 0..-1"):
        remap_store(src, tmp_path / "d", np.minimum(reverse(), 0), codebook=np.ones((0, 2)))
    assert not (tmp_path / "d").exists()
    assert remap_store(src, tmp_path / "d", reverse(), codebook=np.ones((100, 2))).codebook_size == 100


def test_a_mapping_that_drops_a_used_id_is_refused_and_the_output_removed(source, tmp_path):
    src, _, _, keys = source
    mapping = reverse()
    mapping[[3, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]] = -1  # of these, sample 3 alone uses an id: 3
    with refused(
        f"{src}: sample 3 (key {keys[3]!r}) uses ids [3] that the mapping drops (-1); "
        "the mapping must keep every id the store uses"
    ):
        remap_store(src, tmp_path / "d", mapping)
    assert not (tmp_path / "d").exists()
    (tmp_path / "kept").mkdir()  # an output directory that was there before is not removed
    with pytest.raises(StoreError, match="sample 3 "):
        remap_store(src, tmp_path / "kept", mapping)
    assert (tmp_path / "kept").is_dir()


def test_the_ids_named_are_the_first_eight_dropped_ones_the_sample_uses(tmp_path):
    path = tmp_path / "s"
    ids = np.arange(20).reshape(2, 10) + 5
    with StoreWriter(path, grid_shape=(10,), codebook_size=K, codec="raw") as w:
        w.append_batch(ids, np.zeros(2, dtype=int), ["x", "y"])
    mapping = np.arange(K)
    mapping[[15, 17, 18, 19, 20, 21, 22, 23, 24, 26]] = -1
    mapping[[7, 8]] = 1  # many old ids may share a new one
    mapping[16] = 0  # kept: new id 0 is not a dropped id
    with refused(
        f"{path}: sample 1 (key 'y') uses ids [15, 17, 18, 19, 20, 21, 22, 23] that the mapping drops (-1); "
        "the mapping must keep every id the store uses"
    ):
        remap_store(path, tmp_path / "d", mapping)


def test_an_empty_store_is_remapped_with_the_raw_codec(tmp_path):
    StoreWriter(tmp_path / "empty", grid_shape=(2, 2), codebook_size=K, codec="zstd").close()
    dst = remap_store(tmp_path / "empty", tmp_path / "d", np.arange(K))
    assert len(dst) == 0 and dst.codebook_size == K
    assert dst.manifest["created"]["writer"]["codec"] == "raw"


def test_remap_progress_counts_the_source(source, tmp_path, monkeypatch):
    monkeypatch.setattr("seit.store.writer.progress", ProgressRecorder)
    ProgressRecorder.made = []
    remap_store(source[0], tmp_path / "d", reverse(), show_progress=True)
    remap_store(source[0], tmp_path / "q", reverse())
    shown, quiet = ProgressRecorder.made
    assert shown.kwargs == {"total": N, "desc": "write d", "unit": "sample", "disable": None}
    assert quiet.kwargs["disable"] is True and sum(shown.updates) == N


def test_an_interrupted_remap_resumes_where_it_stopped(tmp_path, monkeypatch):
    """4100 two-id samples (8 bytes with their CRC), 4096 a shard: the first read batch (4096) is durable when
    the remap is stopped, so the resumed remap skips that whole batch and appends the last 4 samples."""
    path = tmp_path / "src"
    ids, labels, keys = write_store(path, 4100, grid=(2,), shard_bytes=4096 * 8)
    mapping = reverse(K)
    real_commit = StoreWriter._commit
    calls = []

    def commit_then_stop(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_commit(self)

    monkeypatch.setattr(StoreWriter, "_commit", commit_then_stop)
    with pytest.raises(KeyboardInterrupt):
        remap_store(path, tmp_path / "d", mapping, shard_bytes=4096 * 8, resume=True)
    monkeypatch.undo()
    assert (tmp_path / "d").is_dir()  # resumable: kept
    appended = []
    real_append = StoreWriter.append_batch

    def record(self, ids, labels, keys):
        appended.append(list(keys))
        real_append(self, ids, labels, keys)

    monkeypatch.setattr(StoreWriter, "append_batch", record)
    dst = remap_store(path, tmp_path / "d", mapping, shard_bytes=4096 * 8, resume=True)
    assert appended == [keys[4096:]]
    assert dst.keys == keys and dst.labels.tolist() == labels.tolist()
    np.testing.assert_array_equal(dst.get_batch(range(4100))[0], mapping[ids])
