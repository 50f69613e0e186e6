"""The store's side arrays: the codebook (float32 [K, D]), synonyms (ids [K, k], most similar first) and
code_ids (int32 [K]: the tokenizer id of each codebook row, which tells what the ids mean after pruning).

Saved as ``.npy`` files named by their content hash and listed in the manifest with their sha256.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from seit.store.codec import ids_dtype
from seit.store.errors import StoreError
from seit.store.files import StoreFiles
from seit.store.format import ARRAY_KINDS, MAX_SIDE_FILE_BYTES, array_name
from seit.store.npy import parse_npy
from seit.utils.io import atomic_write_bytes

KINDS = ARRAY_KINDS


def check_codebook(codebook: Any, codebook_size: int, where: str = "codebook") -> np.ndarray:
    arr = np.asarray(codebook)
    if arr.ndim != 2 or arr.shape[0] != codebook_size or not np.issubdtype(arr.dtype, np.number):
        raise StoreError(f"{where}: expected a float array [{codebook_size}, D], got {arr.dtype} {list(arr.shape)}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise StoreError(f"{where}: holds NaN or infinite values")
    return arr


def check_synonyms(synonyms: Any, codebook_size: int, where: str = "synonyms") -> np.ndarray:
    arr = np.asarray(synonyms)
    if arr.ndim != 2 or arr.shape[0] != codebook_size or not np.issubdtype(arr.dtype, np.integer):
        raise StoreError(f"{where}: expected an integer array [{codebook_size}, k], got {arr.dtype} {list(arr.shape)}")
    if arr.size and (arr.min() < 0 or arr.max() >= codebook_size):
        raise StoreError(f"{where}: ids in [{arr.min()}, {arr.max()}], outside the codebook of size {codebook_size}")
    return arr.astype(ids_dtype(codebook_size))


def check_code_ids(code_ids: Any, codebook_size: int, where: str = "code_ids") -> np.ndarray:
    arr = np.asarray(code_ids)
    if arr.shape != (codebook_size,) or not np.issubdtype(arr.dtype, np.integer):
        raise StoreError(f"{where}: expected an integer array [{codebook_size}], got {arr.dtype} {list(arr.shape)}")
    if arr.size and (arr.min() < 0 or arr.max() >= 1 << 31):
        raise StoreError(f"{where}: tokenizer ids in [{arr.min()}, {arr.max()}], expected 0 .. 2**31 - 1")
    if len(np.unique(arr)) != len(arr):
        raise StoreError(f"{where}: a tokenizer id appears twice; every codebook row must be a different code")
    return arr.astype(np.int32)


CHECKS = {"codebook": check_codebook, "synonyms": check_synonyms, "code_ids": check_code_ids}


def check_array(kind: str, array: Any, codebook_size: int, where: str | None = None) -> np.ndarray:
    return CHECKS[kind](array, codebook_size, where or kind)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def array_entry(kind: str, array: np.ndarray) -> tuple[dict[str, Any], bytes]:
    """The manifest entry of ``array`` and the file content it describes."""
    data = _npy_bytes(array)
    sha = hashlib.sha256(data).hexdigest()
    entry = {"file": array_name(kind, sha), "sha256": sha, "bytes": len(data), "shape": list(array.shape)}
    return {**entry, "dtype": str(array.dtype)}, data


def write_array(directory: Path, kind: str, array: np.ndarray) -> dict[str, Any]:
    """Save ``array`` under its content-addressed name; returns its manifest entry."""
    entry, data = array_entry(kind, array)
    if not (directory / entry["file"]).exists():
        atomic_write_bytes(directory / entry["file"], data)
    return entry


def read_checked(files: StoreFiles, entry: dict[str, Any]) -> bytes:
    """A small file of the store, checked against its manifest size and sha256 before it is used."""
    where = files.where(entry["file"])
    size = files.size(entry["file"])
    if size != entry["bytes"]:
        raise StoreError(f"{where}: {size} bytes, the manifest says {entry['bytes']} (corrupt file); re-copy the store")
    data = files.read_bytes(entry["file"], MAX_SIDE_FILE_BYTES)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise StoreError(f"{where}: sha256 mismatch (corrupt file); re-copy the store")
    return data


def read_array(files: StoreFiles, entry: dict[str, Any]) -> np.ndarray:
    return parse_npy(read_checked(files, entry), files.where(entry["file"]), entry["shape"], entry.get("dtype"))
