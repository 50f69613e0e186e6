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
