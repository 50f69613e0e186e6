"""The store format's parsers and checks called directly (no store on disk): every bound and every rejection
of a malformed group table, trailer, manifest or writer record, each at its edge (the mutation pass's tests)."""

import hashlib
import zlib

import numpy as np
import pytest
import zstandard

from seit.store import StoreError
from seit.store.format import (
    TRAILER,
    V1_TRAILER,
    ShardLayout,
    array_name,
    check_file_name,
    check_offsets,
    check_seal,
    codec_state_name,
    decode_groups,
    decode_keys,
    decode_labels,
    encode_groups,
    encode_index,
    json_sha256,
    label_itemsize,
    load_json,
    parse_trailer,
    part_name,
    part_of,
    part_records,
    sealed,
    shard_name,
    unzstd,
    validate_manifest,
    validate_record,
)


def test_label_width_is_two_bytes_exactly_while_every_label_fits_int16():
    assert label_itemsize(np.zeros(0, np.int64)) == 2
    assert label_itemsize(np.array([-(1 << 15), (1 << 15) - 1])) == 2
    assert label_itemsize(np.array([1 << 15])) == 4  # one label: its value decides, not the count
    assert label_itemsize(np.array([-(1 << 15) - 1])) == 4


def test_side_array_names_hold_the_first_16_hex_digits_of_the_hash():
    assert array_name("codebook", "0123456789abcdef" + "f" * 48) == "codebook-0123456789abcdef.npy"


# ---- the groups section ----------------------------------------------------------------------------------------
def group_table(first, ends, body: bytes) -> bytes:
    """A groups section as bytes, malformed at will."""
    return np.array([len(first), *first, *ends], "<u4").tobytes() + body


def decode(blob: bytes, samples: int = 5):
    return decode_groups(blob, ShardLayout(samples, 0, 0, 0, 2), "shard7")


def test_group_tables_round_trip_including_empty_headers():
    for groups, samples in [([(0, b"")], 1), ([(0, b"ab"), (1, b""), (3, b"c")], 5), ([(0, b"h"), (1, b"i")], 2)]:
        blob = encode_groups(groups)
        first, headers = decode(blob, samples)
        assert first.tolist() == [f for f, _ in groups] and headers == [h for _, h in groups]
    assert encode_groups([]) == b""


@pytest.mark.parametrize(
    "blob,samples",
    [
        (b"", 5),
        (b"\1\0\0", 5),
        (b"\1\0\0\0", 5),  # a count but no table
        (group_table([], [], b""), 5),  # no group
        (group_table([0, 2], [1, 2], b"ab")[:-3], 5),  # the table cut short
        (group_table([1, 2], [1, 2], b"ab"), 5),  # the first group does not start at sample 0
        (group_table([0, 2, 2], [1, 2, 2], b"ab"), 5),  # two groups start at the same sample
        (group_table([0, 3, 2], [1, 2, 2], b"ab"), 5),  # decreasing starts
        (group_table([0, 5], [1, 2], b"ab"), 5),  # a group starting past the last sample
        (group_table([0, 1], [1, 2], b"ab"), 1),
        (group_table([0, 2], [4, 3], b"abc"), 5),  # a header ending before it starts
        (group_table([0, 2], [1, 2], b"abc"), 5),  # bytes after the last header
        (group_table([0, 2], [1, 4], b"abc"), 5),  # a header past the end
    ],
)
def test_a_malformed_group_table_is_refused_naming_the_shard(blob, samples):
    with pytest.raises(StoreError, match="shard7: corrupt group table"):
        decode(blob, samples)


# ---- file names ------------------------------------------------------------------------------------------------
def test_file_names_and_writer_record_names():
    assert (shard_name(3, 12), part_name(3), codec_state_name(3)) == (
        "shard-00003-000012.tok",
        "part-00003.json",
        "codec-00003.bin",
    )
    assert part_of("part-00003.json") == 3
    for other in ["part-3.json", "xpart-00003.json", "part-00003.json.tmp", "part-000003.json", "manifest.json"]:
        assert part_of(other) is None
    assert part_records(["part-00002.json", "shard7", "part-00001.json", "part-1.json"]) == [
        "part-00001.json",
        "part-00002.json",
    ]


@pytest.mark.parametrize("name", ["shard-00000-000000.tok", "a", "A_b.c-9"])
def test_plain_file_names_inside_the_store_are_accepted(name):
    assert check_file_name(name, "manifest") == name


@pytest.mark.parametrize("name", ["", "../x.tok", "a/b", ".hidden", "-x", "_x", "a b", "x\n", 5, None, ["a"]])
def test_paths_hidden_files_and_non_strings_are_refused_as_file_names(name):
    with pytest.raises(StoreError, match="manifest: invalid file name"):
        check_file_name(name, "manifest")


# ---- the index and the trailer ---------------------------------------------------------------------------------
def test_shard_layout_places_each_section_after_the_previous_one():
    layout = ShardLayout(samples=3, payload_bytes=13, labels_bytes=5, keys_bytes=7, label_size=4, groups_bytes=9)
    assert (layout.offsets_start, layout.labels_start, layout.keys_start, layout.groups_start) == (16, 32, 37, 44)
    assert layout.total_bytes == 44 + 9 + TRAILER.size and layout.label_dtype == np.dtype("<i4")
    v1 = ShardLayout(3, 16, 5, 7, 2, version=1)
    assert v1.offsets_start == 16 and v1.total_bytes == 44 + V1_TRAILER.size and v1.label_dtype == np.dtype("<i2")


def index_of(labels, keys, payload=13, groups=()):
    """(index bytes, offsets) of a shard of len(labels) samples spread over ``payload`` bytes."""
    offsets = np.linspace(0, payload, len(labels) + 1).astype(np.int64)
    return encode_index(offsets, np.asarray(labels), keys, groups), offsets


def parse(index: bytes, n: int, payload: int = 13, version: int = 2, file_bytes=None):
    file_bytes = payload + len(index) if file_bytes is None else file_bytes
    return parse_trailer(index, "shard7", n, payload, file_bytes, version)


@pytest.mark.parametrize("labels", [[3, -1, 7], [70000, -1, 2]])
def test_an_index_round_trips_through_the_checked_parsers(labels):
    keys = ["a.png", "b", "ü.png"]
    index, offsets = index_of(labels, keys, groups=[(0, b"hd"), (2, b"")])
    assert index[:3] == b"\0\0\0"  # padding to a multiple of 8
    layout = parse(index, 3)
    assert (layout.samples, layout.payload_bytes, layout.label_size, layout.version) == (
        3,
        13,
        label_itemsize(np.array(labels)),
        2,
    )
    assert layout.key_text_bytes == len("\n".join(keys).encode()) and layout.total_bytes == 13 + len(index)
    data = b"p" * 13 + index
    stored = np.frombuffer(data, "<u4", 4, layout.offsets_start)
    np.testing.assert_array_equal(stored, offsets)
    check_offsets(stored, 13, "shard7")
    section = data[layout.labels_start : layout.keys_start]
    np.testing.assert_array_equal(decode_labels(section, layout, "shard7"), labels)
    assert decode_keys(data[layout.keys_start : layout.groups_start], layout, "shard7") == keys
    first, headers = decode_groups(data[layout.groups_start : layout.groups_start + layout.groups_bytes], layout, "")
    assert first.tolist() == [0, 2] and headers == [b"hd", b""]
    assert zlib.crc32(index[:-4]) == int.from_bytes(index[-4:], "little")


def test_an_empty_shard_has_an_index_too():
    index, _ = index_of([], [], payload=0)
    layout = parse(index, 0, payload=0)
    assert layout.samples == 0 and layout.offsets_start == 0
    assert decode_keys(index[layout.keys_start : layout.groups_start], layout, "s") == []
    assert decode_labels(index[layout.labels_start : layout.keys_start], layout, "s").size == 0


def retrailer(index: bytes, **fields) -> bytes:
    """``index`` with trailer fields replaced and its CRC made to match (a forged, not a damaged, index)."""
    names = ["magic", "n", "payload", "labels", "keys", "size", "groups", "key_text", "crc"]
    values = dict(zip(names, TRAILER.unpack(index[-TRAILER.size :])))
    values.update(fields)
    body = index[: -TRAILER.size] + TRAILER.pack(*values.values())[:-4]
    return body + zlib.crc32(body).to_bytes(4, "little")


@pytest.mark.parametrize(
    "forge,message",
    [
        (lambda i: i[-47:], "too short for its trailer"),
        (lambda i: retrailer(i, magic=b"SEITSHD1"), "not a format 2 seit shard"),
        (lambda i: i[:-1] + bytes([i[-1] ^ 1]), "index checksum mismatch"),
        (lambda i: i[:-5] + bytes([i[-5] ^ 1]) + i[-4:], "index checksum mismatch"),
        (lambda i: retrailer(i, size=3), "trailer says"),
        (lambda i: retrailer(i, size=1), "trailer says"),
        (lambda i: retrailer(i, n=4), "trailer says 4 samples"),
        (
            lambda i: retrailer(i, payload=14),
            "14 payload bytes.* belongs to another store; re-copy the store or re-run the write$",
        ),
        (lambda i: retrailer(i, keys=0), "trailer says"),
        (lambda i: retrailer(i, key_text=3 * 4097 + 1), "claims 12292 bytes of keys for 3 samples"),
    ],
)
def test_a_forged_or_damaged_trailer_is_refused_before_anything_is_read(forge, message):
    index, _ = index_of([1, 2, 3], ["a", "b", "c"])
    bad = forge(index)
    with pytest.raises(StoreError, match=f"shard7: .*{message}"):
        parse(bad, 3, file_bytes=13 + len(index))


def test_a_file_of_a_trailer_alone_is_refused_by_its_sizes():
    index, _ = index_of([1, 2, 3], ["a", "b", "c"])
    with pytest.raises(StoreError, match="trailer says 3 samples / 13 payload bytes in"):
        parse(retrailer(index[-TRAILER.size :]), 3)  # a valid CRC, but no room for the sections it names


def test_the_key_text_bound_is_4097_bytes_a_sample():
    index, _ = index_of([1, 2, 3], ["a", "b", "c"])
    assert parse(retrailer(index, key_text=3 * 4097), 3).key_text_bytes == 3 * 4097


def test_a_format_1_trailer_is_read_without_a_crc():
    index, _ = index_of([5, 6], ["k1", "k2"], payload=16)
    n, payload, lb, kb, size, gb = TRAILER.unpack(index[-TRAILER.size :])[1:7]
    v1 = index[: -TRAILER.size] + V1_TRAILER.pack(b"SEITSHD1", n, payload, lb, kb, size, gb)
    layout = parse(v1, 2, payload=16, version=1)
    assert (layout.version, layout.key_text_bytes, layout.total_bytes) == (1, -1, 16 + len(v1))
    assert decode_keys(v1[layout.keys_start - 16 : layout.groups_start - 16], layout, "s") == ["k1", "k2"]
    with pytest.raises(StoreError, match="not a format 1 seit shard"):
        parse(v1[:-40] + V1_TRAILER.pack(b"SEITSHD2", n, payload, lb, kb, size, gb), 2, payload=16, version=1)
    with pytest.raises(StoreError, match="too short"):
        parse(v1[-39:], 2, payload=16, version=1, file_bytes=16 + len(v1))


def test_offsets_must_rise_from_zero_to_the_payload_size():
    check_offsets(np.array([0, 4, 4, 9], "<u4"), 9, "s")  # an empty sample is fine
    for bad in ([1, 4, 9], [0, 4, 8], [0, 5, 4, 9], [0, 9, 10]):
        with pytest.raises(StoreError, match="s: corrupt sample index"):
            check_offsets(np.array(bad, "<u4"), 9, "s")


# ---- zstd frames of the index ----------------------------------------------------------------------------------
def test_a_frame_must_hold_exactly_its_declared_size_unless_told_at_most():
    frame = zstandard.ZstdCompressor().compress(b"abcd")
    assert unzstd(frame, 4, "label list", "s") == b"abcd"
    assert unzstd(frame, 5, "key list", "s", exact=False) == b"abcd"
    with pytest.raises(StoreError, match="s: label list holds 4 bytes, the trailer says 5"):
        unzstd(frame, 5, "label list", "s")
    with pytest.raises(StoreError, match=r"s: corrupt key list \(frame claims 4 bytes, at most 3"):
        unzstd(frame, 3, "key list", "s", exact=False)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(b"abcd")
    assert unzstd(unsized, 4, "x", "s") == b"abcd"
    with pytest.raises(StoreError, match="s: corrupt x"):
        unzstd(unsized, 3, "x", "s", exact=False)  # too big, found while decompressing
    with pytest.raises(StoreError, match="s: corrupt x"):
        unzstd(b"\0" * 8, 4, "x", "s")
    empty = zstandard.ZstdCompressor(write_content_size=False).compress(b"")
    assert unzstd(empty, 0, "x", "s") == b""
    with pytest.raises(StoreError, match="s: corrupt x"):  # zstd reads a limit of 0 as none: the bound is kept
        unzstd(zstandard.ZstdCompressor(write_content_size=False).compress(b"ab"), 0, "x", "s", exact=False)


def test_label_and_key_frames_of_the_wrong_size_are_named_in_the_error():
    layout = ShardLayout(2, 0, 0, 0, 2, key_text_bytes=3)
    frame = zstandard.ZstdCompressor().compress(b"ab")
    with pytest.raises(StoreError, match=r"^shard7: label list holds 2 bytes, the trailer says 4"):
        decode_labels(frame, layout, "shard7")
    with pytest.raises(StoreError, match=r"^shard7: key list holds 2 bytes, the trailer says 3"):
        decode_keys(frame, layout, "shard7")
    # a format 2 trailer that says 0 bytes of key text holds them to 0 (not to the format 1 bound)
    with pytest.raises(StoreError, match=r"s: corrupt key list \(frame claims 3 bytes, at most 0"):
        decode_keys(zstandard.ZstdCompressor().compress(b"abc"), ShardLayout(1, 0, 0, 0, 2, key_text_bytes=0), "s")
    assert decode_keys(zstandard.ZstdCompressor().compress(b""), ShardLayout(1, 0, 0, 0, 2, key_text_bytes=0), "s") == [
        ""
    ]


def test_key_lists_are_checked_for_their_count_and_utf8():
    layout = ShardLayout(2, 0, 0, 0, 2, key_text_bytes=9)
    zc = zstandard.ZstdCompressor()
    assert decode_keys(zc.compress(b"a b\nc\td e"), layout, "s") == ["a b", "c\td e"]  # only newlines split
    with pytest.raises(StoreError, match="s: key list holds 1 keys for 2 samples"):
        decode_keys(zc.compress(b"abcdefghi"), layout, "s")
    with pytest.raises(StoreError, match="s: corrupt key list"):
        decode_keys(zc.compress(b"abcdefg\n\xff"), layout, "s")


def test_format_1_key_lists_are_bounded_by_4097_bytes_a_key():
    layout = ShardLayout(1, 0, 0, 0, 2, version=1)
    zc = zstandard.ZstdCompressor(write_content_size=False)
    assert decode_keys(zc.compress(b"a" * 4097), layout, "s") == ["a" * 4097]
    with pytest.raises(StoreError, match="s: corrupt key list"):
        decode_keys(zc.compress(b"a" * 4098), layout, "s")


# ---- manifests and writer records ------------------------------------------------------------------------------
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def manifest(**changes):
    """A valid sealed manifest of two shards (or, with ``changes``, an invalid one sealed all the same)."""
    m = {
        "format": "seit-token-store",
        "format_version": 2,
        "num_samples": 20,
        "grid_shape": [4, 4],
        "ids_dtype": "int16",
        "codebook_size": 391,
        "class_names": ["a", "b"],
        "codebook": {"file": "codebook-0123.npy", "sha256": SHA, "bytes": 9, "shape": [391, 8], "dtype": "<f4"},
        "synonyms": None,
        "codecs": [{"name": "raw", "params": {}, "file": "codec-00000.bin", "sha256": SHA, "bytes": 0}],
        "shards": [
            {
                "file": "shard-00000-000000.tok",
                "samples": 17,
                "payload_bytes": 9,
                "bytes": 99,
                "sha256": SHA,
                "codec": 0,
            },
            {
                "file": "shard-00000-000001.tok",
                "samples": 3,
                "payload_bytes": 9,
                "bytes": 99,
                "sha256": SHA,
                "codec": 0,
            },
        ],
    }
    for key, value in changes.items():
        edit = value if callable(value) else lambda m, key=key, value=value: m.__setitem__(key, value)
        edit(m)
    return sealed(m)


def record(**changes):
    r = {
        "format": "seit-token-store-part",
        "format_version": 2,
        "part": 0,
        "complete": False,
        "grid_shape": [4, 4],
        "codebook_size": 391,
        "ids_dtype": "int16",
        "codec_name": "raw",
        "codec": None,
        "arrays": {"codebook": None, "synonyms": None, "code_ids": None},
        "writer": {},
        "created": {"time": "t", "host": "h"},
        "shards": [],
    }
    for key, value in changes.items():
        edit = value if callable(value) else lambda r, key=key, value=value: r.__setitem__(key, value)
        edit(r)
    return sealed(r)


def test_valid_manifests_and_records_pass_at_their_limits():
    assert validate_manifest(manifest(), "manifest")["num_samples"] == 20
    for changes in [
        {"grid_shape": [1 << 10, 1 << 10]},  # MAX_GRID_NUMEL exactly
        {"grid_shape": [1]},
        {"codebook_size": 1, "ids_dtype": "int16"},
        {"codebook_size": 1 << 15, "ids_dtype": "int16"},
        {"codebook_size": 1 << 16, "ids_dtype": "int32"},
        {"class_names": None},
        {"class_names": []},
        {"codebook": lambda m: m["codebook"].update(shape=[0])},
        {
            "codecs": lambda m: m["codecs"].append({**m["codecs"][0], "name": "zstd"}),
            "shards": lambda m: m["shards"][1].update(codec=1),
        },
    ]:
        validate_manifest(manifest(**changes), "manifest")
    validate_record(record(), "record")
    validate_record(
        record(codec={"name": "raw", "params": {}, "file": "codec-00000.bin", "sha256": SHA, "bytes": 0}), "p"
    )


def unsealed_v1():
    m = manifest(format_version=1)
    del m["checksum"]
    return m


def test_format_1_manifests_carry_no_checksum_and_format_2_must():
    validate_manifest(unsealed_v1(), "manifest")
    m = unsealed_v1()
    del m["codebook"]
    validate_manifest(m, "manifest")
    with pytest.raises(StoreError, match="manifest: checksum mismatch"):
        validate_manifest({**unsealed_v1(), "format_version": 2}, "manifest")
    with pytest.raises(StoreError, match="manifest: checksum mismatch"):
        validate_manifest({**unsealed_v1(), "checksum": "0" * 64}, "manifest")  # a v1 manifest with a bad seal
    with pytest.raises(
        StoreError, match=r"manifest: checksum mismatch.*re-copy the store \(edit stores with `seit store` commands\)$"
    ):
        validate_manifest({**manifest(), "num_samples": 20, "grid_shape": [16]}, "manifest")
    check_seal({"part": 0}, "record")  # no version and no checksum: written before checksums


def test_the_checksum_is_the_sha256_of_the_canonical_json_without_it():
    obj = {"b": [1, 2], "a": "é", "checksum": "ignored"}
    canonical = b'{"a":"\\u00e9","b":[1,2]}'  # sorted keys, no spaces, ASCII
    assert json_sha256(obj) == hashlib.sha256(canonical).hexdigest()
    assert sealed({"b": [1, 2], "a": "é"})["checksum"] == json_sha256(obj)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"format": "other"}, "not a seit token store manifest"),
        ({"format_version": 3}, "store format version 3, this seit reads up to 2"),
        ({"num_samples": 21}, "shards hold 20 samples, the manifest says 21"),
        ({"num_samples": True}, "invalid 'num_samples'"),
        ({"num_samples": -20}, "invalid 'num_samples'"),
        ({"num_samples": 20.0}, "invalid 'num_samples'"),
        ({"num_samples": lambda m: m.pop("num_samples")}, "missing or invalid 'num_samples'"),
        ({"grid_shape": []}, "grid_shape"),
        ({"grid_shape": [4, 0]}, "grid_shape"),
        ({"grid_shape": [4, True]}, "grid_shape"),
        ({"grid_shape": [4, 2.0]}, "grid_shape"),
        ({"grid_shape": [1 << 10, (1 << 10) + 1]}, "grid_shape"),
        ({"grid_shape": [1 << 32, 1 << 32]}, "grid_shape"),  # 2**64 tokens: no integer overflow to 0
        ({"grid_shape": "44"}, "invalid 'grid_shape'"),
        ({"codebook_size": 0}, "codebook_size 0 outside 1..65536"),
        ({"codebook_size": (1 << 16) + 1, "ids_dtype": "int32"}, "codebook_size 65537 outside"),
        ({"codebook_size": 40000}, "ids_dtype 'int16' does not match codebook size 40000"),
        ({"class_names": "ab"}, "class_names must be a list of strings"),
        ({"class_names": ["a", 1]}, "class_names"),
        ({"codebook": lambda m: m["codebook"].update(shape=[])}, "codebook shape"),
        ({"codebook": lambda m: m["codebook"].update(shape=[1, 2, 3])}, "codebook shape"),
        ({"codebook": lambda m: m["codebook"].update(shape=[3, -1])}, "codebook shape"),
        ({"codebook": lambda m: m["codebook"].update(shape=[3, 1.0])}, "codebook shape"),
        ({"codebook": lambda m: m["codebook"].update(file="../c.npy")}, "codebook: invalid file name"),
        ({"codebook": lambda m: m["codebook"].pop("dtype")}, "codebook: missing or invalid 'dtype'"),
        ({"synonyms": {"file": "s.npy"}}, "synonyms: missing or invalid"),
        ({"code_ids": []}, "code_ids: expected a JSON object"),
        ({"codecs": lambda m: m["codecs"][0].update(file="/etc/x")}, r"codecs\[0\]: invalid file name"),
        ({"codecs": lambda m: m["codecs"][0].pop("params")}, r"codecs\[0\]: missing or invalid 'params'"),
        ({"codecs": lambda m: m["codecs"][0].update(name=1)}, r"codecs\[0\]: missing or invalid 'name'"),
        ({"shards": lambda m: m["shards"][1].update(codec=1)}, r"shards\[1\] names codec 1, the manifest lists 1"),
        ({"shards": lambda m: m["shards"][1].update(file="a/b")}, r"shards\[1\]: invalid file name"),
        ({"shards": lambda m: m["shards"][0].pop("payload_bytes")}, r"shards\[0\]: missing or invalid"),
        ({"shards": lambda m: m["shards"][0].update(sha256=None)}, r"shards\[0\]: missing or invalid 'sha256'"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_field(changes, message):
    with pytest.raises(StoreError, match=f"manifest: .*{message}"):
        validate_manifest(manifest(**changes), "manifest")


@pytest.mark.parametrize("bad", [[], "x", None, 3])
def test_a_manifest_that_is_no_json_object_is_refused(bad):
    with pytest.raises(StoreError, match=f"manifest: expected a JSON object, found {type(bad).__name__}"):
        validate_manifest(bad, "manifest")


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"format": "seit-token-store"}, "not a seit writer record"),
        (
            {"format_version": 1},
            "older seit .*; finish it with that version, or delete the directory and start over$",
        ),
        ({"format_version": 3}, "store format version 3"),
        ({"complete": 0}, "invalid 'complete'"),
        ({"arrays": None}, "invalid 'arrays'"),
        ({"arrays": lambda r: r["arrays"].update(codebook={"file": "x"})}, "codebook: missing or invalid"),
        ({"created": lambda r: r["created"].pop("host")}, "created: missing or invalid 'host'"),
        ({"created": lambda r: r["created"].update(time=1)}, "created: missing or invalid 'time'"),
        ({"codec": {"name": "raw"}}, "codec: missing or invalid"),
        (
            {"codec": lambda r: r.update(codec={"name": "raw", "params": {}, "file": ".x", "sha256": "", "bytes": 0})},
            "codec: invalid file name",
        ),
        ({"grid_shape": [0]}, "grid_shape"),
        ({"shards": [{"file": "s.tok"}]}, r"shards\[0\]: missing or invalid"),
        ({"checksum": lambda r: None}, "checksum mismatch"),
    ],
)
def test_a_malformed_writer_record_is_refused_naming_the_field(changes, message):
    rec = record(**changes)
    if message == "checksum mismatch":
        rec["part"] = 1
    with pytest.raises(StoreError, match=f"record: .*{message}"):
        validate_record(rec, "record")


@pytest.mark.parametrize("bad", [[], None, {"format": "seit-token-store-part"}])
def test_what_is_no_writer_record_is_refused(bad):
    with pytest.raises(StoreError, match=r"record: (not a seit writer record|missing or invalid)"):
        validate_record(bad, "record")


def test_json_that_cannot_be_parsed_is_a_store_error():
    assert load_json(b'{"a": 1}', "manifest") == {"a": 1}
    for bad in [b"{", b"\xff\xfe{}", b"[" * 100000]:
        with pytest.raises(StoreError, match="manifest: not valid JSON"):
            load_json(bad, "manifest")
