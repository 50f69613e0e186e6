"""Data larger than every internal batch, group and shard size, round-tripped exactly.

The release reader and the store's batch iterator work in batches of 4,096 samples, the default codec in
groups of 4,096, the store writer fits its codec on the first ``fit_samples``: 10,007 samples of 4x4 grids
cross each of these boundaries (and dozens of shard boundaries) in a few seconds.
"""

import gzip
import io

import numpy as np
import pytest

from seit.cli import main
from seit.interop.seit_release import SeitReleaseDataset, encode_stream, read_index
from seit.store import StoreWriter, TokenStore, TokenStream

N, GRID, CODES = 10_007, (4, 4), 510  # ids 255..509 take two bytes in the release stream


@pytest.fixture(scope="module")
def grids():
    rng = np.random.default_rng(17)
    ids = rng.integers(0, CODES, size=(N, *GRID))
    # runs of one code and the largest ids make samples of very different lengths in every codec
    ids[::7] = rng.integers(0, CODES, size=(len(ids[::7]), 1, 1))
    ids[::11, 0, 0] = CODES - 1
    labels = rng.integers(0, 1000, size=N)
    return ids, labels


@pytest.fixture(scope="module")
def release(grids, tmp_path_factory):
    """The SeiT release layout of ``grids``, written as the release writes it (gzip'd stream, index, labels)."""
    ids, labels = grids
    root = tmp_path_factory.mktemp("release")
    data, offsets = encode_stream(ids)
    (root / "big-token.data.bin.gz").write_bytes(gzip.compress(data, mtime=0))
    npy = io.BytesIO()
    np.save(npy, offsets, allow_pickle=False)
    (root / "big-token.index.npy.gz").write_bytes(gzip.compress(npy.getvalue(), mtime=0))
    (root / "big-label.txt").write_text("".join(f"{c}\n" for c in labels))
    return root / "big"


def test_release_files_round_trip_exactly_through_import_and_export(grids, release, tmp_path):
    ids, labels = grids
    store_dir = tmp_path / "store"
    args = ["store", "import-seit", str(store_dir), "--prefix", str(release), "--grid", "4", "4"]
    shard = ["--shard-mb", str(8_000 / (1 << 20))]  # ~8 kB: dozens of shards
    assert main([*args, "--codebook-size", str(CODES), *shard]) == 0
    store = TokenStore.open(store_dir)
    assert len(store) == N and store.num_shards > 10
    got_ids, got_labels = store.get_batch(range(N))
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got_labels, labels)
    assert [store.key(i) for i in (0, 4095, 4096, N - 1)] == ["0", "4095", "4096", str(N - 1)]

    assert main(["store", "export-seit", str(store_dir), str(tmp_path / "out" / "big")]) == 0
    for suffix in ("-token.data.bin.gz", "-token.index.npy.gz"):  # byte for byte, decompressed
        written = gzip.decompress((tmp_path / "out" / f"big{suffix}").read_bytes())
        assert written == gzip.decompress(release.with_name(f"big{suffix}").read_bytes()), suffix
    assert (tmp_path / "out" / "big-label.txt").read_bytes() == release.with_name("big-label.txt").read_bytes()
    index = read_index(tmp_path / "out" / "big-token.index.npy.gz")
    assert len(index) == N + 1 and np.all(np.diff(index) > 0)


@pytest.mark.parametrize(
    "codec, options",
    [("ctx-ans", {"group": 1000}), ("ctx-ans", {}), ("ctx", {}), ("zstd", {}), ("raw", {})],
)
def test_store_writer_and_reader_round_trip_beyond_every_batch_group_and_shard(grids, tmp_path, codec, options):
    ids, labels = grids
    keys = [f"k{i}" for i in range(N)]
    with StoreWriter(
        tmp_path / "s",
        grid_shape=GRID,
        codebook_size=CODES,
        shard_bytes=8_000,
        codec=codec,
        codec_options=options,
        fit_samples=1500,
    ) as writer:
        for lo in range(0, N, 3001):  # append batches that straddle groups and shards
            writer.append_batch(ids[lo : lo + 3001], labels[lo : lo + 3001], keys[lo : lo + 3001])
    store = TokenStore.open(tmp_path / "s")
    assert len(store) == N and store.num_shards > 10
    seen = 0
    for idx, got, got_labels in store.iter_batches():
        np.testing.assert_array_equal(got, ids[idx])
        np.testing.assert_array_equal(got_labels, labels[idx])
        seen += len(idx)
    assert seen == N
    pick = np.random.default_rng(3).permutation(N)[:2000]  # random access across shards and groups
    got, got_labels = store.get_batch(pick)
    np.testing.assert_array_equal(got, ids[pick])
    np.testing.assert_array_equal(got_labels, labels[pick])
    assert [store.key(i) for i in (0, 999, 1000, 4096, N - 1)] == [keys[i] for i in (0, 999, 1000, 4096, N - 1)]


def test_release_files_read_directly_give_every_sample(grids, release):
    ids, labels = grids
    dataset = SeitReleaseDataset(
        release.with_name("big-token.data.bin.gz"), labels=release.with_name("big-label.txt"), grid_shape=GRID
    )
    assert len(dataset) == N
    pick = np.random.default_rng(4).permutation(N)[:3000]
    got, got_labels = dataset.__getitems__(pick)
    np.testing.assert_array_equal(got.numpy(), ids[pick])
    np.testing.assert_array_equal(got_labels.numpy(), labels[pick])


def test_streaming_two_ranks_read_every_sample_once_across_shards_and_chunks(grids, tmp_path):
    ids, labels = grids
    with StoreWriter(tmp_path / "s", grid_shape=GRID, codebook_size=CODES, shard_bytes=8_000) as writer:
        writer.append_batch(ids, labels, [str(i) for i in range(N)])
    seen = []
    for rank in range(2):
        stream = TokenStream(tmp_path / "s", 64, seed=1, rank=rank, world_size=2, shuffle="chunk", chunk_size=1000)
        for batch, (got, got_labels) in zip(range(len(stream.plan)), stream):
            expected = stream.plan.batch(batch)
            np.testing.assert_array_equal(got.numpy(), ids[expected])
            np.testing.assert_array_equal(got_labels.numpy(), labels[expected])
            seen += expected.tolist()
    assert len(seen) == len(set(seen)) == N // 128 * 128  # drop_last: only the last partial global batch is left
