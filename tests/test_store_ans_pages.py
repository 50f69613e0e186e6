"""AnsPages on its own (pcodec groups of pages with a CRC per sample): tiny inputs, a few milliseconds each."""

import zlib

import numpy as np
import pytest

from seit.store import ans_pages
from seit.store.ans_pages import AnsPages, GroupedBlob
from seit.store.errors import StoreError


def group(pages, seed, batch=3, high=50):
    symbols = np.random.default_rng(seed).integers(0, high, size=(batch, pages.numel))
    return symbols, pages.encode_group(symbols)


def forged(header, page):
    """A body whose CRC is right for ``page`` under ``header``: what a careful forger (or a bug) would write."""
    return GroupedBlob(header, zlib.crc32(page, zlib.crc32(header)).to_bytes(4, "little") + page)


def test_groups_roundtrip_in_any_order_and_share_one_header():
    pages = AnsPages(numel=16, alphabet=50)
    (a, blobs_a), (b, blobs_b) = group(pages, 0), group(pages, 1)
    assert all(blob.header is blobs_a[0].header for blob in blobs_a)
    mixed = [blobs_b[2], blobs_a[0], blobs_b[0], blobs_a[2]]
    out = pages.decode_many(mixed)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, np.stack([b[2], a[0], b[0], a[2]]))


@pytest.mark.parametrize("alphabet, dtype", [(1 << 16, np.uint16), ((1 << 16) + 1, np.uint32)])
def test_wide_alphabets_decode_as_uint32(alphabet, dtype):
    pages = AnsPages(numel=8, alphabet=alphabet)
    symbols, blobs = group(pages, 2, high=alphabet)
    symbols[0, 0] = alphabet - 1
    blobs = pages.encode_group(symbols)
    out = AnsPages(numel=8, alphabet=alphabet).decode_many(blobs)  # a fresh reader: no shared state
    assert pages.dtype == out.dtype == dtype
    np.testing.assert_array_equal(out, symbols)


def test_level_bounds_and_default_are_exact():
    assert AnsPages(4, 10).level == 8  # the level is recorded in the codec's params
    assert AnsPages(4, 10, level=0).level == 0 and AnsPages(4, 10, level=12).level == 12
    for level in (-1, 13):
        with pytest.raises(StoreError, match=rf"^pcodec compression level {level} outside 0..12$"):
            AnsPages(4, 10, level=level)
    symbols = np.tile(np.arange(64) % 7, (2, 1))
    for level in (0, 12):
        pages = AnsPages(64, 10, level=level)
        np.testing.assert_array_equal(pages.decode_many(pages.encode_group(symbols)), symbols)


def test_damaged_samples_and_headers_are_named():
    pages = AnsPages(numel=16, alphabet=50)
    _, blobs = group(pages, 0)
    _, other = group(pages, 1, high=5)  # other bins: another header
    header, body = blobs[1]
    cases = {
        r"^sample 1 of the batch has no group header \(the shard's group table is damaged\)$": [blobs[0], bytes(body)],
        r"^sample 1 of the batch has no group header": [blobs[0], (header, body, b"")],
        r"^sample 1 of the batch is corrupt or truncated \(checksum mismatch\)$": [blobs[0], (header, body[:-1])],
        r"^sample 0 of the batch is corrupt or truncated \(checksum mismatch\)$": [(header, body[:3])],
        r"^sample 0 of the batch is corrupt or truncated \(checksum mismatch\)": [(other[0].header, body)],
        r"^sample 0 of the batch has a damaged group header \(": [(header[:-1], body)],
        r"^sample 0 of the batch has a damaged group header \(1 trailing bytes\)$": [(header + b"\0", body)],
        r"^sample 0 of the batch cannot be decoded \(": [forged(header, b"")],
    }
    assert other[0].header != header  # the CRC covers the header too: a body under another group's header fails
    for message, batch in cases.items():
        with pytest.raises(StoreError, match=message):
            AnsPages(numel=16, alphabet=50).decode_many(batch)
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 1
    with pytest.raises(StoreError, match="checksum mismatch"):
        pages.decode_many([(header, bytes(flipped))])


def test_decoder_cache_is_reused_and_bounded(monkeypatch):
    monkeypatch.setattr(ans_pages, "_MAX_DECODERS", 2)
    pages = AnsPages(numel=4, alphabet=10)
    groups = [group(pages, seed, batch=1, high=10) for seed in range(3)]
    for i, cached in zip([0, 1, 0, 2], [1, 2, 2, 1], strict=True):  # a known header is reused; a full cache cleared
        symbols, blobs = groups[i]
        np.testing.assert_array_equal(pages.decode_many(blobs), symbols)
        assert len(pages._decoders) == cached


# A group of two 8-symbol samples (multiples of 7, two ramps) as this seit writes it: classic mode, no delta
# (pcodec's automatic choice would code these as multiples or as deltas). Stores in the wild hold such bytes.
PINNED_SYMBOLS = np.stack([np.arange(8) * 7, np.arange(8) * 14])
PINNED_HEADER = bytes.fromhex("020401001000000038")
PINNED_BODIES = [bytes.fromhex("739f27128083a3c219a962"), bytes.fromhex("dfefa74e000747853352c5")]


def test_encoding_is_pinned_and_levels_take_effect():
    pages = AnsPages(numel=8, alphabet=1000)
    blobs = pages.encode_group(PINNED_SYMBOLS)
    assert [(bytes(b.header), bytes(b.body)) for b in blobs] == [(PINNED_HEADER, body) for body in PINNED_BODIES]
    pinned = [GroupedBlob(PINNED_HEADER, body) for body in PINNED_BODIES]
    np.testing.assert_array_equal(AnsPages(numel=8, alphabet=1000).decode_many(pinned), PINNED_SYMBOLS)
    symbols = np.random.default_rng(0).integers(0, 300, size=(4, 64))
    fast, small = AnsPages(64, 300, level=0).encode_group(symbols), AnsPages(64, 300, level=12).encode_group(symbols)
    assert fast != small
