"""One shard file written and read directly, local and through fsspec's memory filesystem: the exact bytes and
entry a writer commits, groups, discards and write errors; the reader's checks with their messages, lazy
verification, and remote reads merged into blocks and fetch rounds (the mutation pass's tests for
store/shard.py; the whole file runs in about a second)."""

import errno
import hashlib
import json
import re
import uuid
import zlib

import fsspec
import numpy as np
import pytest

from seit.store import shard as shard_module
from seit.store.ans_pages import GroupedBlob
from seit.store.errors import StoreError
from seit.store.files import StoreFiles
from seit.store.format import MANIFEST, TRAILER, encode_index
from seit.store.shard import MAX_FETCH_BYTES, ShardReader, ShardWriter, coalesce
from store_util import write_v1_store

BLOBS = [b"a", b"bcd", b"", b"efghij", b"k" * 9]  # payload 19 bytes: 5 bytes of padding before the offsets
LABELS = [3, -1, 0, 7, 2]
KEYS = ["k0", "k1", "x/y.png", "k3", "k4"]


def refused(message: str):
    return pytest.raises(StoreError, match=f"^{re.escape(message)}$")


def write(directory, blobs=BLOBS, labels=LABELS, keys=KEYS, name="s.tok"):
    w = ShardWriter(directory, name)
    for blob, label, key in zip(blobs, labels, keys):
        w.add(blob, label, key)
    return w.commit()


def offsets_of(blobs):
    return np.cumsum([0, *map(len, blobs)])


# ---- ShardWriter ---------------------------------------------------------------------------------------
def test_a_committed_shard_is_its_payload_then_its_index(tmp_path):
    w = ShardWriter(tmp_path, "s.tok")
    assert (len(w), w.payload_bytes) == (0, 0)
    for i, (blob, label, key) in enumerate(zip(BLOBS, LABELS, KEYS)):
        w.add(blob, label, key)
        assert (len(w), w.payload_bytes) == (i + 1, sum(map(len, BLOBS[: i + 1])))
    assert not (tmp_path / "s.tok").exists()  # written to a temporary file until committed
    entry = w.commit()
    data = (tmp_path / "s.tok").read_bytes()
    assert data == b"".join(BLOBS) + encode_index(offsets_of(BLOBS), np.array(LABELS), KEYS)
    assert entry == {
        "file": "s.tok",
        "samples": 5,
        "payload_bytes": 19,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tok"]


def test_an_empty_shard_is_only_an_index(tmp_path):
    entry = write(tmp_path, [], [], [])
    data = (tmp_path / "s.tok").read_bytes()
    assert data == encode_index(np.zeros(1, dtype=np.int64), np.array([]), [])
    assert (entry["samples"], entry["payload_bytes"], entry["bytes"]) == (0, 0, len(data))
    reader = ShardReader(StoreFiles(tmp_path), entry)
    assert len(reader) == 0 and reader.sample_keys() == [] and reader.labels.tolist() == []


def test_a_group_header_is_kept_once_where_the_group_starts(tmp_path):
    first, second = b"HEAD", bytes(bytearray(b"HEAD"))  # equal bytes, another group: groups go by identity
    blobs = [GroupedBlob(first, b"ab"), GroupedBlob(first, b"c"), GroupedBlob(second, b"de"), GroupedBlob(second, b"f")]
    entry = write(tmp_path, blobs, [0, 1, 2, 3], list("wxyz"))
    data = (tmp_path / "s.tok").read_bytes()
    groups = [(0, first), (2, second)]
    assert data == b"abcdef" + encode_index(np.array([0, 2, 3, 5, 6]), np.array([0, 1, 2, 3]), list("wxyz"), groups)
    reader = ShardReader(StoreFiles(tmp_path), entry)
    got = reader.blobs(np.array([3, 0, 2, 1]))
    assert all(isinstance(g, GroupedBlob) and g.header == b"HEAD" for g in got)
    assert [bytes(g.body) for g in got] == [b"f", b"ab", b"de", b"c"]


def test_groups_are_told_apart_by_their_header(tmp_path):
    blobs = [GroupedBlob(b"H1", b"a"), GroupedBlob(b"H2", b"b"), GroupedBlob(b"H2", b"c"), GroupedBlob(b"H3", b"d")]
    entry = write(tmp_path, blobs, [0] * 4, list("abcd"))
    got = ShardReader(StoreFiles(tmp_path), entry).blobs(np.arange(4))
    assert [(g.header, bytes(g.body)) for g in got] == [(b"H1", b"a"), (b"H2", b"b"), (b"H2", b"c"), (b"H3", b"d")]


def test_a_discarded_shard_leaves_nothing(tmp_path):
    w = ShardWriter(tmp_path, "s.tok")
    w.add(b"abc", 0, "k")
    w.discard()
    assert list(tmp_path.iterdir()) == []


class FullDisk:
    def __init__(self, filename=None):
        self.filename = filename

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", self.filename)


def test_a_failed_write_names_the_shard(tmp_path):
    w = ShardWriter(tmp_path, "s.tok")
    real = w._file
    w._file = FullDisk()
    with pytest.raises(OSError) as caught:
        w.add(b"abc", 0, "k")
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        errno.ENOSPC,
        "No space left on device",
        str(tmp_path / "s.tok"),
    )
    assert caught.value.__suppress_context__
    w._file = FullDisk("/elsewhere")  # an error that already names its file is passed on as it is
    with pytest.raises(OSError) as caught:
        w.commit()
    assert caught.value.filename == "/elsewhere"
    w._file = real
    w.discard()


# ---- coalesce ------------------------------------------------------------------------------------------
def blocks(starts, ends, gap):
    return coalesce(np.array(starts), np.array(ends), gap)


def test_ranges_closer_than_the_gap_are_merged():
    assert blocks([5], [9], 0) == [(5, 9, 0, 1)]
    assert blocks([0, 10, 30], [10, 20, 35], 0) == [(0, 20, 0, 2), (30, 35, 2, 3)]
    assert blocks([0, 13, 30], [10, 20, 35], 3) == [(0, 20, 0, 2), (30, 35, 2, 3)]  # a gap of 3 bytes: merged
    assert blocks([0, 14, 30], [10, 20, 35], 3) == [(0, 10, 0, 1), (14, 20, 1, 2), (30, 35, 2, 3)]
    assert blocks([0, 2, 4], [10, 6, 12], 0) == [(0, 12, 0, 3)]  # overlapping, a range inside another
    assert blocks([0, 0], [4, 4], 0) == [(0, 4, 0, 2)]  # the same sample twice


def test_a_block_never_grows_past_one_fetch_bound():
    big = MAX_FETCH_BYTES
    assert blocks([0, big - 10], [10, big], big) == [(0, big, 0, 2)]
    assert blocks([0, big - 10], [10, big + 1], big) == [(0, 10, 0, 1), (big - 10, big + 1, 1, 2)]
    assert blocks([0, 5], [big + 1, 6], big) == [(0, big + 1, 0, 1), (5, 6, 1, 2)]


# ---- ShardReader: checks -------------------------------------------------------------------------------
@pytest.fixture
def shard(tmp_path):
    return StoreFiles(tmp_path), write(tmp_path), tmp_path / "s.tok"


def test_a_shard_reads_back_its_samples_labels_and_keys(shard):
    files, entry, _ = shard
    reader = ShardReader(files, entry)
    assert (len(reader), reader.name, reader.where) == (5, "s.tok", f"{files.url}/s.tok")
    assert reader.labels.tolist() == LABELS and reader.sample_keys() == KEYS
    assert reader.sample_keys() is reader.sample_keys()  # decoded once
    assert reader.offsets.tolist() == offsets_of(BLOBS).tolist()
    assert [bytes(b) for b in reader.blobs(np.array([4, 0, 2, 0, 3]))] == [BLOBS[i] for i in (4, 0, 2, 0, 3)]
    assert reader.blobs(np.array([], dtype=np.int64)) == []


def test_a_shard_of_another_size_than_its_entry_is_refused(shard):
    files, entry, _ = shard
    size = entry["bytes"]
    for claimed in (size - 1, size + 1):
        with refused(
            f"{files.url}/s.tok: shard is {size} bytes, the manifest says {claimed} (truncated or replaced file); "
            "re-copy the store or re-create it"
        ):
            ShardReader(files, {**entry, "bytes": claimed})


def test_a_payload_larger_than_the_shard_is_refused(shard):
    files, entry, _ = shard
    size = entry["bytes"]
    with refused(f"{files.url}/s.tok: manifest says {size + 1} payload bytes in a {size}-byte shard (corrupt)"):
        ShardReader(files, {**entry, "payload_bytes": size + 1})
    with refused(f"{files.url}/s.tok: shard is {size} bytes, too short for its trailer (truncated file?)"):
        ShardReader(files, {**entry, "payload_bytes": size})  # up to the size: then the trailer is missed


@pytest.mark.parametrize(
    ("labels", "num_classes", "message"),
    [
        ([3, -2, 0, 7, 2], None, "sample 1 has label -2, outside -1..2147483647"),
        ([3, -1, 0, 8, 2], 8, "sample 3 has label 8, outside -1..7"),
        ([3, -1, 9, 8, 2], 8, "sample 2 has label 9, outside -1..7"),
    ],
)
def test_labels_outside_the_classes_are_refused(tmp_path, labels, num_classes, message):
    entry = write(tmp_path, labels=np.array(labels, dtype=np.int64))
    with refused(f"{tmp_path}/s.tok: {message} (corrupt shard)"):
        ShardReader(StoreFiles(tmp_path), entry, num_classes=num_classes)


def test_labels_at_the_ends_of_the_range_pass(tmp_path):
    entry = write(tmp_path, labels=[-1, 0, 7, 7, -1])
    assert ShardReader(StoreFiles(tmp_path), entry, num_classes=8).labels.tolist() == [-1, 0, 7, 7, -1]
    entry = write(tmp_path, labels=[(1 << 31) - 1, -1, 0, 0, 0], name="t.tok")
    assert ShardReader(StoreFiles(tmp_path), entry).labels[0] == (1 << 31) - 1


def rewrite(path, entry, **fields):
    """The shard with trailer fields replaced and its index CRC made right again: a consistent but wrong index."""
    data = path.read_bytes()
    names = ["magic", "samples", "payload", "labels", "keys", "label_size", "groups", "key_text", "crc"]
    trailer = dict(zip(names, TRAILER.unpack(data[-TRAILER.size :])))
    trailer.update(fields)
    index = data[entry["payload_bytes"] : -TRAILER.size] + TRAILER.pack(*trailer.values())[:-4]
    path.write_bytes(data[: entry["payload_bytes"]] + index + zlib.crc32(index).to_bytes(4, "little"))


def test_offsets_that_decrease_are_refused_naming_the_shard(tmp_path):
    payload = b"".join(BLOBS)
    (tmp_path / "s.tok").write_bytes(payload + encode_index(np.array([0, 1, 4, 3, 10, 19]), np.array(LABELS), KEYS))
    entry = {"file": "s.tok", "samples": 5, "payload_bytes": 19, "bytes": (tmp_path / "s.tok").stat().st_size}
    with refused(f"{tmp_path}/s.tok: corrupt sample index (offsets not increasing from 0 to 19)"):
        ShardReader(StoreFiles(tmp_path), entry)


def test_a_label_list_of_another_size_than_the_trailer_says_is_refused_naming_the_shard(shard):
    files, entry, path = shard
    rewrite(path, entry, label_size=4)
    with refused(f"{files.url}/s.tok: label list holds 10 bytes, the trailer says 20 (corrupt shard)"):
        ShardReader(files, entry, verify=False)


def test_a_key_list_that_does_not_match_the_samples_is_refused_naming_the_shard(tmp_path):
    entry = write(tmp_path, keys=["k0", "k1", "two\nkeys", "k3", "k4"])
    reader = ShardReader(StoreFiles(tmp_path), entry)  # keys are decoded when first asked for
    with refused(f"{tmp_path}/s.tok: key list holds 6 keys for 5 samples (corrupt shard)"):
        reader.sample_keys()


def test_a_group_table_that_does_not_start_at_the_first_sample_is_refused_naming_the_shard(tmp_path):
    entry = write(tmp_path, [b"x", GroupedBlob(b"H", b"y")], [0, 0], ["a", "b"])
    with refused(f"{tmp_path}/s.tok: corrupt group table (a grouped codec's headers); re-copy the store"):
        ShardReader(StoreFiles(tmp_path), entry)


def corrupt_payload(path):
    data = bytearray(path.read_bytes())
    data[1] ^= 1  # inside sample 1: the index (and its CRC) is untouched
    path.write_bytes(bytes(data))


SHA_MISMATCH = "sha256 mismatch, the shard is corrupt; re-copy it from the source or re-create the store"


def test_verification_waits_for_the_first_read(shard):
    files, entry, path = shard
    corrupt_payload(path)
    reader = ShardReader(files, entry)  # only the index is read
    assert reader.verified is False
    with refused(f"{files.url}/s.tok: {SHA_MISMATCH}"):
        reader.blobs(np.array([0]))
    assert not reader.verified
    unchecked = ShardReader(files, entry, verify=False)
    assert unchecked.verified and bytes(unchecked.blobs(np.array([1]))[0]) == b"ccd"


def test_a_verified_shard_is_checked_once(shard, monkeypatch):
    files, entry, _ = shard
    reader = ShardReader(files, entry)
    calls = []
    check = reader.check_content
    monkeypatch.setattr(reader, "check_content", lambda: (calls.append(1), check()))
    reader.blobs(np.array([0]))
    reader.blobs(np.array([1]))
    assert calls == [1] and reader.verified


def test_a_large_local_shard_is_hashed_whole(tmp_path):
    blobs = [bytes([i % 251]) * (5 << 20) for i in range(4)]  # 20 MiB: more than one 16 MiB step
    entry = write(tmp_path, blobs, [0] * 4, list("abcd"))
    reader = ShardReader(StoreFiles(tmp_path), entry)
    reader.check_content()
    assert reader.verified
    with refused(f"{tmp_path}/s.tok: {SHA_MISMATCH}"):
        ShardReader(StoreFiles(tmp_path), {**entry, "sha256": hashlib.sha256(b"".join(blobs)).hexdigest()}).blobs(
            np.array([0])
        )


def v1_shard(path, files):
    write_v1_store(path)
    entry = json.loads((path / MANIFEST).read_text())["shards"][0]
    return entry, ShardReader(files, entry, version=1)


def test_a_format_1_shard_is_checked_before_its_index_is_read(tmp_path):
    entry, reader = v1_shard(tmp_path / "v1", StoreFiles(tmp_path / "v1"))
    assert reader.verified and len(reader) == 30 and reader.offsets[-1] == entry["payload_bytes"]
    corrupt_payload(tmp_path / "v1" / entry["file"])
    with refused(f"{tmp_path}/v1/{entry['file']}: {SHA_MISMATCH}"):
        ShardReader(StoreFiles(tmp_path / "v1"), entry, version=1, verify=False)


# ---- ShardReader: remote -------------------------------------------------------------------------------
@pytest.fixture
def remote(tmp_path):
    """(a function: the StoreFiles of a local folder copied to fsspec's memory filesystem, its URL)."""
    fs = fsspec.filesystem("memory")
    made = []

    def copy(folder):
        root = f"/shard-test-{uuid.uuid4().hex}"
        fs.put(str(folder), root, recursive=True)
        made.append(root)
        return StoreFiles(f"memory://{root}")

    yield copy
    for root in made:
        fs.rm(root, recursive=True)


class Recorder:
    """Wraps a StoreFiles' read_ranges and read_bytes to record what each call asks for."""

    def __init__(self, files, monkeypatch):
        self.ranges, self.whole = [], []
        read_ranges, read_bytes = files.read_ranges, files.read_bytes

        def ranges(name, starts, ends):
            self.ranges.append((list(map(int, starts)), list(map(int, ends))))
            return read_ranges(name, starts, ends)

        def whole(name, limit):
            self.whole.append(limit)
            return read_bytes(name, limit)

        monkeypatch.setattr(files, "read_ranges", ranges)
        monkeypatch.setattr(files, "read_bytes", whole)


def test_a_remote_shard_reads_only_its_index_then_the_samples_asked_for(shard, remote, monkeypatch):
    _, entry, _ = shard
    files = remote(shard[2].parent)
    calls = Recorder(files, monkeypatch)
    reader = ShardReader(files, entry, verify=False)
    assert calls.ranges == [([19], [entry["bytes"]])] and reader.labels.tolist() == LABELS
    assert reader.sample_keys() == KEYS
    calls.ranges.clear()
    got = reader.blobs(np.array([4, 0, 3, 0]))
    assert [bytes(b) for b in got] == [BLOBS[4], BLOBS[0], BLOBS[3], BLOBS[0]]
    assert calls.ranges == [([0], [19])]  # nearby samples: one block


def test_a_verified_remote_shard_is_downloaded_once_and_served_from_that_copy(shard, remote, monkeypatch):
    _, entry, path = shard
    files = remote(path.parent)
    calls = Recorder(files, monkeypatch)
    reader = ShardReader(files, entry)
    assert not reader.verified and calls.whole == []
    assert [bytes(b) for b in reader.blobs(np.array([3, 1]))] == [BLOBS[3], BLOBS[1]]
    assert calls.whole == [entry["bytes"]] and calls.ranges == [([19], [entry["bytes"]])]
    assert [bytes(b) for b in reader.blobs(np.array([4]))] == [BLOBS[4]] and len(calls.ranges) == 1
    corrupt_payload(path)
    files = remote(path.parent)
    with refused(f"{files.url}/s.tok: {SHA_MISMATCH}"):
        ShardReader(files, entry).blobs(np.array([0]))


def test_a_remote_format_1_shard_is_read_whole_once(tmp_path, remote, monkeypatch):
    write_v1_store(tmp_path / "v1")
    entry = json.loads((tmp_path / "v1" / MANIFEST).read_text())["shards"][0]
    files = remote(tmp_path / "v1")
    calls = Recorder(files, monkeypatch)
    reader = ShardReader(files, entry, version=1)
    assert calls.whole == [entry["bytes"]] and calls.ranges == [] and reader.verified
    assert bytes(reader.blobs(np.array([2]))[0]) == (tmp_path / "v1" / entry["file"]).read_bytes()[64:96]
    assert calls.ranges == []


def test_remote_reads_are_merged_into_blocks_and_split_into_fetch_rounds(tmp_path, remote, monkeypatch):
    blobs = [bytes([65 + i]) * 10 for i in range(8)]  # samples at 0, 10, ..., 70
    entry = write(tmp_path, blobs, [0] * 8, [f"k{i}" for i in range(8)])
    files = remote(tmp_path)
    monkeypatch.setattr("seit.store.files.REMOTE_MAX_GAP", 5)
    monkeypatch.setattr(shard_module, "MAX_FETCH_BYTES", 25)
    reader = ShardReader(files, entry, verify=False)
    calls = Recorder(files, monkeypatch)
    want = [6, 0, 2, 4, 7, 0]  # sorted: 0, 0 | 2 | 4 | 6, 7 -> blocks [0,10) [20,30) [40,50) [60,80)
    got = reader.blobs(np.array(want))
    assert [bytes(b) for b in got] == [blobs[i] for i in want]
    # a round takes blocks until it holds 25 bytes, and always at least one (the 20-byte block alone is below)
    assert calls.ranges == [([0, 20, 40], [10, 30, 50]), ([60], [80])]
    for bound, rounds in [(20, [[0, 20], [40, 60]]), (21, [[0, 20, 40], [60]])]:  # a round ends once it holds the bound
        monkeypatch.setattr(shard_module, "MAX_FETCH_BYTES", bound)
        calls.ranges.clear()
        assert [bytes(b) for b in reader.blobs(np.array(want))] == [blobs[i] for i in want]
        assert [starts for starts, _ in calls.ranges] == rounds
    calls.ranges.clear()
    monkeypatch.setattr(shard_module, "MAX_FETCH_BYTES", 5)  # every block is larger: one block a round
    assert [bytes(b) for b in reader.blobs(np.array([1, 5]))] == [blobs[1], blobs[5]]
    assert calls.ranges == [([10], [20]), ([50], [60])]
