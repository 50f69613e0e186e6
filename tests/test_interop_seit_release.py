import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seit.interop.seit_release import (
    SeitReleaseDataset,
    decode_sample,
    encode_stream,
    export_seit,
    import_seit,
    read_codebook,
    read_synonyms,
)
from seit.store import StoreWriter, TokenStore, collate
from seit.store.errors import StoreError

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"


@pytest.mark.parametrize("split", ["train", "val"])
def test_stream_codec_matches_the_release_bytes(split):
    raw = gzip.decompress((TOKENS / f"tiny-{split}-token.data.bin.gz").read_bytes())
    index = np.load(io.BytesIO(gzip.decompress((TOKENS / f"tiny-{split}-token.index.npy.gz").read_bytes())))
    grids = np.load(TOKENS / "tiny-expected.npz")[f"{split}_grids"]
    decoded = [decode_sample(raw[index[i] : index[i + 1]], 1024).reshape(32, 32) for i in range(len(grids))]
    np.testing.assert_array_equal(np.stack(decoded), grids)
    data, offsets = encode_stream(grids)
    assert data == raw
    np.testing.assert_array_equal(offsets, index)


def test_stream_refuses_ids_it_cannot_hold_and_truncation():
    with pytest.raises(StoreError, match="509"):
        encode_stream([np.array([[510]])])
    data, _ = encode_stream([np.array([300, 2])])
    with pytest.raises(StoreError, match="expected 3"):
        decode_sample(data, 3)
    with pytest.raises(StoreError, match="truncated"):
        decode_sample(data[:1], 1)


# ---- files: read directly, import into a store, export back -------------------------------------------
def release_files(split):
    return {
        "tokens": TOKENS / f"tiny-{split}-token.data.bin.gz",
        "labels": TOKENS / f"tiny-{split}-label.txt",
        "codebook": TOKENS / "codebook.ckpt",
        "synonyms": TOKENS / "synonyms.json",
    }


def gunzip(path):
    return gzip.decompress(Path(path).read_bytes())


@pytest.mark.parametrize("split", ["train", "val"])
def test_fixture_round_trip_through_a_store_is_exact(tmp_path, split):
    expected = np.load(TOKENS / "tiny-expected.npz")
    import_seit(tmp_path / "store", **release_files(split), shard_bytes=20000)
    store = TokenStore.open(tmp_path / "store")
    ids, labels = store.get_batch(range(len(store)))
    np.testing.assert_array_equal(ids, expected[f"{split}_grids"])
    np.testing.assert_array_equal(labels, expected[f"{split}_labels"])
    book = torch.load(TOKENS / "codebook.ckpt", weights_only=True).numpy()
    np.testing.assert_array_equal(store.codebook, book)
    synonyms = json.loads((TOKENS / "synonyms.json").read_text())
    assert store.synonyms.tolist() == [synonyms[str(i)] for i in range(len(book))]
    assert store.num_shards > 1

    written = export_seit(tmp_path / "store", tmp_path / "out" / f"tiny-{split}")
    assert gunzip(written["tokens"]) == gunzip(TOKENS / f"tiny-{split}-token.data.bin.gz")
    assert gunzip(written["index"]) == gunzip(TOKENS / f"tiny-{split}-token.index.npy.gz")
    assert written["labels"].read_bytes() == (TOKENS / f"tiny-{split}-label.txt").read_bytes()
    assert json.loads(written["synonyms"].read_text()) == synonyms
    assert written["synonyms"].read_bytes() == (TOKENS / "synonyms.json").read_bytes()
    np.testing.assert_array_equal(torch.load(written["codebook"], weights_only=True).numpy(), book)
    with pytest.raises(StoreError, match="would overwrite"):
        export_seit(tmp_path / "store", tmp_path / "out" / f"tiny-{split}")


def test_release_files_as_a_map_style_dataset():
    expected = np.load(TOKENS / "tiny-expected.npz")
    files = release_files("val")
    ds = SeitReleaseDataset(files["tokens"], labels=files["labels"])
    loader = torch.utils.data.DataLoader(ds, batch_size=10, collate_fn=collate)
    ids = torch.cat([b[0] for b in loader])
    labels = torch.cat([b[1] for b in loader])
    assert ids.dtype == torch.int16 and len(ds) == 32
    np.testing.assert_array_equal(ids, expected["val_grids"])
    np.testing.assert_array_equal(labels, expected["val_labels"])
    np.testing.assert_array_equal(ds[5][0], expected["val_grids"][5])
    with pytest.raises(StoreError, match=r"sample 0 spans 1459 bytes; a grid of 256 ids .*wrong --grid"):
        SeitReleaseDataset(files["tokens"], grid_shape=(16, 16))


def test_export_refuses_ids_the_layout_cannot_hold(tmp_path):
    grids = np.zeros((3, 2, 2), dtype=int)
    grids[1, 1, 0] = 510
    with StoreWriter(tmp_path / "s", grid_shape=(2, 2), codebook_size=600) as w:
        w.append_batch(grids, [0, 1, 2], ["a", "b", "c"])
    with pytest.raises(StoreError, match=r"sample 1 \(key 'b'\) has id 510; the SeiT layout holds ids up to 509"):
        export_seit(tmp_path / "s", tmp_path / "out" / "x")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_import_errors_name_the_file(tmp_path):
    files = release_files("train")
    labels = tmp_path / "labels.txt"
    labels.write_text("1\n2\n")
    with pytest.raises(StoreError, match="2 labels for 64 token grids"):
        import_seit(tmp_path / "a", **{**files, "labels": labels})
    truncated = tmp_path / "tiny-train-token.data.bin.gz"
    truncated.write_bytes(gzip.compress(gunzip(files["tokens"])[:5000]))
    index = tmp_path / "tiny-train-token.index.npy.gz"
    index.write_bytes((TOKENS / "tiny-train-token.index.npy.gz").read_bytes())
    offsets = np.load(io.BytesIO(gunzip(index)))
    cut = int(np.flatnonzero(offsets > 5000)[0]) - 1  # the sample whose bytes straddle byte 5000
    with pytest.raises(
        StoreError, match=rf"tiny-train-token\.data\.bin\.gz: stream ends at byte 5000, inside sample {cut}"
    ):
        import_seit(tmp_path / "b", **{**files, "tokens": truncated})
    with pytest.raises(StoreError, match="wrong --grid"):
        import_seit(tmp_path / "c", **files, grid_shape=(16, 16))
    with pytest.raises(StoreError, match="needs the codebook"):
        import_seit(tmp_path / "d", tokens=files["tokens"])
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"0": [0, 1]}))
    with pytest.raises(StoreError, match="one entry per code"):
        import_seit(tmp_path / "e", **{**files, "synonyms": small})


def test_table_readers_reject_bad_files_naming_them(tmp_path):
    bad = tmp_path / "synonyms.json"
    bad.write_text("{not json")
    with pytest.raises(StoreError, match=r"synonyms\.json: not valid JSON"):
        read_synonyms(bad, 2)
    bad.write_text(json.dumps({"0": [0, 5], "1": [1, 0]}))
    with pytest.raises(StoreError, match="must lie in"):
        read_synonyms(bad, 2)
    flat = tmp_path / "codebook.ckpt"
    torch.save(torch.zeros(391), flat)
    with pytest.raises(StoreError, match=r"codebook\.ckpt: expected a float tensor \[K, D\]"):
        read_codebook(flat)
