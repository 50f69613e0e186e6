import fsspec
import numpy as np
import pytest
import torch

import seit.store.files
from seit.store import ElasticBatchSampler, TokenStore, TokenStream
from seit.store.files import StoreFiles
from store_util import indices_of, make_samples, write_store

N, B = 203, 8


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "s"
    write_store(path, N, shard_bytes=1000, codec="ctx-ans")  # the default codec: grouped samples, split groups
    return path


def stream_batches(stream, workers=2, steps=None):
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
    out = []
    for ids, labels in loader:
        out.append((indices_of(ids).tolist(), labels))
        if steps is not None and len(out) == steps:
            break
    return out


@pytest.mark.parametrize("shuffle", ["global", "chunk", "none"])
def test_stream_equals_the_sampler_on_two_ranks_two_workers(store, shuffle):
    _, labels, _ = make_samples(N)
    seen = []
    for rank in range(2):
        kwargs = dict(seed=2, epoch=1, rank=rank, world_size=2, shuffle=shuffle, drop_last=False, chunk_size=32)
        stream = TokenStream(store, B, **kwargs)
        got = stream_batches(stream)
        expected = list(ElasticBatchSampler(N, B, **kwargs))
        assert [g for g, _ in got] == expected and len(stream) == len(expected)  # same batches, in order
        for g, batch_labels in got:
            np.testing.assert_array_equal(batch_labels, labels[g])
        seen += [i for g, _ in got for i in g]
    assert sorted(seen) == list(range(N))


@pytest.mark.parametrize("shuffle", ["global", "chunk"])
def test_stream_resumes_mid_epoch_on_three_ranks(store, shuffle):
    seen, steps = [], 4
    for rank in range(2):
        stream = TokenStream(store, B, seed=9, rank=rank, world_size=2, shuffle=shuffle, drop_last=False, chunk_size=32)
        seen += [i for g, _ in stream_batches(stream, steps=steps) for i in g]
    state = stream.state_dict(steps)
    for rank in range(3):
        stream = TokenStream(store, 6, rank=rank, world_size=3, shuffle=shuffle, drop_last=False, chunk_size=32)
        stream.load_state_dict(state)
        seen += [i for g, _ in stream_batches(stream) for i in g]
    assert sorted(seen) == list(range(N))


@pytest.fixture
def remote(store):
    fs = fsspec.filesystem("memory")
    fs.put(str(store), "/stream-store", recursive=True)
    yield "memory://stream-store"
    fs.rm("/stream-store", recursive=True)


def test_stream_from_an_fsspec_url_equals_local(store, remote):
    kwargs = dict(seed=4, shuffle="chunk", chunk_size=48, drop_last=False)
    local = stream_batches(TokenStream(store, B, **kwargs), workers=0)
    far = stream_batches(TokenStream(remote, B, verify=True, **kwargs), workers=0)
    assert [g for g, _ in far] == [g for g, _ in local]


def test_each_rank_reads_only_its_byte_ranges(store, remote, monkeypatch):
    monkeypatch.setattr(seit.store.files, "REMOTE_MAX_GAP", 0)
    reads = []
    original = StoreFiles.read_ranges

    def recording(self, name, starts, ends):
        reads.extend((name, s, e) for s, e in zip(starts, ends))
        return original(self, name, starts, ends)

    monkeypatch.setattr(StoreFiles, "read_ranges", recording)
    local = TokenStore.open(store)
    payload = {s["file"]: s["payload_bytes"] for s in local.manifest["shards"]}
    total = sum(payload.values())
    for rank in range(2):
        reads.clear()
        stream = TokenStream(remote, B, rank=rank, world_size=2, shuffle="none", drop_last=False)
        mine = [i for g, _ in stream_batches(stream, workers=0) for i in g]
        sample_bytes = sum(len(b.body) for b in local.read_blobs(mine))  # grouped codec: (header, body)
        payload_read = sum(e - s for name, s, e in reads if s < payload[name])
        assert payload_read == sample_bytes < 0.6 * total
