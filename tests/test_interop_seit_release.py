import collections
import gzip
import io
import json
import re
import struct
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
    iter_release,
    read_codebook,
    read_index,
    read_labels,
    read_synonyms,
    release_paths,
    stream_bound,
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
    with pytest.raises(
        StoreError,
        match=r"^sample 0: id 510 cannot be written in the SeiT layout \(largest id 509\); prune the codebook first "
        r"\(seit tokenize --prune\) or keep this data in a seit store$",
    ):
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
    assert store.config["labels"] == str(release_files(split)["labels"])

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
    with pytest.raises(
        StoreError,
        match=r"^import-seit needs the codebook \(--codebook codebook\.ckpt\) or its size \(--codebook-size\)$",
    ):
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


# ---- edges of the reading paths, on tiny release files made here ----------------------------------------
def write_release(folder, grids, labels=None, name="x", data=None):
    """``grids`` in the release layout at ``folder/name-*`` (``data``: other decompressed token bytes)."""
    stream, offsets = encode_stream(grids)
    paths = release_paths(folder / name)
    paths["tokens"].write_bytes(gzip.compress(stream if data is None else data(stream, offsets)))
    npy = io.BytesIO()
    np.save(npy, offsets)
    paths["index"].write_bytes(gzip.compress(npy.getvalue()))
    if labels is not None:
        paths["labels"].write_text("".join(f"{x}\n" for x in labels))
    return paths


def some_grids(n, shape=(2, 3), high=510):
    return np.random.default_rng(n).integers(0, high, (n, *shape))  # one- and two-byte ids


def test_dataset_without_labels_and_at_its_edges(tmp_path):
    grids = some_grids(5)
    paths = write_release(tmp_path, grids, labels=[1, 2])
    ds = SeitReleaseDataset(paths["tokens"], grid_shape=(2, 3))  # the index named as the reference code does
    assert len(ds) == 5 and ds.labels.dtype == np.int64 and ds.labels.tolist() == [-1] * 5
    ids, label = ds[2]
    assert torch.equal(ids, torch.from_numpy(grids[2].astype(np.int16))) and label == -1
    assert ds.grid(1).dtype == np.int16
    ids, labels = ds.__getitems__([4, 0])
    np.testing.assert_array_equal(ids, grids[[4, 0]])
    ids, labels = ds.__getitems__([])
    assert ids.shape == (0, 2, 3) and ids.dtype == torch.int16 and labels.shape == (0,)
    assert labels.dtype == torch.int64
    for i in (5, -1):
        with pytest.raises(IndexError, match=rf"sample index {i} out of range for 5 samples"):
            ds.grid(i)
    with pytest.raises(StoreError, match=r"x-label\.txt: 2 labels for 5 token grids"):
        SeitReleaseDataset(paths["tokens"], labels=paths["labels"], grid_shape=(2, 3))


def test_a_sample_that_decodes_to_another_grid_is_named(tmp_path):
    def escape_sample_1(stream, offsets):  # its first byte becomes an escape: 5 ids of 6, yet a valid length
        return stream[: offsets[1]] + b"\xff" + stream[offsets[1] + 1 :]

    grids = some_grids(3, high=200)  # one byte per id
    paths = write_release(tmp_path, grids, data=escape_sample_1)
    expected = r"x-token\.data\.bin\.gz: sample 1: SeiT token stream: sample decodes to 5 ids, expected 6"
    ds = SeitReleaseDataset(paths["tokens"], grid_shape=(2, 3))
    np.testing.assert_array_equal(ds.grid(0), grids[0])
    with pytest.raises(StoreError, match=expected + r" \(wrong grid_shape\?\)"):
        ds.grid(1)
    with pytest.raises(StoreError, match=expected + r" \(wrong --grid\?\)"):
        import_seit(tmp_path / "s", tokens=paths["tokens"], grid_shape=(2, 3), codebook_size=512)


def test_release_files_stream_in_batches_and_name_where_they_end(tmp_path):
    grids = some_grids(10)
    paths = write_release(tmp_path, grids)
    offsets = read_index(paths["index"], numel=6, stream_bytes=stream_bound(paths["tokens"]))
    parts = list(iter_release(paths["tokens"], offsets, (2, 3), batch_size=3))
    assert [start for start, _ in parts] == [0, 3, 6, 9]
    np.testing.assert_array_equal(np.concatenate([g for _, g in parts]), grids)
    # cut exactly where sample 7 starts: the batch 6..8 ends inside sample 7 (its bytes are all missing)
    cut = write_release(tmp_path, grids, name="cut", data=lambda stream, offsets: stream[: offsets[7]])
    with pytest.raises(
        StoreError, match=rf"cut-token\.data\.bin\.gz: stream ends at byte {offsets[7]}, inside sample 7 "
    ):
        list(iter_release(cut["tokens"], offsets, (2, 3), batch_size=3))
    longer = write_release(tmp_path, grids, name="long", data=lambda stream, offsets: stream + b"\x00")
    with pytest.raises(StoreError, match=r"long-token\.data\.bin\.gz: longer than its index says"):
        list(iter_release(longer["tokens"], offsets, (2, 3), batch_size=3))


def test_import_without_a_codebook_records_its_sources_and_settings(tmp_path):
    grids = some_grids(5)
    paths = write_release(tmp_path, grids)
    index = paths["index"].rename(tmp_path / "elsewhere.npy.gz")  # not where the token file's name points
    given = dict(tokens=paths["tokens"], index=index, grid_shape=(2, 3), codebook_size=512, class_names=["a", "b"])
    store = TokenStore.open(import_seit(tmp_path / "s", **given, codec="raw"))
    ids, labels = store.get_batch(range(5))
    np.testing.assert_array_equal(ids, grids)
    assert labels.tolist() == [-1] * 5 and store.keys == ["0", "1", "2", "3", "4"]
    assert store.codebook is None and store.synonyms is None and store.codebook_size == 512
    assert store.class_names == ["a", "b"] and store.manifest["codecs"][0]["name"] == "raw"
    sources = {"source": "seit-release", "tokens": str(paths["tokens"]), "index": str(index), "labels": "None"}
    assert store.config == sources
    with pytest.raises(StoreError, match="already"):
        import_seit(tmp_path / "s", **given, codec="raw")
    import_seit(tmp_path / "s", **given, codec="raw", resume=True)  # finished already: nothing left to add
    assert TokenStore.open(tmp_path / "s").keys == store.keys


def test_import_checks_the_codebook_size_and_every_id_against_it(tmp_path):
    grids = some_grids(4100, shape=(2, 1), high=7)  # more than one read batch (4096 samples)
    grids[4098, 1, 0] = 7
    paths = write_release(tmp_path, grids)
    with pytest.raises(StoreError, match=r"x-token\.data\.bin\.gz: sample 4098 has id 7 >= codebook size 7$"):
        import_seit(tmp_path / "s", tokens=paths["tokens"], grid_shape=(2, 1), codebook_size=7, codec="raw")
    store = TokenStore.open(
        import_seit(tmp_path / "t", tokens=paths["tokens"], grid_shape=(2, 1), codebook_size=8, codec="raw")
    )
    assert len(store) == 4100 and store.key(4099) == "4099"
    back = export_seit(tmp_path / "t", tmp_path / "back" / "x")  # exported in two read batches too
    assert gunzip(back["tokens"]) == gunzip(paths["tokens"]) and gunzip(back["index"]) == gunzip(paths["index"])
    np.testing.assert_array_equal(store.get_batch([4098])[0], grids[[4098]])
    book = tmp_path / "codebook.ckpt"
    torch.save(torch.zeros(8, 2), book)
    with pytest.raises(StoreError, match=r"codebook\.ckpt: holds 8 codes, --codebook-size says 9$"):
        import_seit(tmp_path / "u", tokens=paths["tokens"], grid_shape=(2, 1), codebook=book, codebook_size=9)


def test_import_bounds_the_index_by_the_grid_and_the_token_file(tmp_path):
    paths = write_release(tmp_path, some_grids(3))
    with pytest.raises(StoreError, match=r"sample 0 spans \d+ bytes; a grid of 1 ids takes 1\.\.2 bytes"):
        import_seit(tmp_path / "s", tokens=paths["tokens"], grid_shape=(1, 1), codebook_size=512)
    header = io.BytesIO()  # an index that declares a million samples (and holds none of them)
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (10**6,)})
    paths["index"].write_bytes(gzip.compress(header.getvalue()))
    with pytest.raises(StoreError, match=r"declares 999999 samples, more than its token file can hold"):
        import_seit(tmp_path / "t", tokens=paths["tokens"], grid_shape=(2, 3), codebook_size=512)


def test_import_shows_progress_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SEIT_NO_PROGRESS", raising=False)
    paths = write_release(tmp_path, some_grids(5))
    import_seit(tmp_path / "s", tokens=paths["tokens"], grid_shape=(2, 3), codebook_size=512)
    assert capsys.readouterr().err == ""
    import_seit(tmp_path / "t", tokens=paths["tokens"], grid_shape=(2, 3), codebook_size=512, show_progress=True)
    assert "5/5" in capsys.readouterr().err


def test_a_token_file_shorter_than_its_index_says_is_named(tmp_path):
    paths = write_release(tmp_path, some_grids(4), data=lambda stream, offsets: stream[:-3])
    size = int(read_index(paths["index"])[-1])
    with pytest.raises(
        StoreError,
        match=rf"x-token\.data\.bin\.gz: decompresses to {size - 3} bytes, its index says {size}; the files do not "
        r"belong together \(or one is truncated\)$",
    ):
        SeitReleaseDataset(paths["tokens"], grid_shape=(2, 3))


def test_a_codebook_file_may_hold_one_table_in_a_dict(tmp_path):
    table = torch.randn(6, 3)
    path = tmp_path / "codebook.ckpt"
    torch.save({"step": 3, "scale": torch.tensor(1.0), "codebook": table}, path)
    np.testing.assert_array_equal(read_codebook(path), table.numpy())
    torch.save({"a": table, "b": table.clone()}, path)  # which one? refused
    with pytest.raises(
        StoreError, match=r"codebook\.ckpt: expected a float tensor \[K, D\] \(the codebook\), got dict$"
    ):
        read_codebook(path)
    for bad in (table.long(), table[:0]):  # integer, or no codes at all
        torch.save(bad, path)
        with pytest.raises(StoreError, match=r"codebook\.ckpt: expected a float tensor \[K, D\]"):
            read_codebook(path)


def test_synonym_file_errors_name_the_file_and_the_reason(tmp_path):
    with pytest.raises(StoreError, match=r"nope\.json: no such file$"):
        read_synonyms(tmp_path / "nope.json", 2)
    bad = tmp_path / "synonyms.json"
    bad.write_text('{"0": [0], ')
    with pytest.raises(StoreError, match=r"synonyms\.json: not valid JSON \(Expecting property name"):
        read_synonyms(bad, 2)


@pytest.mark.parametrize(
    ("table", "size", "message"),
    [
        ([[0], [1]], 2, r'expected an object \{"id": \[ids\]\}, got list$'),
        ({"0": [0], "1": [1], "2": [2]}, 2, r"needs one entry per code 0\.\.1 \(missing e\.g\. \[\]\)$"),
        ({"0": [0]}, 10, r"needs one entry per code 0\.\.9 \(missing e\.g\. \[1, 2, 3, 4, 5\]\)$"),
        ({"0": 0, "1": [1]}, 2, r"every entry must be a list of integer code ids$"),
        ({"0": [0], "1": ["1"]}, 2, r"every entry must be a list of integer code ids$"),
        ({"0": [0], "1": [1, 0]}, 2, r"every code needs the same number of synonyms \(found \[1, 2\]\)$"),
        ({"0": [0, 2], "1": [1, 0]}, 2, r"synonym ids must lie in \[0, 2\), found 0\.\.2$"),
    ],
)
def test_synonym_tables_of_another_shape_are_refused_naming_what_is_wrong(tmp_path, table, size, message):
    path = tmp_path / "synonyms.json"
    path.write_text(json.dumps(table))
    with pytest.raises(StoreError, match=r"synonyms\.json: " + message):
        read_synonyms(path, size)


def test_a_synonym_table_may_list_no_synonyms(tmp_path):
    path = tmp_path / "synonyms.json"
    for size in (1, 3):
        path.write_text(json.dumps({str(i): [] for i in range(size)}))
        assert read_synonyms(path, size).shape == (size, 0)


def small_store(path, grids, codebook_size):
    with StoreWriter(path, grid_shape=grids.shape[1:], codebook_size=codebook_size, codec="raw") as w:
        w.append_batch(grids, [0] * len(grids), [str(i) for i in range(len(grids))])
    return path


@pytest.mark.parametrize("codebook_size", [510, 511, 600])
def test_export_checks_ids_only_where_the_codebook_can_exceed_the_layout(tmp_path, codebook_size):
    grids = np.zeros((3, 2, 2), dtype=np.int64)
    grids[2, 0, 1] = 509  # the largest id the layout holds
    written = export_seit(small_store(tmp_path / "s", grids, codebook_size), tmp_path / "out" / "x")
    np.testing.assert_array_equal(SeitReleaseDataset(written["tokens"], grid_shape=(2, 2)).grid(2), grids[2])
    if codebook_size > 510:
        grids[1, 1, 1] = 510
        with pytest.raises(StoreError, match=r"sample 1 \(key '1'\) has id 510; the SeiT layout holds ids up to 509"):
            export_seit(small_store(tmp_path / "t", grids, codebook_size), tmp_path / "out" / "y")


def test_export_names_every_file_it_would_overwrite_and_shows_progress_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SEIT_NO_PROGRESS", raising=False)
    store = small_store(tmp_path / "s", np.zeros((3, 2, 2), dtype=np.int64), 600)
    written = export_seit(store, tmp_path / "x")
    assert capsys.readouterr().err == ""
    with pytest.raises(
        StoreError,
        match="^" + re.escape(f"would overwrite {written['tokens']}, {written['index']}, {written['labels']}; pass"),
    ):
        export_seit(store, tmp_path / "x")
    data = written["tokens"].read_bytes()  # gzip headers without a time stamp: byte for byte reproducible
    assert data[3] & 0x08 and data[4:8] == bytes(4) and written["index"].read_bytes()[4:8] == bytes(4)
    assert data[10 : data.index(b"\0", 10)] == b"x-token.data.bin"  # the name inside, as SeiT's files have it
    export_seit(store, tmp_path / "x", overwrite=True, show_progress=True)
    err = capsys.readouterr().err
    assert "check ids:" in err and "export:" in err  # each pass's bar, by name


def test_label_files_at_their_bounds(tmp_path):
    path = tmp_path / "x-label.txt"
    path.write_text("-1\n1048575\n")  # unlabelled, and the largest class id
    assert read_labels(path).tolist() == [-1, 1048575]
    for value in ("-2", "1048576"):
        path.write_text(f"{value}\n")
        with pytest.raises(
            StoreError,
            match=rf"label {value} \(entry 1\) is outside -1 \(unlabelled\) \.\. 1048575; "
            r"labels are class ids 0\.\.K-1$",
        ):
            read_labels(path)
    path.write_text("1\n\u0663\n")  # an Arabic-Indic three: int() would read it, a label file is ASCII
    with pytest.raises(StoreError, match="cannot read it as a label file"):
        read_labels(path)
    path.write_text("1\n2" + " " * (2 * 32 + 4096 - 3))  # exactly the most two labels may take
    assert read_labels(path, 2).tolist() == [1, 2]
    path.write_text("1\n2" + " " * (2 * 32 + 4096 - 2))
    with pytest.raises(StoreError, match=r"x-label\.txt: 4161 bytes is far more than 2 labels take; wrong file\?$"):
        read_labels(path, 2)
    with pytest.raises(StoreError, match=r"nope-label\.txt: no such file$"):
        read_labels(tmp_path / "nope-label.txt")


def write_index(path, offsets, tail=b"", dtype=np.int64, cut=0):
    """An index file holding ``offsets`` as ``dtype`` (``cut``: bytes dropped from its end)."""
    npy = io.BytesIO()
    np.save(npy, np.asarray(offsets, dtype=dtype))
    path.write_bytes(gzip.compress(npy.getvalue()[: len(npy.getvalue()) - cut] + tail))
    return path


def test_index_files_at_their_bounds(tmp_path):
    index = write_index(tmp_path / "i.npy.gz", [0, 0, 3])  # without a grid size, empty samples are fine
    assert read_index(index).tolist() == [0, 0, 3]
    with pytest.raises(StoreError, match=r"i\.npy\.gz: offsets must start at 0, found 5 \(corrupt index\)$"):
        read_index(write_index(index, [5, 6]))
    with pytest.raises(
        StoreError, match=r"i\.npy\.gz: sample 1 spans -1 bytes; offsets never decrease \(corrupt index\)$"
    ):
        read_index(write_index(index, [0, 2, 1]))
    with pytest.raises(
        StoreError, match=r"offsets reach byte 10, more than its token file can hold \(corrupt index\)$"
    ):
        read_index(write_index(index, [0, 1, 2, 3, 10]), stream_bytes=5)
    with pytest.raises(StoreError, match=r"i\.npy\.gz: holds data after its offsets array \(corrupt index\)$"):
        read_index(write_index(index, [0, 1], tail=b"\0"))
    # one-byte grids: an index may declare as many samples as its token file has bytes, and no more
    assert len(read_index(write_index(index, range(8)), stream_bytes=7)) == 8
    with pytest.raises(StoreError, match="declares 7 samples, more than its token file can hold"):
        read_index(index, stream_bytes=6)


def test_stream_reads_in_chunks_and_one_byte_at_a_time(tmp_path, monkeypatch):
    import seit.interop.seit_release as release

    grids = some_grids(4, shape=(1, 1), high=200)
    paths = write_release(tmp_path, grids)
    offsets = read_index(paths["index"], numel=1)
    streamed = [g for _, g in iter_release(paths["tokens"], offsets, (1, 1), batch_size=1)]  # 1-byte reads
    np.testing.assert_array_equal(np.concatenate(streamed), grids)
    monkeypatch.setattr(release, "_READ_CHUNK", 3)  # files larger than a read chunk are read in several
    np.testing.assert_array_equal(SeitReleaseDataset(paths["tokens"], grid_shape=(1, 1)).grid(3), grids[3])


def test_a_missing_or_unreadable_token_file_is_named(tmp_path):
    with pytest.raises(StoreError, match=r"nope\.gz: no such file$"):
        stream_bound(tmp_path / "nope.gz")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match=r"file/x\.gz: Not a directory$"):
        stream_bound(tmp_path / "file" / "x.gz")


def test_decoded_samples_are_int64_and_a_cut_two_byte_id_is_named():
    data, _ = encode_stream([np.array([300, 2])])
    assert decode_sample(data, 2).dtype == np.int64
    with pytest.raises(StoreError, match=r"^SeiT token stream ends inside a two-byte id \(truncated file\?\)$"):
        decode_sample(data[:1], 1)


def npy_bytes(header: str, version):
    """The offsets [0, 1] as an .npy file with this header text, for headers numpy would not write."""
    size = struct.pack("<H" if version == (1, 0) else "<I", len(header) + 1)
    data = np.array([0, 1], dtype="<i8").tobytes()
    return b"\x93NUMPY" + bytes(version) + size + header.encode("latin1") + b"\n" + data


def test_index_headers_of_both_npy_versions_and_no_other(tmp_path):
    index = tmp_path / "i.npy.gz"
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }"
    for version in ((1, 0), (2, 0)):
        index.write_bytes(gzip.compress(npy_bytes(header, version)))
        assert read_index(index).tolist() == [0, 1]
    index.write_bytes(gzip.compress(npy_bytes(header, (3, 0))))
    with pytest.raises(
        StoreError,
        match=r"i\.npy\.gz: not a \.npy array inside the gzip "
        r"\(ValueError: npy version \(3, 0\) is not one an index uses\)$",
    ):
        read_index(index)


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_index_headers_hold_at_most_4096_bytes(tmp_path, version):
    index = tmp_path / "i.npy.gz"
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }"
    index.write_bytes(gzip.compress(npy_bytes(header.ljust(4095), version)))  # 4096 with its newline
    assert read_index(index).tolist() == [0, 1]
    for length in (4096, 5000):  # numpy's own limit is 10000
        index.write_bytes(gzip.compress(npy_bytes(header.ljust(length), version)))
        with pytest.raises(
            StoreError,
            match=rf"i\.npy\.gz: not a \.npy array inside the gzip \(ValueError: Header info length \({length + 1}\) "
            r"is large and may not be safe to load securely\.\)$",  # one line of numpy's three
        ):
            read_index(index)


@pytest.mark.parametrize(
    "offsets, described",
    [
        (np.array([0.0, 1.0]), r"float64 \(2,\)"),
        (np.array([0, 1], dtype=np.complex128), r"complex128 \(2,\)"),
        (np.zeros((2, 2), dtype=np.int64), r"int64 \(2, 2\)"),
        (np.zeros(0, dtype=np.int64), r"int64 \(0,\)"),
    ],
)
def test_an_index_that_is_not_a_1d_integer_array_of_offsets_is_refused(tmp_path, offsets, described):
    index = write_index(tmp_path / "i.npy.gz", offsets, dtype=offsets.dtype)
    with pytest.raises(
        StoreError, match=rf"^{re.escape(str(index))}: expected a 1-D integer array of N\+1 offsets, got {described}$"
    ):
        read_index(index)


def test_index_offsets_of_any_integer_type_read_as_int64(tmp_path):
    index = tmp_path / "i.npy.gz"
    assert read_index(write_index(index, [0])).tolist() == [0]  # no samples: one offset
    for dtype in (np.uint8, np.int32, np.uint32, np.uint64):
        offsets = read_index(write_index(index, [0, 1, 3], dtype=dtype), numel=1)
        assert offsets.dtype == np.int64 and offsets.tolist() == [0, 1, 3]
    largest = np.iinfo(np.int64).max  # the largest unsigned offset that fits
    assert read_index(write_index(index, [0, largest], dtype=np.uint64)).tolist() == [0, largest]
    with pytest.raises(
        StoreError, match=rf"^{re.escape(str(index))}: offset {largest + 1} is beyond any file \(corrupt index\)$"
    ):
        read_index(write_index(index, [0, largest + 1], dtype=np.uint64))


def test_index_sample_count_and_truncation_errors_are_exact(tmp_path):
    index = write_index(tmp_path / "i.npy.gz", range(10))
    name = re.escape(str(index))
    with pytest.raises(  # two-byte grids in at most 7 bytes: at most 3 samples (7 // 2)
        StoreError,
        match=rf"^{name}: declares 9 samples, more than its token file can hold \(3\); "
        r"the files do not belong together$",
    ):
        read_index(index, numel=2, stream_bytes=7)
    with pytest.raises(StoreError, match=rf"^{name}: ends after 75 of its 80 bytes of offsets \(truncated file\)$"):
        read_index(write_index(index, range(10), cut=5))


def test_data_past_the_end_is_found_by_reading_one_byte_not_the_rest(tmp_path, monkeypatch):
    """An over-long index or token file is refused after one byte past its end (memory stays bounded)."""
    delivered = collections.Counter()  # decompressed bytes read, by file name

    class CountingGzipFile(gzip.GzipFile):
        def read(self, size=-1):
            data = super().read(size)
            delivered[Path(self.name).name] += len(data)
            return data

    monkeypatch.setattr(gzip, "open", lambda path, mode: CountingGzipFile(path, mode))
    excess = bytes(1 << 20)  # a megabyte of zeros: a kilobyte of gzip
    index = write_index(tmp_path / "i.npy.gz", [0, 1, 2], tail=excess)
    with pytest.raises(StoreError, match="holds data after its offsets array"):
        read_index(index)
    assert delivered["i.npy.gz"] == len(gzip.decompress(index.read_bytes())) - len(excess) + 1
    paths = write_release(tmp_path, some_grids(3), data=lambda stream, offsets: stream + excess)
    offsets = read_index(paths["index"])
    for read, error in (
        (lambda: list(iter_release(paths["tokens"], offsets, (2, 3))), "longer than its index says"),
        (lambda: SeitReleaseDataset(paths["tokens"], grid_shape=(2, 3)), "decompresses to more than"),
    ):
        delivered.clear()
        with pytest.raises(StoreError, match=error):
            read()
        assert delivered[paths["tokens"].name] == offsets[-1] + 1
