import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest

from seit.bench.tokens import TokenSetConfig, generate_tokens
from seit.store.ans_pages import GroupedBlob
from seit.store.codec import CODECS, DEFAULT_CODEC, RawCodec, codec_class, encoded_bytes, ids_dtype
from seit.store.errors import StoreError
from seit.store.zstd_frames import ZstdFrames

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"
SHAPES = [((32, 32), 391), ((1024,), 391), ((1, 1), 2), ((8, 8), 65536), ((8, 8), 256), ((4, 5), 7), ((2, 3, 4), 300)]
SHAPES += [((16, 16), 600), ((6, 7), 2), ((3, 9), 1)]


def correlated(n, shape, k, seed=0):
    """Blocky grids (runs of equal ids along the last axis) with 20% iid noise: neighbours are predictive."""
    rng = np.random.default_rng(seed)
    cols = shape[-1]
    base = rng.integers(0, k, size=(n, *shape[:-1], (cols + 2) // 3))
    grids = np.repeat(base, 3, axis=-1)[..., :cols]
    noise = rng.random(grids.shape) < 0.2
    grids[noise] = rng.integers(0, k, size=int(noise.sum()))
    return grids


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize("shape,k", SHAPES)
def test_every_codec_roundtrips_any_grid_and_codebook(name, shape, k):
    fit = correlated(40, shape, k, seed=1)
    new = correlated(12, shape, k, seed=2)
    new[0] = k - 1  # extremes of the id range, whatever the fit saw
    new[1] = 0
    codec = codec_class(name).fit(fit, shape, k)
    for samples in (fit, new):
        blobs = codec.encode_many(samples)
        singles = [codec.encode(s) for s in samples[:3]]
        np.testing.assert_array_equal(codec.decode_many(singles), samples[:3])
        if not codec.group_size:  # a per-sample codec's bytes do not depend on the rest of the batch
            assert singles == blobs[:3]
        back = codec.decode_many(blobs)
        np.testing.assert_array_equal(back, samples)
        assert back.dtype == (np.int16 if k <= 32768 else np.int32) and back.shape == (len(samples), *shape)
        np.testing.assert_array_equal(codec.decode(blobs[0]), samples[0])


@pytest.mark.parametrize("name", sorted(CODECS))
def test_codec_fitted_on_unlike_data_stays_lossless(name):
    k = 391
    fit = np.zeros((30, 32, 32), dtype=np.int64)  # one code only
    fit[:, ::2] = 7
    unlike = np.random.default_rng(3).integers(0, k, size=(8, 32, 32))  # iid over the whole codebook
    codec = codec_class(name).fit(fit, (32, 32), k)
    np.testing.assert_array_equal(codec.decode_many(codec.encode_many(unlike)), unlike)


@pytest.mark.parametrize("name", sorted(CODECS))
def test_params_and_state_reload_to_the_same_codec(name):
    samples, _ = generate_tokens(TokenSetConfig(samples=300, seed=5))
    codec = codec_class(name).fit(samples[:200], (32, 32), 391)
    blobs = codec.encode_many(samples[200:])
    params = codec.params()
    assert pickle.loads(pickle.dumps(params)) == params  # JSON-like
    loaded = codec_class(name).load((32, 32), 391, params, codec.state())
    np.testing.assert_array_equal(loaded.decode_many(blobs), samples[200:])
    assert loaded.encode_many(samples[200:]) == blobs  # same tables, same bytes
    assert codec_class(name).fit(samples[:200], (32, 32), 391).state() == codec.state()  # reproducible stores
    worker = pickle.loads(pickle.dumps(loaded))  # DataLoader workers get codecs by pickling
    np.testing.assert_array_equal(worker.decode_many(blobs[::-1]), samples[200:][::-1])


def _flipped(blob, pos, bit):
    body = bytearray(blob.body if isinstance(blob, GroupedBlob) else blob)
    body[pos] ^= 1 << bit
    return GroupedBlob(blob.header, bytes(body)) if isinstance(blob, GroupedBlob) else bytes(body)


def _cut(blob, size):
    return GroupedBlob(blob.header, blob.body[:size]) if isinstance(blob, GroupedBlob) else blob[:size]


@pytest.mark.parametrize("name", sorted(CODECS))
def test_corrupt_bytes_never_decode_to_wrong_tokens(name):
    samples = correlated(60, (8, 8), 391, seed=4)
    codec = codec_class(name).fit(samples[:50], (8, 8), 391)
    blobs = codec.encode_many(samples[50:])
    raised = flips = 0
    for i in (0, 1):
        size = len(blobs[i].body if isinstance(blobs[i], GroupedBlob) else blobs[i])
        for pos in range(size):
            for bit in range(8):
                flips += 1
                try:
                    out = codec.decode_many([blobs[2], _flipped(blobs[i], pos, bit)])
                except StoreError as e:
                    assert "sample 1 of the batch" in str(e)
                    raised += 1
                else:  # a flip zstd proves harmless (e.g. in the window size) must still give the true ids
                    np.testing.assert_array_equal(out[1], samples[50 + i])
        for cut in range(size):
            with pytest.raises(StoreError):
                codec.decode(_cut(blobs[i], cut))
    assert raised > 0.9 * flips
    with pytest.raises(StoreError):
        codec.decode(bytes(np.random.default_rng(0).integers(0, 256, size=100, dtype=np.uint8)))


def test_grouped_codec_shares_one_header_per_group_and_checks_it():
    samples = correlated(50, (8, 8), 391, seed=5)
    codec = codec_class("ctx-ans").fit(samples, (8, 8), 391, group=20)
    blobs = codec.encode_many(samples)
    assert [len({id(b.header) for b in blobs[s : s + 20]}) for s in (0, 20, 40)] == [1, 1, 1]
    assert len({b.header for b in blobs}) == 3  # groups of 20, 20 and 10
    header = blobs[0].header
    assert encoded_bytes(blobs) == sum(len(b.body) for b in blobs) + sum(len(b.header) for b in blobs[::20])
    for pos in range(len(header)):  # a damaged header fails every sample of its group, never decodes wrongly
        bad = bytearray(header)
        bad[pos] ^= 0x10
        with pytest.raises(StoreError, match="sample 1 of the batch"):
            codec.decode_many([blobs[25], GroupedBlob(bytes(bad), blobs[3].body)])
    with pytest.raises(StoreError, match="no group header"):
        codec.decode_many([blobs[0].body])
    # pages of one group decode with any other sample of any group, in any order
    np.testing.assert_array_equal(codec.decode_many(blobs[::-3]), samples[::-3])


def test_ctx_codecs_beat_raw_and_plain_zstd_on_correlated_tokens():
    samples, _ = generate_tokens(TokenSetConfig(samples=600, seed=7))
    fit, held = samples[:300], samples[300:]
    sizes, states = {}, {}
    for name in ("raw", "zstd", "ctx", "ctx-ans"):
        codec = codec_class(name).fit(fit, (32, 32), 391)
        sizes[name], states[name] = encoded_bytes(codec.encode_many(held)), len(codec.state())
    assert sizes["ctx"] + states["ctx"] < 0.5 * sizes["raw"]
    assert sizes["ctx"] < 0.96 * sizes["zstd"]  # the neighbour model adds to what zstd alone finds
    assert sizes["ctx-ans"] < 0.96 * sizes["ctx"]  # tANS pages cost less than zstd frames on the same ranks


def test_ctx_codec_roundtrips_the_reference_release_tokens():
    expected = np.load(TOKENS / "tiny-expected.npz")
    train, val = expected["train_grids"], expected["val_grids"]
    codec = codec_class(DEFAULT_CODEC).fit(train, (32, 32), 391)
    np.testing.assert_array_equal(codec.decode_many(codec.encode_many(val)), val)


def test_codec_errors_name_the_problem():
    samples = correlated(20, (4, 4), 50)
    with pytest.raises(StoreError, match="no option"):
        codec_class("ctx").fit(samples, (4, 4), 50, bogus=1)
    with pytest.raises(StoreError, match="neighbours"):
        codec_class("ctx").fit(samples, (4, 4), 50, neighbours="diagonal")
    with pytest.raises(StoreError, match="unknown codec"):
        codec_class("lz4")
    codec = codec_class("ctx").fit(samples, (4, 4), 50)
    with pytest.raises(StoreError, match="version"):
        codec_class("ctx").load((4, 4), 50, codec.params() | {"version": 99}, codec.state())
    with pytest.raises(StoreError, match="damaged"):
        codec_class("ctx").load((4, 4), 50, codec.params(), codec.state()[:-3])
    with pytest.raises(StoreError, match="damaged"):
        codec_class("ctx").load((4, 4), 40, codec.params(), codec.state())  # state of another codebook
    with pytest.raises(StoreError, match="grid shape"):
        codec.encode(np.zeros((4, 5), dtype=int))
    with pytest.raises(StoreError, match="outside the codebook"):
        codec.encode(np.full((4, 4), 50))


def test_raw_codec_rejects_bad_samples():
    codec = RawCodec((2, 2), 10)
    with pytest.raises(StoreError, match="grid shape"):
        codec.encode(np.zeros((3, 2), dtype=int))
    with pytest.raises(StoreError, match="outside the codebook"):
        codec.encode(np.full((2, 2), 10))
    with pytest.raises(StoreError, match="expects 8"):
        codec.decode_many([b"\x00" * 3])


@pytest.mark.parametrize("name", sorted(CODECS))
def test_decode_reads_memoryviews_of_a_shared_buffer_and_empty_batches(name):
    samples = correlated(20, (8, 8), 391)
    codec = codec_class(name).fit(samples, (8, 8), 391)
    blobs = codec.encode_many(samples)
    bodies = [b.body if isinstance(b, GroupedBlob) else b for b in blobs]
    shard = memoryview(b"".join(bodies))  # what a reader slices out of a memory-mapped shard
    ends = np.cumsum([len(b) for b in bodies])
    views = [shard[e - len(b) : e] for b, e in zip(bodies, ends)]
    if codec.group_size:
        views = [GroupedBlob(bytes(b.header), v) for b, v in zip(blobs, views)]
    np.testing.assert_array_equal(codec.decode_many(views[::-1]), samples[::-1])
    assert codec.decode_many([]).shape == (0, 8, 8)


# ---- each codec's edges, called directly (the mutation pass's tests for store/codec.py) ---------------------------
def test_ids_are_int16_while_every_id_fits():
    assert [ids_dtype(k) for k in (1, 1 << 15, (1 << 15) + 1, 1 << 16)] == [np.int16, np.int16, np.int32, np.int32]


@pytest.mark.parametrize("k", [1, 65536])
def test_codebook_sizes_at_the_limits_are_accepted(k):
    codec = RawCodec((2, 2), k)
    ids = np.full((2, 2), k - 1)
    np.testing.assert_array_equal(codec.decode(codec.encode(ids)), ids)
    assert codec.numel == 4 and codec.grid_shape == (2, 2)


@pytest.mark.parametrize("name", sorted(CODECS))
def test_codec_settings_outside_their_range_are_refused(name):
    cls = codec_class(name)
    samples = correlated(20, (4, 4), 50)
    with pytest.raises(StoreError, match=r"^codebook size 0 outside 1\.\.65536$"):
        cls.fit(samples[:, :0], (4, 4), 0)
    with pytest.raises(StoreError, match=r"^codebook size 65537 outside 1\.\.65536$"):
        cls.fit(samples, (4, 4), 65537)
    with pytest.raises(StoreError, match=r"^grid shape \(4, 0\) has an empty dimension$"):
        cls.fit(samples[:, :, :0], (4, 0), 50)
    with pytest.raises(StoreError, match=rf"^codec '{name}' has no option\(s\) \['bogus', 'x'\]; see `help\("):
        cls.fit(samples, (4, 4), 50, x=1, bogus=2)
    with pytest.raises(StoreError, match=rf"^codec '{name}' has no option\(s\) \['bogus'\]"):
        cls.check_options({"bogus": 1})
    known = {"zstd": {"level": 3}, "ctx": {"list_size": 8, "level": 3}, "ctx-ans": {"group": 4, "level": 2}}
    cls.check_options(known.get(name, {}))


def test_samples_are_checked_before_encoding():
    codec = RawCodec((2, 2), 10)
    ok = codec.check_many(np.array([[[0, 9], [3, 4]]], dtype=np.uint8))
    assert ok.dtype == np.int64 and ok.flags.c_contiguous and ok.tolist() == [[[0, 9], [3, 4]]]
    assert codec.check_many(np.zeros((0, 2, 2), dtype=np.int32)).shape == (0, 2, 2)
    cases = [
        (np.zeros((1, 2, 3), int), r"^sample has grid shape \(2, 3\), the store holds \(2, 2\)$"),
        (np.zeros((1, 2, 2), float), r"^token ids must be integers, got dtype float64$"),
        (np.zeros((1, 2, 2), bool), r"^token ids must be integers, got dtype bool$"),
        (np.array([[[0, 10], [1, 2]]]), r"^sample has ids in \[0, 10\], outside the codebook of size 10$"),
        (np.array([[[-1, 3], [1, 2]]]), r"^sample has ids in \[-1, 3\], outside the codebook of size 10$"),
    ]
    for samples, message in cases:
        with pytest.raises(StoreError, match=message):
            codec.check_many(samples)
    with pytest.raises(StoreError, match="grid shape"):
        codec.check(np.zeros((2,), int))


@pytest.mark.parametrize("k,width", [(2, 1), (256, 1), (257, 2), (65536, 2)])
def test_raw_samples_are_a_crc_then_one_or_two_bytes_an_id(k, width):
    codec = RawCodec((3,), k)
    ids = np.array([0, 1, k - 1])
    blob = codec.encode(ids)
    data = ids.astype("<u2" if width == 2 else np.uint8).tobytes()
    assert blob == zlib.crc32(data).to_bytes(4, "little") + data
    assert codec.params() == {"crc32": True} and codec.state() == b""
    assert RawCodec.load((3,), k, {}, b"").encode(ids) == data  # format 1: no CRC
    assert RawCodec.load((3,), k, {"crc32": 1}, b"").encode(ids) == data  # only a JSON true turns it on
    assert RawCodec.load((3,), k, {"crc32": True}, b"").encode(ids) == blob


def test_raw_decoding_checks_size_crc_and_range():
    codec = RawCodec((2,), 300)
    good = codec.encode(np.array([5, 299]))
    np.testing.assert_array_equal(codec.decode_many([good, memoryview(good)]), [[5, 299], [5, 299]])
    with pytest.raises(StoreError, match=r"^sample 1 of the batch has 7 bytes, raw codec expects 8$"):
        codec.decode_many([good, good[:-1]])
    with pytest.raises(StoreError, match=r"^sample 1 of the batch is corrupt \(checksum mismatch\)$"):
        codec.decode_many([good, good[:4] + bytes([good[4] ^ 1]) + good[5:]])
    data = np.array([5, 300], "<u2").tobytes()
    with pytest.raises(StoreError, match=r"^raw sample holds id 300, outside the codebook of size 300$"):
        codec.decode_many([zlib.crc32(data).to_bytes(4, "little") + data])
    plain = RawCodec((2,), 300, crc32=False)
    np.testing.assert_array_equal(plain.decode(np.array([7, 0], "<u2").tobytes()), [7, 0])
    assert plain.decode_many([]).shape == (0, 2)


def test_default_options_are_the_documented_ones():
    samples = correlated(40, (4, 4), 50)
    assert codec_class("zstd").fit(samples, (4, 4), 50).params() == {"level": 19}
    assert codec_class("ctx").fit(samples, (4, 4), 50).params() == {
        "version": 1,
        "neighbours": "pair",
        "list_size": 32,
        "pair_size": 32,
        "level": 19,
    }
    assert codec_class("ctx-ans").fit(samples, (4, 4), 50).params() == {
        "version": 1,
        "neighbours": "pair",
        "list_size": 48,
        "pair_size": 48,
        "group": 4096,
        "level": 8,
    }
    assert codec_class("zstd").fit(samples, (4, 4), 50, level=5).params() == {"level": 5}
    assert codec_class("ctx-ans").fit(samples, (4, 4), 50, level=2).params()["level"] == 2
    left = codec_class("ctx").fit(samples, (4, 4), 50, neighbours="left", list_size=5, level=3)
    assert left.params() == {"version": 1, "neighbours": "left", "list_size": 5, "pair_size": 0, "level": 3}
    assert DEFAULT_CODEC == "ctx-ans"


@pytest.mark.parametrize("name", ["zstd", "ctx", "ctx-ans"])
def test_a_codec_reloads_from_its_params_with_the_defaults_for_missing_ones(name):
    samples = correlated(40, (4, 4), 50)
    options = {"zstd": {"level": 5}, "ctx": {"level": 5, "list_size": 6}, "ctx-ans": {"level": 3, "group": 7}}[name]
    codec = codec_class(name).fit(samples, (4, 4), 50, **options)
    loaded = codec_class(name).load((4, 4), 50, codec.params(), codec.state())
    assert loaded.params() == codec.params() and loaded.encode_many(samples) == codec.encode_many(samples)
    assert type(loaded.params()["level"]) is int
    if name != "ctx-ans":  # ctx-ans must name its group and level
        params = {k: v for k, v in codec.params().items() if k != "level"}
        assert codec_class(name).load((4, 4), 50, params, codec.state()).params()["level"] == 19
    else:
        for key in ("group", "level"):
            with pytest.raises(KeyError):
                codec_class(name).load((4, 4), 50, {k: v for k, v in codec.params().items() if k != key}, codec.state())


def test_zstd_codec_dictionary_is_its_state():
    samples = correlated(60, (8, 8), 300)
    codec = codec_class("zstd").fit(samples, (8, 8), 300, dict_size=512)
    assert 0 < len(codec.state()) <= 512
    assert codec_class("zstd").fit(samples, (8, 8), 300, dict_size=0).state() == b""
    reloaded = codec_class("zstd").load((8, 8), 300, {"level": 19}, codec.state())
    np.testing.assert_array_equal(reloaded.decode_many(codec.encode_many(samples)), samples)
    with pytest.raises(StoreError):  # frames primed with a dictionary need it
        codec_class("zstd").load((8, 8), 300, {"level": 19}, b"").decode_many(codec.encode_many(samples[:1]))


def test_ctx_ans_groups_split_a_batch_at_the_group_size():
    samples = correlated(30, (4, 4), 50)
    codec = codec_class("ctx-ans").fit(samples, (4, 4), 50, group=7)
    blobs = codec.encode_many(samples)
    headers = [b.header for b in blobs]
    assert codec.group_size == 7 and [len({id(h) for h in headers[s : s + 7]}) for s in range(0, 30, 7)] == [1] * 5
    assert len({id(h) for h in headers}) == 5
    np.testing.assert_array_equal(codec.decode_many(blobs), samples)
    np.testing.assert_array_equal(codec.decode(codec.encode(samples[3])), samples[3])
    with pytest.raises(StoreError, match=r"^ctx-ans codec: group must be >= 1, got 0$"):
        codec_class("ctx-ans").fit(samples, (4, 4), 50, group=0)
    assert codec_class("ctx-ans").fit(samples, (4, 4), 50, group=1).group_size == 1


def test_neighbour_codecs_transform_more_than_64_samples_and_none():
    samples = correlated(150, (3, 5), 40)
    for name in ("ctx", "ctx-ans"):
        codec = codec_class(name).fit(samples[:20], (3, 5), 40)
        np.testing.assert_array_equal(codec.decode_many(codec.encode_many(samples)), samples)
        assert codec.encode_many(samples[:0]) == [] and codec.decode_many([]).shape == (0, 3, 5)


def test_neighbour_codec_state_errors_name_the_codec():
    samples = correlated(20, (4, 4), 50)
    codec = codec_class("ctx-ans").fit(samples, (4, 4), 50)
    with pytest.raises(StoreError, match=r"^ctx-ans codec version 2 is not supported \(this seit reads version 1\)"):
        codec_class("ctx-ans").load((4, 4), 50, codec.params() | {"version": 2}, codec.state())
    with pytest.raises(StoreError, match=r"^ctx-ans codec version None is not supported"):
        codec_class("ctx-ans").load((4, 4), 50, {}, codec.state())
    with pytest.raises(
        StoreError, match=r"^ctx-ans codec state is unreadable \(.*\); the store's codec file is damaged$"
    ):
        codec_class("ctx-ans").load((4, 4), 50, codec.params(), b"\x04" + codec.state()[1:-2])
    with pytest.raises(StoreError, match=r"^ctx codec: neighbours must be 'pair' or 'left', got 'up'$"):
        codec_class("ctx").fit(samples, (4, 4), 50, neighbours="up")


def test_encoded_bytes_count_each_group_header_once():
    header = b"h" * 10
    blobs = [GroupedBlob(header, b"ab"), GroupedBlob(header, b"c"), GroupedBlob(b"x" * 3, b""), b"plain"]
    assert encoded_bytes(blobs) == 2 + 1 + 0 + 5 + 10 + 3
    assert encoded_bytes([]) == 0


def test_unknown_codec_names_list_the_known_ones():
    with pytest.raises(StoreError, match=r"^unknown codec 'lz4'; known: \['ctx', 'ctx-ans', 'raw', 'zstd'\]$"):
        codec_class("lz4")
    assert {name: codec_class(name).name for name in CODECS} == {n: n for n in ("raw", "zstd", "ctx", "ctx-ans")}


def test_trained_dictionaries_have_the_asked_size_and_travel_in_the_state():
    samples = correlated(200, (16, 16), 300)  # ~100 kB of plain ids, ~50 kB of ranks: enough to train 4 kB
    assert len(codec_class("zstd").fit(samples, (16, 16), 300).state()) == 4096
    assert len(codec_class("ctx").fit(samples, (16, 16), 300).frames.dictionary) == 4096
    codec = codec_class("ctx").fit(samples, (16, 16), 300, dict_size=300)  # not a multiple of 8 bytes
    loaded = codec_class("ctx").load((16, 16), 300, codec.params(), codec.state())
    assert len(codec.frames.dictionary) == 300 and loaded.frames.dictionary == codec.frames.dictionary
    np.testing.assert_array_equal(loaded.decode_many(codec.encode_many(samples[:5])), samples[:5])


def test_neighbour_codecs_see_any_grid_as_rows_of_its_last_axis():
    samples = correlated(30, (2, 3, 4), 50)
    for name in ("ctx", "ctx-ans"):
        grid3 = codec_class(name).fit(samples, (2, 3, 4), 50)
        assert grid3.state() == codec_class(name).fit(samples.reshape(30, 6, 4), (6, 4), 50).state()


def test_a_left_neighbour_codec_loads_without_a_pair_size():
    samples = correlated(30, (4, 4), 50)
    codec = codec_class("ctx").fit(samples, (4, 4), 50, neighbours="left")
    params = {k: v for k, v in codec.params().items() if k != "pair_size"}
    loaded = codec_class("ctx").load((4, 4), 50, params, codec.state())
    np.testing.assert_array_equal(loaded.decode_many(codec.encode_many(samples)), samples)


def test_a_state_that_is_no_npz_archive_is_named():
    codec = codec_class("ctx").fit(correlated(20, (4, 4), 50), (4, 4), 50)
    state = ZstdFrames(level=19).compress(b"not an archive")
    with pytest.raises(StoreError, match=r"^ctx codec state is unreadable \(state: not a valid \.npz archive"):
        codec_class("ctx").load((4, 4), 50, codec.params(), state)
