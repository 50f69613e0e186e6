from pathlib import Path

import numpy as np
import pytest

from seit.interop.seit_release import encode_stream
from seit.store.errors import StoreError
from seit.store.symbols import SymbolBytes

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"


@pytest.mark.parametrize("alphabet", [1, 2, 256, 257, 391, 510, 511, 65536, 65600])
def test_symbol_bytes_roundtrip_every_alphabet(alphabet):
    layout = SymbolBytes(alphabet)
    rng = np.random.default_rng(alphabet)
    symbols = rng.integers(0, alphabet, size=(5, 37))
    symbols[0] = alphabet - 1
    chunks = [layout.pack(s) for s in symbols]
    assert all(len(c) <= layout.max_bytes(37) for c in chunks)
    np.testing.assert_array_equal(layout.unpack(chunks, 37), symbols)
    with pytest.raises(StoreError, match="sample 1"):
        layout.unpack([chunks[0], chunks[1][:-1]], 37)


def test_escape_form_holds_the_seit_release_bytes_reordered():
    grids = np.load(TOKENS / "tiny-expected.npz")["train_grids"][:4]
    layout = SymbolBytes(391)
    for grid in grids:
        ours, release = layout.pack(grid), encode_stream([grid])[0]
        assert sorted(ours) == sorted(release)  # same bytes: 255-escapes, remainders after the symbols
        np.testing.assert_array_equal(np.frombuffer(ours[:1024], np.uint8), np.minimum(grid.ravel(), 255))


@pytest.mark.parametrize(
    "alphabet, bytes_per_symbol, bytes_per_zero, dtype",
    [(255, 1, 1, np.int16), (256, 1, 1, np.int16), (257, 2, 1, np.int16), (510, 2, 1, np.int16),
     (511, 2, 2, np.int16), (32768, 2, 2, np.int16), (32769, 2, 2, np.int32), (65536, 2, 2, np.int32),
     (65537, 3, 3, np.int32)],
)  # fmt: skip
def test_form_boundaries_sizes_and_dtypes_are_exact(alphabet, bytes_per_symbol, bytes_per_zero, dtype):
    layout = SymbolBytes(alphabet)
    assert layout.max_bytes(10) == bytes_per_symbol * 10
    assert len(layout.pack(np.zeros(10, np.int64))) == bytes_per_zero * 10  # escapes cost only the symbols >= 255
    symbols = np.full((2, 10), alphabet - 1)
    chunks = [layout.pack(s) for s in symbols]
    assert [len(c) for c in chunks] == [bytes_per_symbol * 10] * 2  # the largest symbol takes the most bytes
    out = layout.unpack(chunks, 10)
    assert out.dtype == layout.dtype == dtype
    np.testing.assert_array_equal(out, symbols)


def test_bad_samples_are_named_exactly():
    with pytest.raises(ValueError, match="alphabet size must be positive, got 0"):
        SymbolBytes(0)
    plain = SymbolBytes(1000)
    with pytest.raises(StoreError, match=r"^sample 1 of the batch holds 19 bytes of symbols, expected 20$"):
        plain.unpack([plain.pack(np.zeros(10)), plain.pack(np.zeros(10))[:-1]], 10)
    escaped = SymbolBytes(391)
    chunk = escaped.pack(np.full(10, 300))
    with pytest.raises(StoreError, match=r"^sample 1 of the batch has 10 escaped symbols but 9 remainder bytes$"):
        escaped.unpack([chunk, chunk[:-1]], 10)
    small = SymbolBytes(200)  # a byte equal to the alphabet size is one past the largest symbol
    with pytest.raises(StoreError, match=r"^symbol 200 outside the alphabet of 200 \(corrupt sample\)$"):
        small.unpack([bytes([199, 200])], 2)
    assert small.unpack([bytes([199, 0])], 2).tolist() == [[199, 0]]
