import pickle

import numpy as np
import pytest
import torch

from seit.store import ElasticBatchSampler, EvalBatchSampler, StoreError, TokenDataset, collate
from store_util import indices_of, make_samples, write_store

N, B = 203, 8


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("sampler") / "s"
    write_store(path, N, shard_bytes=1000)
    return path


def load(store, sampler, workers=2):
    loader = torch.utils.data.DataLoader(
        TokenDataset(store), batch_sampler=sampler, num_workers=workers, collate_fn=collate
    )
    return list(loader)


@pytest.mark.parametrize("drop_last", [False, True])
def test_two_ranks_two_workers_are_disjoint_and_complete(store, drop_last):
    _, labels, _ = make_samples(N)
    seen = []
    for rank in range(2):
        sampler = ElasticBatchSampler(N, B, seed=7, epoch=3, rank=rank, world_size=2, drop_last=drop_last)
        batches = load(store, sampler)
        assert len(batches) == len(sampler)
        for (ids, batch_labels), expected in zip(batches, sampler):
            assert ids.dtype == torch.int16 and batch_labels.dtype == torch.int64 and ids.shape[1:] == (4, 4)
            np.testing.assert_array_equal(indices_of(ids), expected)
            np.testing.assert_array_equal(batch_labels, labels[expected])
            seen += expected
    assert len(seen) == len(set(seen))
    assert len(seen) == (N if not drop_last else N // (2 * B) * 2 * B)


def test_resume_mid_epoch_on_three_ranks_sees_every_sample_once(store):
    seen, steps = [], 5
    for rank in range(2):
        sampler = ElasticBatchSampler(N, B, seed=1, epoch=4, rank=rank, world_size=2, drop_last=False)
        batches = load(store, sampler)[:steps]  # the job stops after 5 steps
        seen += [i for ids, _ in batches for i in indices_of(ids).tolist()]
    state = sampler.state_dict(steps)
    assert state["position"] == steps * 2 * B
    for rank in range(3):  # restarted on 3 ranks with another per-rank batch size
        sampler = ElasticBatchSampler(N, 5, rank=rank, world_size=3, drop_last=False)
        sampler.load_state_dict(state)
        seen += [i for ids, _ in load(store, sampler, workers=0) for i in indices_of(ids).tolist()]
    assert sorted(seen) == list(range(N))


def test_eval_sampler_counts_each_sample_once():
    batches = [b for r in range(3) for b in EvalBatchSampler(N, B, rank=r, world_size=3)]
    assert sorted(i for b in batches for i in b) == list(range(N))
    assert len(EvalBatchSampler(N, B, rank=2, world_size=3)) == -(-len(range(2, N, 3)) // B)


def test_dataset_items_and_pickling(store):
    ids, labels, _ = make_samples(N)
    ds = TokenDataset(store)
    one, label = ds[17]
    np.testing.assert_array_equal(one, ids[17])
    assert label == labels[17] and len(ds) == N
    _ = ds.__getitems__([0, 150])  # opens shards and memory maps
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._store is None and len(pickle.dumps(ds)) < 2000
    np.testing.assert_array_equal(clone.__getitems__([150, 0])[0], ids[[150, 0]])


def test_step_batches_are_an_endless_resumable_stream_split_over_ranks():
    from seit.store import EpochOrder, StepBatchSampler

    whole = list(StepBatchSampler(10, 3, start=0, stop=15, seed=3))
    flat = [i for batch in whole for i in batch]
    assert all(len(b) == 3 for b in whole)  # full batches: step 3 spans the end of epoch 0 and epoch 1's start
    assert flat[:10] == EpochOrder(10, seed=3, epoch=0).take(0, 10).tolist()  # the epoch orders of seit.store
    assert flat[10:20] == EpochOrder(10, seed=3, epoch=1).take(0, 10).tolist() and flat[:10] != flat[10:20]
    assert list(StepBatchSampler(10, 3, start=7, stop=15, seed=3)) == whole[7:]  # resume at any step
    ranks = [list(StepBatchSampler(10, 1, start=0, stop=15, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert [b for triple in zip(*ranks) for b in triple] == [[i] for i in flat[:45]]  # ranks interleave
    tiny = list(StepBatchSampler(2, 4, start=0, stop=2, seed=1, rank=1, world_size=2))  # fewer than one batch
    assert len(tiny) == 2 and all(len(b) == 4 and set(b) == {0, 1} for b in tiny)
    assert len(StepBatchSampler(10, 3, start=5, stop=4)) == 0
    with pytest.raises(StoreError, match="rank 2, world 2"):
        StepBatchSampler(10, 3, start=0, stop=1, rank=2, world_size=2)
