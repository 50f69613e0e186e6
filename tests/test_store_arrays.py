"""The store's side arrays called directly on tiny arrays: each check's bounds at both sides and its exact
message, the content-addressed files and manifest entries, and the checked reads (the mutation pass's tests
for store/arrays.py; the whole file runs in about a second)."""

import hashlib
import io
import re

import numpy as np
import pytest

from seit.store import arrays
from seit.store.arrays import (
    array_entry,
    check_array,
    check_code_ids,
    check_codebook,
    check_synonyms,
    read_array,
    read_checked,
    write_array,
)
from seit.store.errors import StoreError
from seit.store.files import StoreFiles


def refused(message: str):
    return pytest.raises(StoreError, match=f"^{re.escape(message)}$")


# ---- checks --------------------------------------------------------------------------------------------
def test_a_codebook_becomes_float32_and_keeps_its_values():
    out = check_codebook(np.arange(6).reshape(3, 2), 3)
    assert out.dtype == np.float32 and out.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert check_codebook(np.zeros((3, 0)), 3).shape == (3, 0)
    assert check_codebook([[1.5], [2.5]], 2).tolist() == [[1.5], [2.5]]


@pytest.mark.parametrize(
    ("book", "got"),
    [
        (np.zeros(3), "float64 [3]"),
        (np.zeros((3, 2, 1)), "float64 [3, 2, 1]"),
        (np.zeros((2, 2)), "float64 [2, 2]"),
        (np.zeros((4, 2)), "float64 [4, 2]"),
        (np.zeros((3, 2), dtype=bool), "bool [3, 2]"),
        (np.full((3, 2), "a"), "<U1 [3, 2]"),
    ],
)
def test_a_codebook_of_the_wrong_shape_or_kind_is_refused(book, got):
    with refused(f"codebook: expected a float array [3, D], got {got}"):
        check_codebook(book, 3)
    with refused(f"book.npy: expected a float array [3, D], got {got}"):
        check_codebook(book, 3, "book.npy")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_codebook_with_nan_or_inf_is_refused(bad):
    book = np.zeros((3, 2))
    book[2, 1] = bad
    with refused("codebook: holds NaN or infinite values"):
        check_codebook(book, 3)
    with refused("b: holds NaN or infinite values"):
        check_codebook(book, 3, "b")


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_a_codebook_finite_in_float64_but_not_in_float32_is_refused():
    with refused("codebook: holds NaN or infinite values"):
        check_codebook(np.full((1, 1), 1e300), 1)


def test_synonyms_at_both_ends_of_the_codebook_pass_in_the_ids_dtype():
    out = check_synonyms(np.array([[0, 2], [2, 0], [1, 1]], dtype=np.int64), 3)
    assert out.dtype == np.int16 and out.tolist() == [[0, 2], [2, 0], [1, 1]]
    assert check_synonyms(np.zeros((3, 0), dtype=np.int64), 3).shape == (3, 0)  # no synonyms: no min/max
    assert check_synonyms(np.zeros((1 << 15, 1), dtype=np.int64), 1 << 15).dtype == np.int16
    big = np.full(((1 << 15) + 1, 1), 1 << 15, dtype=np.int64)
    out = check_synonyms(big, (1 << 15) + 1)
    assert out.dtype == np.int32 and int(out.max()) == 1 << 15


@pytest.mark.parametrize(
    ("syn", "message"),
    [
        (np.array([[0, -1], [1, 2], [2, 0]]), "ids in [-1, 2], outside the codebook of size 3"),
        (np.array([[0, 3], [1, 2], [2, 0]]), "ids in [0, 3], outside the codebook of size 3"),
        (np.zeros(3, dtype=int), "expected an integer array [3, k], got int64 [3]"),
        (np.zeros((3, 1, 1), dtype=int), "expected an integer array [3, k], got int64 [3, 1, 1]"),
        (np.zeros((2, 1), dtype=int), "expected an integer array [3, k], got int64 [2, 1]"),
        (np.zeros((4, 1), dtype=int), "expected an integer array [3, k], got int64 [4, 1]"),
        (np.zeros((3, 1)), "expected an integer array [3, k], got float64 [3, 1]"),
    ],
)
def test_synonyms_out_of_range_or_of_the_wrong_shape_are_refused(syn, message):
    with refused(f"synonyms: {message}"):
        check_synonyms(syn, 3)
    with refused(f"syn.npy: {message}"):
        check_synonyms(syn, 3, "syn.npy")


def test_code_ids_at_both_ends_of_the_range_pass_as_int32():
    out = check_code_ids(np.array([0, (1 << 31) - 1, 5], dtype=np.int64), 3)
    assert out.dtype == np.int32 and out.tolist() == [0, (1 << 31) - 1, 5]
    assert check_code_ids(np.zeros(0, dtype=np.int64), 0).shape == (0,)
    assert check_code_ids([7], 1).tolist() == [7]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.array([0, -1, 2]), "tokenizer ids in [-1, 2], expected 0 .. 2**31 - 1"),
        (np.array([0, 1 << 31, 2]), f"tokenizer ids in [0, {1 << 31}], expected 0 .. 2**31 - 1"),
        (np.array([4, 1, 4]), "a tokenizer id appears twice; every codebook row must be a different code"),
        (np.zeros((3, 1), dtype=int), "expected an integer array [3], got int64 [3, 1]"),
        (np.arange(2), "expected an integer array [3], got int64 [2]"),
        (np.arange(4), "expected an integer array [3], got int64 [4]"),
        (np.arange(3.0), "expected an integer array [3], got float64 [3]"),
    ],
)
def test_code_ids_out_of_range_repeated_or_of_the_wrong_shape_are_refused(ids, message):
    with refused(f"code_ids: {message}"):
        check_code_ids(ids, 3)
    with refused(f"ids.npy: {message}"):
        check_code_ids(ids, 3, "ids.npy")


def test_check_array_dispatches_by_kind_and_names_the_kind_or_where():
    assert check_array("codebook", np.ones((2, 1), dtype=int), 2).dtype == np.float32
    assert check_array("synonyms", np.ones((2, 1), dtype=np.int64), 2).dtype == np.int16
    assert check_array("code_ids", np.array([3, 1]), 2).dtype == np.int32
    for kind in arrays.KINDS:
        with pytest.raises(StoreError, match=f"^{kind}: expected"):
            check_array(kind, np.zeros(5), 2)
        with pytest.raises(StoreError, match=r"^here: expected"):
            check_array(kind, np.zeros(5), 2, "here")


# ---- files and manifest entries ------------------------------------------------------------------------
def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_an_array_entry_names_its_content():
    array = np.arange(6, dtype=np.int16).reshape(3, 2)
    entry, data = array_entry("synonyms", array)
    sha = hashlib.sha256(data).hexdigest()
    assert data == npy(array)
    assert entry == {
        "file": f"synonyms-{sha[:16]}.npy",
        "sha256": sha,
        "bytes": len(data),
        "shape": [3, 2],
        "dtype": "int16",
    }
    assert list(entry) == ["file", "sha256", "bytes", "shape", "dtype"]


def test_a_transposed_array_is_saved_in_c_order():
    array = np.arange(6, dtype=np.float32).reshape(2, 3).T  # Fortran-ordered view: np.save would mark it
    _, data = array_entry("codebook", array)
    assert data == npy(np.ascontiguousarray(array)) and b"'fortran_order': False" in data


def test_object_arrays_are_never_pickled():
    with pytest.raises(ValueError, match="allow_pickle=False"):
        array_entry("codebook", np.array([{"a": 1}], dtype=object))


def test_write_array_saves_once_under_its_content_name(tmp_path):
    array = np.eye(2, dtype=np.float32)
    entry = write_array(tmp_path, "codebook", array)
    assert entry == array_entry("codebook", array)[0]
    assert (tmp_path / entry["file"]).read_bytes() == npy(array)
    assert sorted(p.name for p in tmp_path.iterdir()) == [entry["file"]]  # atomic: no temporary file left
    (tmp_path / entry["file"]).write_bytes(b"kept")  # a file of that name is trusted: not written again
    assert write_array(tmp_path, "codebook", array) == entry
    assert (tmp_path / entry["file"]).read_bytes() == b"kept"


# ---- checked reads -------------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    array = np.arange(6, dtype=np.int32).reshape(3, 2)
    return StoreFiles(tmp_path), write_array(tmp_path, "synonyms", array), array


def test_read_checked_returns_the_bytes_that_match_the_manifest(saved):
    files, entry, array = saved
    assert read_checked(files, entry) == npy(array)
    out = read_array(files, entry)
    assert out.dtype == np.int32 and out.tolist() == array.tolist()


def test_a_side_file_of_another_size_is_refused_naming_it(saved):
    files, entry, _ = saved
    where = f"{files.url}/{entry['file']}"
    with refused(f"{where}: {entry['bytes']} bytes, the manifest says 5 (corrupt file); re-copy the store"):
        read_checked(files, {**entry, "bytes": 5})
    size = entry["bytes"]
    with refused(f"{where}: {size} bytes, the manifest says {size + 1} (corrupt file); re-copy the store"):
        read_checked(files, {**entry, "bytes": size + 1})


def test_a_side_file_with_another_sha256_is_refused_naming_it(saved, tmp_path):
    files, entry, _ = saved
    path = tmp_path / entry["file"]
    path.write_bytes(path.read_bytes()[:-1] + b"?")
    with refused(f"{files.url}/{entry['file']}: sha256 mismatch (corrupt file); re-copy the store"):
        read_checked(files, entry)
    with refused(f"{files.url}/{entry['file']}: sha256 mismatch (corrupt file); re-copy the store"):
        read_array(files, entry)


def test_a_side_file_larger_than_the_bound_is_not_read(saved, monkeypatch):
    files, entry, _ = saved
    monkeypatch.setattr(arrays, "MAX_SIDE_FILE_BYTES", entry["bytes"] - 1)
    with pytest.raises(StoreError, match=f"{entry['bytes']} bytes, more than the {entry['bytes'] - 1} such a file"):
        read_checked(files, entry)
    monkeypatch.setattr(arrays, "MAX_SIDE_FILE_BYTES", entry["bytes"])
    assert len(read_checked(files, entry)) == entry["bytes"]


def test_read_array_checks_the_header_against_the_manifest(saved):
    files, entry, _ = saved
    where = f"{files.url}/{entry['file']}"
    with refused(f"{where}: int32 [3, 2], the manifest says int32 [2, 3]"):
        read_array(files, {**entry, "shape": [2, 3]})
    with refused(f"{where}: int32 [3, 2], the manifest says int64 [3, 2]"):
        read_array(files, {**entry, "dtype": "int64"})
    del entry["dtype"]  # entries written before the dtype was recorded: only the shape is checked
    assert read_array(files, entry).dtype == np.int32
