import numpy as np
import pytest

from seit.store import EpochOrder, GlobalBatches, StoreError
from seit.store.order import shuffle_mode


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


# Found by the mutation pass (scripts/mutation.sh, docs/mutation.md): the order is part of the resume contract.
@pytest.mark.parametrize(
    ("mode", "pinned"),
    [
        ("global", [6, 2, 9, 8, 3, 10, 4, 1, 12, 11, 7, 0, 5]),
        ("chunk", [4, 6, 7, 5, 0, 3, 1, 2, 12, 10, 9, 11, 8]),
        ("none", list(range(13))),
    ],
)
def test_the_epoch_order_is_pinned_so_a_checkpoint_resumes_across_versions(mode, pinned):
    """A checkpoint stores only (seed, epoch, position): another release drawing another order from the same
    triple would repeat and skip samples on resume. Every stream's seed words are pinned here."""
    order = EpochOrder(13, seed=8, epoch=2, shuffle=mode, chunk_size=4)
    got = order.take(0, 13)
    assert got.dtype == np.int64 and got.tolist() == pinned
    assert order.take(4, 9).dtype == np.int64  # also a window inside chunks
    assert EpochOrder(13, shuffle=mode, chunk_size=4).take(0, 13).tolist() == (
        EpochOrder(13, seed=0, epoch=0, shuffle=mode, chunk_size=4).take(0, 13).tolist()
    )  # the defaults: seed 0, epoch 0


def test_empty_windows_and_the_smallest_valid_settings():
    order = EpochOrder(10, seed=1, shuffle="chunk", chunk_size=1)  # chunk 1: a global shuffle of runs of one
    assert sorted(order.take(0, 10).tolist()) == list(range(10))
    for a, b in [(3, 3), (5, 2), (10, 12)]:
        empty = order.take(a, b)
        assert empty.shape == (0,) and empty.dtype == np.int64
    assert len(EpochOrder(0)) == 0 and EpochOrder(0).take(0, 5).shape == (0,)
    plan = GlobalBatches(5, 1, seed=2, world_size=1)
    assert len(plan) == 5 and plan.batch(4).shape == (1,)


@pytest.mark.parametrize(
    "bad",
    [dict(num_samples=-1), dict(seed=-1), dict(epoch=-1), dict(chunk_size=0)],
)
def test_each_bad_order_setting_is_refused_alone(bad):
    args = {"num_samples": 10, **bad}
    with pytest.raises(StoreError, match="EpochOrder needs num_samples, seed, epoch >= 0 and chunk_size >= 1"):
        EpochOrder(args.pop("num_samples"), **args)


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(world_size=0), dict(rank=2, world_size=2)])
def test_each_bad_batch_setting_is_refused_alone(bad):
    args = {"batch_size": 4, **bad}
    with pytest.raises(StoreError, match="need batch_size >= 1 and 0 <= rank < world_size"):
        GlobalBatches(10, args.pop("batch_size"), **args)


def test_global_batches_defaults_and_bounds():
    plan = GlobalBatches(10, 3)  # seed 0, epoch 0, global shuffle, drop_last
    assert len(plan) == 3 and plan.batch(0).tolist() == EpochOrder(10, seed=0).take(0, 3).tolist()
    plan = GlobalBatches(10, 3, shuffle="none")
    assert plan.batch(1).tolist() == [3, 4, 5]  # the shuffle mode reaches the order
    chunked = GlobalBatches(10, 10, seed=1, shuffle="chunk", chunk_size=2)
    assert chunked.batch(0).tolist() == EpochOrder(10, seed=1, shuffle="chunk", chunk_size=2).take(0, 10).tolist()
    with pytest.raises(IndexError, match=r"batch 3 outside 0\.\.2"):
        GlobalBatches(10, 3, shuffle="none").bounds(3)
    plan.set_epoch(1, 10)  # resuming at the very end of an epoch: nothing left, not an error
    assert len(plan) == 0 and plan.seed == 0  # no seed given: the plan keeps its own
    with pytest.raises(StoreError, match=r"start 11 outside 0\.\.10"):
        plan.set_epoch(1, 11)
    assert plan.position_after(0) == 10 and GlobalBatches(10, 3, start=4).position_after(0) == 4
    plan.set_epoch(2)  # a new epoch starts at its beginning
    assert (plan.epoch, plan.start, len(plan)) == (2, 0, 3)


def test_samplers_follow_their_plan(tmp_path):
    from seit.store import ElasticBatchSampler

    sampler = ElasticBatchSampler(12, 2, seed=3, world_size=2, rank=1)
    sampler.set_epoch(1)
    assert (sampler.plan.epoch, sampler.plan.start) == (1, 0)
    sampler.set_epoch(2, 4)
    assert sampler.plan.epoch == 2 and sampler.plan.start == 4 and len(sampler) == 2
    assert sampler.position_after(1) == 8
    state = sampler.state_dict(1)
    assert (state["epoch"], state["position"]) == (2, 8)
    assert sampler.state_dict()["position"] == 4  # default: no steps done in this segment
    other = GlobalBatches(12, 2)
    with pytest.raises(StoreError, match=r"resume with the same data$"):
        GlobalBatches(13, 2).load_state_dict(other.state_dict())
    with pytest.raises(StoreError, match="resume with the same shuffle settings"):
        GlobalBatches(12, 2, shuffle="none").load_state_dict(other.state_dict())
    assert other.state_dict(steps=0) == other.state_dict()
    assert shuffle_mode(True) == "global" and shuffle_mode(False) == "none" and shuffle_mode("chunk") == "chunk"
