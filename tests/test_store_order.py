import numpy as np
import pytest

from seit.store import EpochOrder, GlobalBatches, StoreError


def reference_batches(order, batch_size, world_size, rank, start, drop_last):
    """Rank ``rank``'s batches, written out with plain list slicing."""
    rest, step, out = list(order[start:]), batch_size * world_size, []
    for lo in range(0, len(rest), step):
        chunk = rest[lo : lo + step]
        if len(chunk) == step:
            out.append(chunk[rank * batch_size : (rank + 1) * batch_size])
        elif not drop_last:
            sizes = [len(chunk) // world_size + (r < len(chunk) % world_size) for r in range(world_size)]
            out.append(chunk[sum(sizes[:rank]) : sum(sizes[: rank + 1])])
    return out


@pytest.mark.parametrize("mode", ["global", "chunk", "none"])
def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch(mode):
    n = 1003
    order = EpochOrder(n, seed=3, epoch=1, shuffle=mode, chunk_size=64).take(0, n)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    rng = np.random.default_rng(0)
    for a in rng.integers(0, n, 5):  # any window of a fresh order equals the same slice of the whole
        b = a + int(rng.integers(0, 300))
        np.testing.assert_array_equal(
            EpochOrder(n, seed=3, epoch=1, shuffle=mode, chunk_size=64).take(a, b), order[a:b]
        )
    again = EpochOrder(n, seed=3, epoch=1, shuffle=mode, chunk_size=64).take(0, n)
    other = EpochOrder(n, seed=3, epoch=2, shuffle=mode, chunk_size=64).take(0, n)
    np.testing.assert_array_equal(again, order)
    assert (mode == "none") == np.array_equal(other, order)
    assert (mode == "none") == np.array_equal(order, np.arange(n))


def test_chunk_shuffle_reads_each_chunk_as_one_run():
    n, c = 1003, 64
    order = EpochOrder(n, seed=0, epoch=0, shuffle="chunk", chunk_size=c).take(0, n)
    chunk_of = order // c
    runs = 1 + np.count_nonzero(np.diff(chunk_of))
    assert runs == -(-n // c)  # every chunk appears as exactly one contiguous run
    assert not np.array_equal(chunk_of, np.sort(chunk_of))  # chunks are permuted
    assert any(not np.array_equal(order[chunk_of == k], np.sort(order[chunk_of == k])) for k in range(5))


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("world_size,start", [(1, 0), (2, 0), (3, 17), (4, 95)])
def test_global_batches_match_the_reference_slicing(drop_last, world_size, start):
    n, b = 101, 4
    order = EpochOrder(n, seed=5, epoch=2).take(0, n)
    seen = []
    for rank in range(world_size):
        plan = GlobalBatches(n, b, seed=5, epoch=2, start=start, rank=rank, world_size=world_size, drop_last=drop_last)
        batches = [plan.batch(g).tolist() for g in range(len(plan))]
        assert batches == reference_batches(order, b, world_size, rank, start, drop_last)
        seen += [i for batch in batches for i in batch]
    if not drop_last:
        assert sorted(seen) == sorted(order[start:].tolist())
    else:
        assert len(seen) == len(set(seen)) == (n - start) // (b * world_size) * b * world_size


def test_position_and_state():
    plan = GlobalBatches(100, 8, seed=1, world_size=2)
    assert plan.position_after(3) == 48 and plan.position_after(99) == 100
    state = plan.state_dict(steps=2)
    assert state["position"] == 32
    other = GlobalBatches(100, 5, world_size=3, rank=2)
    other.load_state_dict(state)
    assert (other.seed, other.epoch, other.start) == (1, 0, 32)
    with pytest.raises(StoreError, match="for 100 samples, this dataset has 99"):
        GlobalBatches(99, 8).load_state_dict(state)
    with pytest.raises(StoreError, match="same shuffle settings"):
        GlobalBatches(100, 8, shuffle="chunk").load_state_dict(state)
    with pytest.raises(StoreError, match="rank < world_size"):
        GlobalBatches(100, 8, rank=2, world_size=2)
    with pytest.raises(StoreError, match="shuffle 'random'"):
        GlobalBatches(100, 8, shuffle="random")


def within_chunk_orders(n, c, **kw):
    """Each chunk's samples in the order the epoch reads them, as offsets inside the chunk."""
    order = EpochOrder(n, shuffle="chunk", chunk_size=c, **kw).take(0, n)
    return {k: (order[order // c == k] - k * c).tolist() for k in range(-(-n // c))}


def test_the_order_inside_each_chunk_changes_with_the_epoch_and_the_seed():
    n, c = 1003, 64
    base = within_chunk_orders(n, c, seed=3, epoch=1)
    for chunk, offsets in base.items():
        assert sorted(offsets) == list(range(min(c, n - chunk * c)))  # a permutation of the chunk
    for other in (within_chunk_orders(n, c, seed=3, epoch=2), within_chunk_orders(n, c, seed=4, epoch=1)):
        assert all(other[k] != base[k] for k in base)  # every chunk of >= 43 samples is reshuffled
    assert within_chunk_orders(n, c, seed=3, epoch=1) == base


def test_a_saved_chunk_order_resumes_only_with_the_same_chunk_size():
    state = GlobalBatches(1000, 8, shuffle="chunk", chunk_size=64).state_dict(steps=3)
    with pytest.raises(StoreError, match=r"chunk 64\), this reader 'chunk' \(chunk 32\)"):
        GlobalBatches(1000, 8, shuffle="chunk", chunk_size=32).load_state_dict(state)
    same = GlobalBatches(1000, 4, shuffle="chunk", chunk_size=64, world_size=2)
    same.load_state_dict(state)
    assert same.start == 24
    # the global order does not depend on the chunk size when it is not chunked
    GlobalBatches(1000, 8, chunk_size=32).load_state_dict(GlobalBatches(1000, 8, chunk_size=64).state_dict())
