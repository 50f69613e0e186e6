import numpy as np
import pytest

from seit.bench.tokens import TokenSetConfig, generate_tokens
from seit.store.codec import codec_class
from seit.store.errors import StoreError
from seit.store.neighbour_model import _WEIGHT, MAX_ROWS, PAIR_TABLE_ENTRIES, NeighbourModel


def test_large_codebooks_keep_tables_bounded():
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 65536, size=(2000, 32, 32))  # ~31 sightings of every left neighbour value
    model = NeighbourModel.fit(wide, 65536)
    assert model.upper is None  # pair scoring is for pruned codebooks only
    assert len(model.left.contexts) == MAX_ROWS  # 65536 frequent neighbour values, capped
    assert model.table_bytes() < 3 << 20
    pair = NeighbourModel.fit(rng.integers(0, 1024, size=(300, 32, 32)), 1024)
    assert pair.upper is not None
    assert pair.table.size <= PAIR_TABLE_ENTRIES and pair.table_bytes() < 20 << 20
    codec = codec_class("ctx").fit(wide[:50], (32, 32), 65536)
    np.testing.assert_array_equal(codec.decode_many(codec.encode_many(wide[50:54])), wide[50:54])


def test_neighbour_ranks_are_small_where_neighbours_predict():
    grids = np.repeat(np.arange(40)[:, None, None] * 7 % 391, 32 * 32).reshape(40, 32, 32)  # flat images
    grids[:, 16:] = (grids[:, 16:] + 100) % 391
    model = NeighbourModel.fit(grids, 391)
    symbols = model.forward(grids)
    assert (symbols == 0).mean() > 0.95
    np.testing.assert_array_equal(model.inverse(symbols, 32, 32), grids)
    symbols[3, 500] = model.alphabet  # one past the last symbol: an error, never a wrong or clipped id
    with pytest.raises(StoreError, match="outside the alphabet"):
        model.inverse(symbols, 32, 32)


def test_pair_table_is_a_pure_function_of_the_state():
    samples, _ = generate_tokens(TokenSetConfig(samples=100, seed=2))
    model = NeighbourModel.fit(samples, 391)
    again = NeighbourModel.from_arrays(391, model.arrays(), model.pair_size)
    np.testing.assert_array_equal(again.table, model.table)
    arrays = model.arrays() | {"left_codes": model.left.codes[:, :-1].copy()}
    with pytest.raises(StoreError, match="damaged"):
        NeighbourModel.from_arrays(391, arrays, model.pair_size)


def test_integer_probability_weights_follow_their_definition():

    exact = np.round(2.0 ** (30 - np.arange(8) / 8))
    np.testing.assert_array_equal(_WEIGHT[:8], exact)
    np.testing.assert_allclose(_WEIGHT[:120] / 2.0 ** (30 - np.arange(120) / 8), 1, rtol=1e-4, atol=0)
