"""Hostile and broken store files: every byte a reader trusts is checked, every allocation is bounded, nothing
read from a file leads outside the store, and one writer owns an output."""

import hashlib
import io
import json
import os
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import zstandard

from seit.store import StoreError, StoreWriter, TokenStore, set_codebook, verify_store
from seit.store.format import MANIFEST, TRAILER, json_sha256
from seit.store.lock import WriterLock
from seit.store.stream import TokenStream
from store_util import CODEC_NAMES, K, make_samples, write_store, write_v1_store


def manifest_of(path) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


def forge_manifest(path, edit) -> None:
    """Apply ``edit`` to the manifest and re-seal it: a hostile file, not a damaged one."""
    m = manifest_of(path)
    edit(m)
    m["checksum"] = json_sha256(m)
    (Path(path) / MANIFEST).write_text(json.dumps(m))


def forge_shard(path, s: int, *, labels_blob=None, keys_blob=None, key_text=None) -> None:
    """Rebuild shard ``s``'s index with other label/key frames, a matching trailer, CRC and manifest entry."""
    entry = manifest_of(path)["shards"][s]
    file = Path(path) / entry["file"]
    data = file.read_bytes()
    magic, n, payload, lb, kb, size, gb, kt, _ = TRAILER.unpack(data[-TRAILER.size :])
    start = payload + (-payload % 8) + 4 * (n + 1)
    labels = data[start : start + lb] if labels_blob is None else labels_blob
    keys = data[start + lb : start + lb + kb] if keys_blob is None else keys_blob
    groups = data[start + lb + kb : start + lb + kb + gb]
    kt = kt if key_text is None else key_text
    index = data[payload:start] + labels + keys + groups
    index += TRAILER.pack(magic, n, payload, len(labels), len(keys), size, gb, kt, 0)[:-4]
    new = data[:payload] + index + zlib.crc32(index).to_bytes(4, "little")
    file.write_bytes(new)

    def edit(m):
        m["shards"][s].update(bytes=len(new), sha256=hashlib.sha256(new).hexdigest())

    forge_manifest(path, edit)


def claiming_frame(size: int) -> bytes:
    """A 17-byte zstd frame whose header claims ``size`` bytes of content."""
    return b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + size.to_bytes(8, "little") + bytes([2 << 3 | 1, 0, 0]) + b"ab"


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def raises_store_error_within(limit: int, fn, match: str = "") -> None:
    def call():
        with pytest.raises(StoreError, match=match):
            fn()

    assert peak_bytes(call) < limit


def read_everything(path, verify=False):
    store = TokenStore.open(path, verify=verify)
    ids, labels = store.get_batch(range(len(store)))
    return ids, labels, store.keys


# ---- integrity: every byte of the index and of each sample is checked before it is used ----------------------
@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_any_flipped_index_byte_raises_and_never_gives_wrong_labels_or_keys(tmp_path, codec):
    ids, labels, keys = write_store(tmp_path / "s", 60, codec=codec, shard_bytes=1 << 20)
    entry = manifest_of(tmp_path / "s")["shards"][0]
    path = tmp_path / "s" / entry["file"]
    good = path.read_bytes()
    raised = 0
    for pos in range(entry["payload_bytes"], len(good)):
        data = bytearray(good)
        data[pos] ^= 0x10
        path.write_bytes(bytes(data))
        try:
            got = read_everything(tmp_path / "s")
        except StoreError:
            raised += 1
            continue
        np.testing.assert_array_equal(got[0], ids)
        np.testing.assert_array_equal(got[1], labels)
        assert got[2] == keys
    assert raised == len(good) - entry["payload_bytes"]  # the CRC covers every index byte


def silent_label_flip(frame: bytes, n: int) -> tuple[int, int]:
    """(byte, bit) of a flip after which the label frame still decompresses, to other labels of the same count."""
    good = zstandard.decompress(frame)
    for pos in range(len(frame)):
        for bit in range(8):
            data = bytearray(frame)
            data[pos] ^= 1 << bit
            try:
                out = zstandard.decompress(bytes(data))
            except zstandard.ZstdError:
                continue
            if len(out) == 2 * n and out != good:
                return pos, bit
    raise AssertionError("no silent flip found")


@pytest.mark.parametrize("codec", CODEC_NAMES)
def test_streaming_refuses_a_shard_whose_label_frame_has_a_flipped_bit(tmp_path, codec):
    write_store(tmp_path / "s", 60, codec=codec, shard_bytes=1 << 20)
    entry = manifest_of(tmp_path / "s")["shards"][0]
    n, payload = entry["samples"], entry["payload_bytes"]
    path = tmp_path / "s" / entry["file"]
    data = bytearray(path.read_bytes())
    _, _, _, lb, *_ = TRAILER.unpack(bytes(data[-TRAILER.size :]))
    start = payload + (-payload % 8) + 4 * (n + 1)
    pos, bit = silent_label_flip(bytes(data[start : start + lb]), n)  # zstd alone would hand out wrong labels
    data[start + pos] ^= 1 << bit
    path.write_bytes(bytes(data))
    stream = TokenStream(tmp_path / "s", 8, shuffle=False, verify=False)
    with pytest.raises(StoreError, match=f"{entry['file']}: index checksum mismatch"):
        list(stream)


def test_labels_outside_the_class_list_are_refused_at_read_not_only_by_verify(tmp_path):
    _, labels, _ = write_store(tmp_path / "s", 40, shard_bytes=1 << 20)  # 10 classes
    forged = labels.astype("<i2").copy()
    forged[3] = 99
    forge_shard(tmp_path / "s", 0, labels_blob=zstandard.compress(forged.tobytes()))
    with pytest.raises(StoreError, match=r"sample 3 has label 99, outside -1\.\.9"):
        TokenStore.open(tmp_path / "s", verify=False).get_batch([0])


# ---- bounds: nothing is allocated from an unchecked size -------------------------------------------------------
def test_a_label_frame_claiming_64_gb_is_refused_without_allocating(tmp_path):
    write_store(tmp_path / "s", 40, shard_bytes=1 << 20)
    forge_shard(tmp_path / "s", 0, labels_blob=claiming_frame(64 << 30))
    raises_store_error_within(32 << 20, lambda: TokenStore.open(tmp_path / "s").get_batch([0]), "label list")


def test_a_small_key_frame_cannot_make_verify_allocate_gigabytes(tmp_path):
    write_store(tmp_path / "s", 40, shard_bytes=1 << 20)
    forge_shard(tmp_path / "s", 0, keys_blob=claiming_frame(2 << 30))
    raises_store_error_within(32 << 20, lambda: verify_store(tmp_path / "s", show_progress=False), "key list")
    # nor a trailer that claims more key text than keys can hold
    write_store(tmp_path / "t", 40, shard_bytes=1 << 20)
    forge_shard(tmp_path / "t", 0, keys_blob=claiming_frame(2 << 30), key_text=2 << 30)
    raises_store_error_within(32 << 20, lambda: TokenStore.open(tmp_path / "t").keys, "claims")


def test_writers_refuse_keys_longer_than_readers_accept(tmp_path):
    with StoreWriter(tmp_path / "s", grid_shape=(2,), codebook_size=4) as w:
        with pytest.raises(StoreError, match="at most 4096 bytes"):
            w.append(np.zeros(2, dtype=int), 0, "x" * 4097)
        w.append(np.zeros(2, dtype=int), 0, "é" * 2048)
    assert TokenStore.open(tmp_path / "s").keys == ["é" * 2048]


def test_a_codebook_npy_header_with_a_huge_shape_is_refused(tmp_path):
    write_store(tmp_path / "s", 20, codebook=np.ones((K, 4)))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 29, 4)})
    data = header.getvalue() + b"\0" * 64
    name = "codebook-0000000000000000.npy"
    (tmp_path / "s" / name).write_bytes(data)

    def edit(m):
        entry = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        m["codebook"] = {**entry, "shape": [1 << 29, 4], "dtype": "float32"}

    forge_manifest(tmp_path / "s", edit)
    raises_store_error_within(32 << 20, lambda: TokenStore.open(tmp_path / "s").codebook, "header says")


def test_a_codec_state_claiming_gigabytes_is_refused(tmp_path):
    from seit.store.zstd_frames import ZstdFrames

    write_store(tmp_path / "s", 60, codec="ctx-ans")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<u4", "fortran_order": False, "shape": (1 << 29,)})
    member = header.getvalue() + b"\0" * 64
    archive = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("order0.npy", member)
    state = ZstdFrames(level=3).compress(archive.getvalue())
    name = manifest_of(tmp_path / "s")["codecs"][0]["file"]
    (tmp_path / "s" / name).write_bytes(state)
    forge_manifest(
        tmp_path / "s",
        lambda m: m["codecs"][0].update(bytes=len(state), sha256=hashlib.sha256(state).hexdigest()),
    )
    raises_store_error_within(32 << 20, lambda: TokenStore.open(tmp_path / "s").get_batch([0]), "codec state")


def test_files_larger_than_their_kind_can_be_are_not_read(tmp_path, monkeypatch):
    write_store(tmp_path / "s", 20)
    monkeypatch.setattr("seit.store.reader.MAX_MANIFEST_BYTES", 100)
    with pytest.raises(StoreError, match=r"manifest.json: \d+ bytes, more than the 100"):
        TokenStore.open(tmp_path / "s")


def test_a_manifest_grid_of_ten_billion_tokens_is_refused_at_open(tmp_path):
    write_store(tmp_path / "s", 20)
    forge_manifest(tmp_path / "s", lambda m: m.update(grid_shape=[100000, 100000]))
    raises_store_error_within(32 << 20, lambda: TokenStore.open(tmp_path / "s"), "grid_shape")


def test_a_hand_edited_manifest_is_refused_by_its_checksum(tmp_path):
    write_store(tmp_path / "s", 20)
    m = manifest_of(tmp_path / "s")
    m["grid_shape"] = [2, 8]  # same number of tokens: without the checksum, every sample would be reshaped
    (tmp_path / "s" / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(StoreError, match=r"checksum mismatch.*edited by hand"):
        TokenStore.open(tmp_path / "s")


# ---- paths: nothing read from a store file leads outside it ---------------------------------------------------
def test_a_resume_record_naming_a_file_outside_the_store_is_refused(tmp_path):
    out = tmp_path / "deep" / "s"
    ids, labels, keys = make_samples(80)
    w = StoreWriter(out, grid_shape=(4, 4), codebook_size=K, codec="raw", shard_bytes=300, fit_samples=20)
    w.append_batch(ids, labels, keys)
    w.abort()
    record_path = out / "part-00000.json"
    record = json.loads(record_path.read_text())
    first = record["shards"][0]["file"]
    outside = tmp_path / "x"
    outside.write_bytes((out / first).read_bytes())
    record["shards"][0]["file"] = "../../x"
    record["checksum"] = json_sha256(record)
    record_path.write_text(json.dumps(record))
    with pytest.raises(StoreError, match=r"invalid file name '\.\./\.\./x'"):
        StoreWriter(out, grid_shape=(4, 4), codebook_size=K, codec="raw", shard_bytes=300, fit_samples=20, resume=True)
    assert outside.exists()


def test_a_shard_symlinked_outside_the_store_is_refused(tmp_path):
    ids, _, _ = write_store(tmp_path / "s", 40, shard_bytes=1 << 20)
    name = manifest_of(tmp_path / "s")["shards"][0]["file"]
    outside = tmp_path / "elsewhere.tok"
    (tmp_path / "s" / name).rename(outside)
    os.symlink(outside, tmp_path / "s" / name)
    with pytest.raises(StoreError, match="resolves outside the store"):
        TokenStore.open(tmp_path / "s").get_batch([0])
    os.unlink(tmp_path / "s" / name)  # a symlink to a file of the store is fine
    outside.rename(tmp_path / "s" / "inside.bin")
    os.symlink("inside.bin", tmp_path / "s" / name)
    np.testing.assert_array_equal(TokenStore.open(tmp_path / "s").get_batch([0])[0][0], ids[0])


# ---- one writer per output --------------------------------------------------------------------------------------
def test_a_second_writer_of_the_same_output_stops_without_touching_the_first(tmp_path):
    ids, labels, keys = make_samples(100)
    common = dict(grid_shape=(4, 4), codebook_size=K, codec="raw", shard_bytes=10_000, fit_samples=20)
    first = StoreWriter(tmp_path / "s", **common)
    first.append_batch(ids[:50], labels[:50], keys[:50])  # a shard being written, under a temporary name
    temporary = [n for n in os.listdir(tmp_path / "s") if n.startswith(".shard-")]
    assert temporary
    for resume in (False, True):
        with pytest.raises(StoreError, match=rf"already being written by pid {os.getpid()} \(host .*\); wait"):
            StoreWriter(tmp_path / "s", resume=resume, **common)
    assert all((tmp_path / "s" / n).exists() for n in temporary)
    first.append_batch(ids[50:], labels[50:], keys[50:])
    first.close()
    np.testing.assert_array_equal(TokenStore.open(tmp_path / "s").get_batch(range(100))[0], ids)
    assert not [n for n in os.listdir(tmp_path / "s") if n.startswith(".")]  # the lock file goes with the writer
    lock = WriterLock(tmp_path / "s", 0)  # editing commands take the lock too
    with pytest.raises(StoreError, match="already being written"):
        set_codebook(tmp_path / "s", np.ones((K, 2)))
    lock.release()
    set_codebook(tmp_path / "s", np.ones((K, 2)))


def test_a_filesystem_without_flock_writes_unguarded_with_a_warning(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(*_):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ids, _, _ = write_store(tmp_path / "s", 20)
    assert "cannot lock" in caplog.text
    np.testing.assert_array_equal(TokenStore.open(tmp_path / "s").get_batch(range(20))[0], ids)


# ---- format 1 stores (no index CRC) still read, each shard checked by sha256 -----------------------------------
def test_format_1_stores_still_read_and_their_shards_are_checked_whole(tmp_path):
    ids, labels, keys = write_v1_store(tmp_path / "s")
    got = read_everything(tmp_path / "s")
    np.testing.assert_array_equal(got[0], ids)
    np.testing.assert_array_equal(got[1], labels)
    assert got[2] == keys
    verify_store(tmp_path / "s", show_progress=False)
    shard = tmp_path / "s" / "shard-00000-000000.tok"
    data = bytearray(shard.read_bytes())
    data[40] ^= 0x01  # an id of sample 1: the raw codec of format 1 has no per-sample checksum
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="sha256 mismatch"):
        TokenStore.open(tmp_path / "s", verify=False).get_batch([0])
    with pytest.raises(StoreError, match="sha256 mismatch"):
        next(iter(TokenStream(tmp_path / "s", 4, shuffle=False)))
    assert torch.is_tensor(torch.zeros(1))


def test_the_documented_python_reader_reads_a_store_and_checks_its_crcs(tmp_path):
    ids, labels, keys = write_store(tmp_path / "s", 30, shard_bytes=1 << 20)
    doc = (Path(__file__).parents[1] / "docs" / "store-format.md").read_text()
    code = doc.split("## Reading it without seit (Python)")[1].split("```python")[1].split("```")[0]
    scope: dict = {}
    exec(code.replace("STORE/", f"{tmp_path / 's'}/"), scope)  # the documented snippet
    np.testing.assert_array_equal(scope["ids0"], ids[0])
    np.testing.assert_array_equal(scope["labels"], labels)
    assert scope["keys"] == keys
