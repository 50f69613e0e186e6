import pickle
from pathlib import Path

import numpy as np
import pytest

from seit.bench.tokens import TokenSetConfig, generate_tokens
from seit.store.ans_pages import GroupedBlob
from seit.store.codec import CODECS, DEFAULT_CODEC, RawCodec, codec_class, encoded_bytes
from seit.store.errors import StoreError

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
