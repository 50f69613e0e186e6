import collections
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seit.bench.tokens import TokenSetConfig, generate_tokens
from seit.store.codec import codec_class
from seit.store.errors import StoreError
from seit.store.neighbour_model import _WEIGHT, NeighbourModel, NeighbourTable, _quantise, _sweep


def test_large_codebooks_keep_tables_bounded():
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 65536, size=(2000, 32, 32))  # ~31 sightings of every left neighbour value
    model = NeighbourModel.fit(wide, 65536)
    assert model.upper is None  # pair scoring is for pruned codebooks only
    assert len(model.left.contexts) == 4096  # 65536 frequent neighbour values, capped
    assert model.table_bytes() < 3 << 20
    pair_grids = rng.integers(0, 1024, size=(300, 32, 32))
    pair = NeighbourModel.fit(pair_grids, 1024)
    assert pair.upper is not None
    # rows per neighbour capped so that rows x rows x 32 candidates fit 2**23 ids: isqrt(2**23 // 32) - 1 = 511
    seen = collections.Counter(pair_grids[:, :, :-1].ravel().tolist()) + collections.Counter({1024: 300 * 32})
    most = sorted(seen, key=lambda v: (-seen[v], v))[:511]
    np.testing.assert_array_equal(pair.left.contexts, most)
    assert len(pair.upper.contexts) == 511 and pair.table.size == 512 * 512 * 32
    assert pair.table_bytes() < 20 << 20
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


# ---------------------------------------------------------------------- the model against a plain re-statement
# Each function below re-states the module docstring's model with dicts and loops, slowly, on tiny grids; the
# fitted tables, the pair table and the symbols must equal it exactly (ties included: random tiny grids have
# many). The bounds are written out here, not imported: they decide what a stored model may hold.


def _ref_quantise(p):
    return np.clip(np.round(-8.0 * np.log2(np.maximum(np.asarray(p, dtype=np.float64), 1e-300))), 0, 255)


def _ref_table(ctx, x, k, list_size, max_rows, order0, p0):
    """(contexts, codes rows, probability rows) of one neighbour: row 0 the fallback, then frequent values."""
    seen = collections.Counter(ctx.ravel().tolist())
    follow = collections.Counter(zip(ctx.ravel().tolist(), x.ravel().tolist(), strict=True))
    rank0 = {c: r for r, c in enumerate(order0.tolist())}
    frequent = sorted((v for v, n in seen.items() if n >= 8), key=lambda v: (-seen[v], v))[:max_rows]
    codes = [order0[:list_size].tolist()]
    probs = [[p0[c] for c in codes[0]]]
    for v in frequent:
        after = sorted((c for (u, c) in follow if u == v), key=lambda c: (-follow[v, c], rank0[c]))[:list_size]
        after += [c for c in order0.tolist() if c not in after][: list_size - len(after)]
        codes.append(after)
        probs.append([(follow.get((v, c), 0) + 2.0 * p0[c]) / (seen[v] + 2.0) for c in after])
    return frequent, codes, probs


def _ref_scores(codes, q, w0):
    """Integer score of code c in one row: its weight if listed, else the row's leftover spread by w0."""
    listed = {c: int(_WEIGHT[int(qq)]) for c, qq in zip(codes, q, strict=True)}
    leftover = max((1 << 30) - sum(listed.values()), 0)
    return lambda c: listed[c] if c in listed else (leftover * int(w0[c])) >> 30


def _ref_pair(left_codes, left_q, upper_codes, upper_q, size, w0):
    out = {}
    for lr, (lc, lq) in enumerate(zip(left_codes, left_q, strict=True)):
        score_left = _ref_scores(lc, lq, w0)
        for ur, (uc, uq) in enumerate(zip(upper_codes, upper_q, strict=True)):
            score_upper = _ref_scores(uc, uq, w0)
            cands = list(lc) + list(uc)
            scored = [score_left(c) + score_upper(c) for c in cands]
            scored[len(lc) :] = [-1 if c in lc else s for c, s in zip(uc, scored[len(lc) :], strict=True)]
            best = sorted(range(len(cands)), key=lambda i: (-scored[i], i))[:size]
            out[lr, ur] = [cands[i] for i in best]
    return out


def _ref_model(grids, k, list_size, pair_size, pair):
    """Everything NeighbourModel.fit should hold, and the symbols forward() should give, re-stated."""
    x = np.asarray(grids, dtype=np.int64)
    n, rows, cols = x.shape
    counts0 = np.bincount(x.ravel(), minlength=k)
    order0 = np.array(sorted(range(k), key=lambda c: (-counts0[c], c)))
    p0 = (counts0 + 0.5) / (counts0.sum() + 0.5 * k)
    list_size = max(1, min(list_size, k))
    use_pair = pair and rows > 1 and k <= 1024 and pair_size > 0
    pair_size = min(pair_size, 2 * list_size, k) if use_pair else 0
    max_rows = min(4096, math.isqrt((1 << 23) // pair_size) - 1) if use_pair else 4096
    left_ctx = np.pad(x, ((0, 0), (0, 0), (1, 0)), constant_values=k)[:, :, :-1]
    upper_ctx = np.pad(x, ((0, 0), (1, 0), (0, 0)), constant_values=k)[:, :-1, :]
    tables = {"left": _ref_table(left_ctx, x, k, list_size, max_rows, order0, p0)}
    if use_pair:
        tables["upper"] = _ref_table(upper_ctx, x, k, list_size, max_rows, order0, p0)
    arrays = {"order0": order0, "q0": _ref_quantise(p0)}
    for name, (contexts, codes, probs) in tables.items():
        arrays |= {f"{name}_contexts": np.array(contexts), f"{name}_codes": np.array(codes)}
        arrays[f"{name}_q"] = _ref_quantise(probs)
    w0 = _WEIGHT[arrays["q0"].astype(np.int64)]
    row_of = {name: {v: r + 1 for r, v in enumerate(t[0])} for name, t in tables.items()}
    if use_pair:
        pair_table = _ref_pair(
            tables["left"][1], arrays["left_q"], tables["upper"][1], arrays["upper_q"], pair_size, w0
        )
    rank0 = {c: r for r, c in enumerate(order0.tolist())}
    width = pair_size if use_pair else list_size
    # decoding order: by anti-diagonals in pair mode (both neighbours come first), else by columns
    sweep = (lambda p: (p[0] + p[1], p[0])) if use_pair else (lambda p: (p[1], p[0]))
    positions = sorted(((i, j) for i in range(rows) for j in range(cols)), key=sweep)
    symbols = np.zeros((n, rows * cols), dtype=np.int64)
    for b in range(n):
        for s, (i, j) in enumerate(positions):
            left = row_of["left"].get(int(x[b, i, j - 1]) if j else k, 0)
            if use_pair:
                upper = row_of["upper"].get(int(x[b, i - 1, j]) if i else k, 0)
                cands = pair_table[left, upper]
            else:
                cands = tables["left"][1][left]
            code = int(x[b, i, j])
            symbols[b, s] = cands.index(code) if code in cands else width + rank0[code]
    return arrays, pair_size, width, symbols


def _tiny_grids(n, rows, cols, k, seed):
    """Random ids with some structure (runs along rows, a skewed overall frequency): many ties, many misses."""
    rng = np.random.default_rng(seed)
    base = rng.zipf(1.6, size=(n, rows, cols)) % k
    repeat = rng.random((n, rows, cols)) < 0.4
    base[:, :, 1:][repeat[:, :, 1:]] = base[:, :, :-1][repeat[:, :, 1:]]
    return base


@pytest.mark.parametrize(
    ("shape", "k", "list_size", "pair_size", "pair"),
    [
        ((40, 6, 7), 13, 4, 6, True),  # pair mode, 2-D
        ((40, 6, 7), 13, 4, 6, False),  # left only, asked for
        ((60, 1, 30), 11, 3, 5, True),  # one row: left only whatever was asked
        ((30, 5, 5), 9, 50, 50, True),  # list and pair sizes above the codebook: clamped to it
        ((30, 5, 5), 9, 3, 50, True),  # pair size above twice the list size: clamped to it
        ((30, 5, 5), 9, 0, 4, True),  # list size 0: one code per list
        ((30, 5, 5), 9, 3, 0, True),  # pair size 0: left only
        ((3, 4, 4), 40, 3, 4, True),  # few samples: most neighbour values are rare (fallback row)
        ((50, 2, 9), 12, 4, 6, True),  # two rows: the fewest that have upper neighbours
        ((40, 5, 6), 12, 4, 1, True),  # pair lists of one code
        ((0, 4, 4), 13, 4, 6, True),  # fitted on nothing: the fallback rows only (forward of the empty batch)
    ],
)
def test_fit_and_forward_equal_the_written_model(shape, k, list_size, pair_size, pair):
    grids = _tiny_grids(*shape, k, seed=k + list_size)
    model = NeighbourModel.fit(grids, k, list_size=list_size, pair_size=pair_size, pair=pair)
    want, want_pair_size, width, want_symbols = _ref_model(grids, k, list_size, pair_size, pair)
    got = model.arrays()
    assert sorted(got) == sorted(want)
    dtypes = {"order0": np.uint16, "q0": np.uint8, "contexts": np.uint32, "codes": np.uint16, "q": np.uint8}
    for name, value in got.items():
        assert value.dtype == dtypes[name.rsplit("_", 1)[-1]], name
        np.testing.assert_array_equal(value, want[name].reshape(value.shape), err_msg=name)
    assert (model.pair_size, model.width, model.list_size) == (want_pair_size, width, got["left_codes"].shape[1])
    assert model.alphabet == width + k
    symbols = model.forward(grids)
    np.testing.assert_array_equal(symbols, want_symbols)
    np.testing.assert_array_equal(model.inverse(symbols, *shape[1:]), grids)
    again = NeighbourModel.from_arrays(k, got, model.pair_size)
    np.testing.assert_array_equal(again.forward(grids), want_symbols)


def _damaged_states():
    """(name, change to a fitted pair-mode state of 13 codes, words of the one-line error)."""
    u16, u8, u32 = np.uint16, np.uint8, np.uint32
    not_perm = "order0 is not a permutation of the codebook"
    return [
        ("no order0", lambda a: a.pop("order0"), "'order0'"),
        ("no upper table", lambda a: a.pop("upper_q"), "'upper_q'"),
        ("order0 too short", lambda a: a.update(order0=a["order0"][:-1]), "order0/q0 shape"),
        ("q0 too long", lambda a: a.update(q0=np.append(a["q0"], u8(3))), "order0/q0 shape"),
        ("order0 int32", lambda a: a.update(order0=a["order0"].astype(np.int32)), "order0/q0 shape"),
        ("q0 uint16", lambda a: a.update(q0=a["q0"].astype(u16)), "order0/q0 shape"),
        ("order0 repeats", lambda a: a["order0"].__setitem__(1, a["order0"][0]), not_perm),
        ("order0 past k", lambda a: a["order0"].__setitem__(0, u16(13)), not_perm),
        ("contexts a column", lambda a: a.update(left_contexts=a["left_contexts"][:, None]), "left table shapes"),
        ("codes 3-D", lambda a: _reshape(a, "upper", (1, -1, 4)), "upper table shapes"),
        ("codes 1-D", lambda a: a.update(left_codes=a["left_codes"].ravel()), "left table shapes"),
        ("q narrower", lambda a: a.update(upper_q=a["upper_q"][:, :-1]), "upper table shapes"),
        ("upper lists shorter", lambda a: _widen(a, "upper", 3), "left and upper lists of different lengths"),
        ("a row short", lambda a: a.update(left_contexts=a["left_contexts"][:-1]), "left table shapes"),
        ("codes uint32", lambda a: a.update(left_codes=a["left_codes"].astype(u32)), "left table dtypes"),
        ("q uint16", lambda a: a.update(upper_q=a["upper_q"].astype(u16)), "upper table dtypes"),
        ("contexts uint16", lambda a: a.update(left_contexts=a["left_contexts"].astype(u16)), "left table dtypes"),
        ("a code past k", lambda a: a["upper_codes"].__setitem__((1, 0), u16(13)), "upper table sizes or codes"),
        ("lists wider than k", lambda a: _widen(a, "left", 14), "left table sizes or codes"),
        ("empty lists", lambda a: _widen(a, "left", 0), "left table sizes or codes"),
        ("a context past k + 1", lambda a: a["left_contexts"].__setitem__(0, u32(14)), "left contexts"),
        ("a context twice", lambda a: a["upper_contexts"].__setitem__(1, a["upper_contexts"][0]), "upper contexts"),
    ]


def _widen(arrays, name, width):
    rows = len(arrays[f"{name}_codes"])
    arrays[f"{name}_codes"] = np.resize(np.arange(13, dtype=np.uint16), (rows, width))
    arrays[f"{name}_q"] = np.zeros((rows, width), dtype=np.uint8)


def _reshape(arrays, name, shape):
    arrays[f"{name}_codes"] = arrays[f"{name}_codes"].reshape(shape)
    arrays[f"{name}_q"] = arrays[f"{name}_q"].reshape(shape)


def _tall(arrays, name, rows):
    width = arrays[f"{name}_codes"].shape[1]
    arrays[f"{name}_contexts"] = np.arange(rows - 1, dtype=np.uint32)
    arrays[f"{name}_codes"] = np.zeros((rows, width), dtype=np.uint16)
    arrays[f"{name}_q"] = np.zeros((rows, width), dtype=np.uint8)


@pytest.mark.parametrize(("damage", "words"), [d[1:] for d in _damaged_states()], ids=[d[0] for d in _damaged_states()])
def test_a_damaged_state_is_refused_naming_what_is_wrong(damage, words):
    model = NeighbourModel.fit(_tiny_grids(40, 6, 7, 13, seed=1), 13, list_size=4, pair_size=6)
    arrays = {name: value.copy() for name, value in model.arrays().items()}
    damage(arrays)
    with pytest.raises(StoreError) as caught:
        NeighbourModel.from_arrays(13, arrays, model.pair_size)
    assert str(caught.value) == f"codec state does not fit a codebook of 13 codes ({words}); the store is damaged"


def test_the_outside_value_k_is_a_context_like_any_other():
    """Column 0's left neighbour is the value K (outside the grid): a state may list it, one past it is refused."""
    model = NeighbourModel.fit(_tiny_grids(40, 6, 7, 13, seed=1), 13, list_size=4, pair_size=6)
    assert 13 in model.left.contexts.tolist() and 13 in model.upper.contexts.tolist()
    again = NeighbourModel.from_arrays(13, model.arrays(), model.pair_size)
    np.testing.assert_array_equal(again.table, model.table)


@pytest.mark.parametrize("pair_size", [0, 1, 6, 8])
def test_the_pair_size_of_a_state_is_bounded_by_its_lists(pair_size):
    """A pair list holds at most both neighbours' lists (2 x 4 codes here); a left-only state needs no upper table."""
    model = NeighbourModel.fit(_tiny_grids(40, 6, 7, 13, seed=1), 13, list_size=4, pair_size=6)
    again = NeighbourModel.from_arrays(13, model.arrays(), pair_size)
    assert (again.pair_size, again.width, again.upper is None) == (pair_size, pair_size or 4, pair_size == 0)
    with pytest.raises(StoreError, match=r"\(pair table size\)"):
        NeighbourModel.from_arrays(13, model.arrays(), 9)
    with pytest.raises(StoreError, match=r"\(pair table size\)"):
        NeighbourModel.from_arrays(13, model.arrays(), -1)
    left_only = {name: value for name, value in model.arrays().items() if not name.startswith("upper")}
    assert NeighbourModel.from_arrays(13, left_only, 0).upper is None


def test_the_row_bound_is_checked_on_load():
    """At most 4096 neighbour values own a row (plus the fallback row): a state with more is refused."""
    k = 5000  # above the pair limit: left neighbour only
    model = NeighbourModel.fit(_tiny_grids(4, 3, 5, k, seed=2), k, list_size=4)
    for rows, fits in ((4097, True), (4098, False)):
        arrays = model.arrays()
        _tall(arrays, "left", rows)
        if fits:
            assert len(NeighbourModel.from_arrays(k, arrays, 0).left.contexts) == 4096
        else:
            with pytest.raises(StoreError, match=r"\(left table sizes or codes\)"):
                NeighbourModel.from_arrays(k, arrays, 0)


def test_the_pair_table_bound_is_checked_on_load():
    """rows(left) x rows(upper) x pair size <= 2**23 ids, so a stored state cannot make a loader allocate more."""
    k = 1024
    model = NeighbourModel.fit(_tiny_grids(4, 3, 5, k, seed=2), k, list_size=4, pair_size=8)
    arrays = model.arrays()
    _tall(arrays, "left", 1024)
    _tall(arrays, "upper", 1024)
    assert NeighbourModel.from_arrays(k, arrays, 8).table.size == 1 << 23  # 1024 x 1024 x 8: the bound exactly
    _tall(arrays, "upper", 1025)
    with pytest.raises(StoreError, match=r"\(pair table size\)"):
        NeighbourModel.from_arrays(k, arrays, 8)


def test_fit_defaults_to_lists_of_32_codes():
    model = NeighbourModel.fit(_tiny_grids(20, 8, 8, 100, seed=3), 100)
    assert (model.list_size, model.pair_size) == (32, 32)


def test_row_scores_spread_the_leftover_mass_by_overall_weight():
    """A listed code scores its own weight; the others share what the list leaves of 2**30, by w0; a list
    whose weights reach 2**30 leaves nothing (never a negative score)."""
    table = NeighbourTable(
        np.array([5], dtype=np.uint32),
        np.array([[0, 1], [2, 3]], dtype=np.uint16),
        np.array([[8, 16], [0, 0]], np.uint8),
    )
    w0 = _WEIGHT[np.array([0, 8, 16, 24])]  # 2**30, 2**29, 2**28, 2**27
    np.testing.assert_array_equal(table.scores(w0), [[1 << 29, 1 << 28, 1 << 26, 1 << 25], [0, 0, 1 << 30, 1 << 30]])


def test_probabilities_quantise_to_eighths_of_a_bit_in_a_byte():
    p = np.array([1.0, 0.5, 2.0**-0.125, 2.0**-31.875, 2.0**-32, 2.0**-40, 0.0, 2.0])
    np.testing.assert_array_equal(_quantise(p), [0, 8, 1, 255, 255, 255, 255, 0])
    assert _quantise(p).dtype == np.uint8


def test_a_neighbour_value_seen_eight_times_gets_its_own_row():
    """Seen 8 times while fitting: a row of its own; 7 times: the fallback row."""
    k = 10
    seven = [[[3, 1]]] * 7 + [[[4, 2]]] * 8 + [[[0, 0]]] * 20
    model = NeighbourModel.fit(np.array(seven), k, list_size=2)
    assert model.upper is None  # one-row grids: left neighbour only
    assert sorted(model.left.contexts.tolist()) == [0, 4, k]  # 3 (7 times) has none; K = outside, 35 times


def test_ids_of_the_stores_in_memory_dtype_transform_as_int64():
    """The codec hands over ids as int16 up to 32768 codes, where the outside value K itself does not fit."""
    k = 1 << 15
    grids = _tiny_grids(6, 4, 8, k, seed=4)
    grids[0, 0, 0] = k - 1
    model = NeighbourModel.fit(grids, k, list_size=4)
    symbols = model.forward(grids.astype(np.int16))
    np.testing.assert_array_equal(symbols, model.forward(grids))
    np.testing.assert_array_equal(model.inverse(symbols, 4, 8), grids)


@pytest.mark.parametrize("pair", [True, False])
def test_symbols_past_the_list_decode_by_overall_rank(pair):
    """Symbol width + r is the code of overall rank r, whatever the neighbours: the first and last rank too."""
    model = NeighbourModel.fit(_tiny_grids(40, 6, 7, 13, seed=1), 13, list_size=4, pair_size=6, pair=pair)
    symbols = model.forward(_tiny_grids(2, 6, 7, 13, seed=5))
    position = 9  # a position of the sweep order, not the first one
    for rank in (0, 12):
        symbols[1, position] = model.width + rank
        ids = model.inverse(symbols, 6, 7).reshape(2, -1)
        sweep = _sweep(6, 7, pair)
        assert ids[1, sweep.order[position]] == model.order0[rank]
    symbols[1, position] = model.alphabet
    with pytest.raises(StoreError) as caught:
        model.inverse(symbols, 6, 7)
    assert str(caught.value) == f"symbol {model.alphabet} outside the alphabet of {model.alphabet} (corrupt)"


def test_table_bytes_count_every_table_held():
    model = NeighbourModel.fit(_tiny_grids(40, 6, 7, 13, seed=1), 13, list_size=4, pair_size=6)
    tables = model.table.nbytes + sum(a.nbytes for a in model.arrays().values()) - model.order0.nbytes - model.q0.nbytes
    # + left and upper row bases, rank and order of every code (int64 each)
    assert model.table_bytes() == tables + 2 * 14 * 8 + 2 * 13 * 8


def test_a_crafted_state_derives_the_written_pair_table():
    """The pair table is derived when a store is opened, so a reader must derive what the writer did from
    any valid state, also one fitting never makes: extreme probabilities (weight 0 at q = 255, the whole
    mass at q = 0), a code listed by both neighbours, codes no list holds."""
    k, rng = 9, np.random.default_rng(6)
    arrays = {"order0": rng.permutation(k).astype(np.uint16), "q0": rng.choice([0, 3, 40, 255], k).astype(np.uint8)}
    for name in ("left", "upper"):
        arrays[f"{name}_contexts"] = np.array([0, 4, k], dtype=np.uint32)
        arrays[f"{name}_codes"] = np.array([rng.choice(k, 3, replace=False) for _ in range(4)], dtype=np.uint16)
        arrays[f"{name}_q"] = rng.choice([0, 8, 100, 250, 255], (4, 3)).astype(np.uint8)
    model = NeighbourModel.from_arrays(k, arrays, 6)
    w0 = _WEIGHT[arrays["q0"].astype(np.int64)]
    want = _ref_pair(
        arrays["left_codes"].tolist(), arrays["left_q"], arrays["upper_codes"].tolist(), arrays["upper_q"], 6, w0
    )
    assert model.table.reshape(4, 4, 6).tolist() == [[want[lr, ur] for ur in range(4)] for lr in range(4)]


EDGE_VALUES = (0, 1, 12, 13, 14, 1 << 15, (1 << 16) - 1)  # around K = 13, and the edges of the dtypes


@st.composite
def forged(draw, arrays: dict) -> dict:
    """1-3 changes that keep every array a well-formed npy array: one cut short or grown along an axis, a
    neighbour's lists cut to another length (codes and q together: they must agree), re-typed, given or
    stripped of an axis, a value set to an edge of the codebook or of its dtype, or dropped."""
    out = dict(arrays)
    for _ in range(draw(st.integers(1, 3))):
        if not out:
            break
        name = draw(st.sampled_from(sorted(out)))
        a = out[name]
        kind = draw(st.sampled_from(["cut", "grow", "lists", "dtype", "axis", "value", "drop"]))
        if kind == "drop":
            del out[name]
        elif kind == "dtype":
            out[name] = a.astype(draw(st.sampled_from([np.uint8, np.uint16, np.uint32, np.int64, np.float32])))
        elif kind == "axis":
            out[name] = a[None] if draw(st.booleans()) else a.reshape(-1)
        elif kind == "lists":
            parts = [p for p in (f"{name.split('_')[0]}_codes", f"{name.split('_')[0]}_q") if p in out]
            keep = draw(st.integers(1, 8))
            for p in parts:
                out[p] = out[p][..., :keep].copy()
        elif a.size and kind in ("cut", "grow"):
            axis = draw(st.integers(0, a.ndim - 1))
            n = a.shape[axis]
            size = draw(st.integers(0, n - 1)) if kind == "cut" else n + draw(st.integers(1, 3))
            out[name] = np.take(a, np.arange(size) % n, axis=axis)
        elif a.size:
            flat = a.ravel().copy()
            flat[draw(st.integers(0, flat.size - 1))] = np.array(draw(st.sampled_from(EDGE_VALUES))).astype(a.dtype)
            out[name] = flat.reshape(a.shape)
    return out


FITTED = NeighbourModel.fit(_tiny_grids(40, 6, 7, 13, seed=1), 13, list_size=4, pair_size=6)


@given(data=st.data(), pair_size=st.sampled_from([0, 1, 6, 8, 9]))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_a_forged_state_of_well_formed_arrays_loads_and_decodes_or_is_refused(data, pair_size):
    """A store's state passes its checksum when forged: whatever its arrays hold, loading either refuses it with
    the store's error or gives a model that decodes any symbol of its alphabet to ids of the codebook."""
    arrays = data.draw(forged(FITTED.arrays()), label="arrays")
    try:
        model = NeighbourModel.from_arrays(13, arrays, pair_size)
    except StoreError:
        return
    symbols = np.random.default_rng(0).integers(0, model.alphabet, size=(3, 42))
    ids = model.inverse(symbols, 6, 7)
    assert ids.shape == (3, 6, 7) and ids.min() >= 0 and ids.max() < 13
