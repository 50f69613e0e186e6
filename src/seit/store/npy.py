"""Reading ``.npy``/``.npz`` bytes from store files without trusting their headers.

``np.load`` allocates whatever shape a header claims before it reads the data; these check the header
against the bytes that follow it (and the zip members' sizes against the archive) first.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np

from seit.store.errors import StoreError


def parse_npy(data: bytes, where: str, shape: Any = None, dtype: Any = None) -> np.ndarray:
    """An ``.npy`` file's array, its header checked against ``shape``/``dtype`` (when given) and against the
    bytes that follow it before anything is allocated (``np.load`` allocates what the header claims)."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f".npy version {version}")
        found_shape, fortran, found_dtype = read_header[version](buf, max_header_size=1 << 16)
    except (ValueError, SyntaxError, TypeError, KeyError) as e:
        raise StoreError(f"{where}: not a valid .npy array ({e}); re-copy the store") from None
    if found_dtype.hasobject or fortran or found_dtype.kind not in "iuf":
        raise StoreError(f"{where}: holds a {found_dtype} array, expected plain numbers (corrupt file)")
    if (shape is not None and list(found_shape) != list(shape)) or (dtype is not None and str(found_dtype) != dtype):
        raise StoreError(f"{where}: {found_dtype} {list(found_shape)}, the manifest says {dtype} {list(shape)}")
    count = int(np.prod(found_shape, dtype=object))
    if count * found_dtype.itemsize != len(data) - buf.tell():
        raise StoreError(
            f"{where}: header says {found_dtype} {list(found_shape)}, the file holds "
            f"{len(data) - buf.tell()} bytes of data (corrupt or truncated)"
        )
    return np.frombuffer(data, dtype=found_dtype, count=count, offset=buf.tell()).reshape(found_shape).copy()


def parse_npz(data: bytes, where: str) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` (``np.savez``), each checked as by :func:`parse_npy`."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if any(m.compress_type != zipfile.ZIP_STORED or m.file_size > len(data) for m in members):
                raise zipfile.BadZipFile("a member is compressed or larger than the archive")
            return {m.filename.removesuffix(".npy"): parse_npy(archive.read(m), where) for m in members}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as e:
        raise StoreError(f"{where}: not a valid .npz archive ({e})") from None
