"""The SeiT token release layout (``X-token.data.bin.gz`` + ``X-token.index.npy.gz`` + ``X-label.txt``,
with ``codebook.ckpt`` and ``synonyms.json``): read directly, and convert to and from token stores.

Byte stream: every image's ids in raster order; an id below 255 is one byte, an id from 255 to 509 is
two bytes (255, id - 255). The index holds N+1 int64 byte offsets into the decompressed stream.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from seit.store.codec import DEFAULT_CODEC
from seit.store.errors import StoreError
from seit.store.reader import TokenStore
from seit.store.symbols import ESCAPE, MAX_ID
from seit.store.writer import StoreWriter
from seit.utils.io import atomic_open, atomic_write_bytes
from seit.utils.serialization import atomic_torch_save, safe_torch_load


def encode_stream(grids: Iterable[np.ndarray]) -> tuple[bytes, np.ndarray]:
    """Grids to (byte stream, offsets[N+1]) exactly as the SeiT release writes them."""
    parts: list[bytes] = []
    offsets = [0]
    for n, grid in enumerate(grids):
        flat = np.asarray(grid, dtype=np.int64).ravel()
        if flat.size and (flat.min() < 0 or flat.max() > MAX_ID):
            raise StoreError(
                f"sample {n}: id {int(flat.max())} cannot be written in the SeiT layout (largest id {MAX_ID}); "
                "prune the codebook first (seit tokenize --prune) or keep this data in a seit store"
            )
        wide = flat >= ESCAPE
        out = np.empty(flat.size + int(wide.sum()), dtype=np.uint8)
        pos = np.arange(flat.size) + np.concatenate(([0], np.cumsum(wide)[:-1]))
        out[pos] = np.where(wide, ESCAPE, flat)
        out[pos[wide] + 1] = flat[wide] - ESCAPE
        parts.append(out.tobytes())
        offsets.append(offsets[-1] + out.size)
    return b"".join(parts), np.asarray(offsets, dtype=np.int64)


def decode_sample(data: bytes | memoryview, numel: int) -> np.ndarray:
    """One image's bytes to ``numel`` ids (int64), checking the byte count.

    The byte after an escape is at most 254 (509 - 255), so every 255 in the stream is an escape.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    esc = np.flatnonzero(raw == ESCAPE)
    if esc.size and esc[-1] == raw.size - 1:
        raise StoreError("SeiT token stream ends inside a two-byte id (truncated file?)")
    keep = np.ones(raw.size, dtype=bool)
    keep[esc + 1] = False
    values = raw.astype(np.int64)
    values[esc] += raw[esc + 1]
    values = values[keep]
    if values.size != numel:
        raise StoreError(f"SeiT token stream: sample decodes to {values.size} ids, expected {numel}")
    return values


# ---- files of the release -----------------------------------------------------------------------------
TOKENS_SUFFIX = "-token.data.bin.gz"
INDEX_SUFFIX = "-token.index.npy.gz"
LABELS_SUFFIX = "-label.txt"
CODEBOOK_FILE = "codebook.ckpt"
SYNONYMS_FILE = "synonyms.json"


def release_paths(prefix: str | os.PathLike) -> dict[str, Path]:
    """``PREFIX-token.data.bin.gz``, ``PREFIX-token.index.npy.gz``, ``PREFIX-label.txt`` and, in the same
    directory, ``codebook.ckpt`` and ``synonyms.json``."""
    prefix = os.fspath(prefix)
    directory = Path(prefix).parent
    return {
        "tokens": Path(prefix + TOKENS_SUFFIX),
        "index": Path(prefix + INDEX_SUFFIX),
        "labels": Path(prefix + LABELS_SUFFIX),
        "codebook": directory / CODEBOOK_FILE,
        "synonyms": directory / SYNONYMS_FILE,
    }


def index_path_for(tokens: str | os.PathLike) -> Path:
    """The index file beside a token file, named as the reference code derives it."""
    return Path(os.fspath(tokens).replace("data.bin", "index.npy"))


MAX_CLASSES = 1 << 20  # the largest class id + 1 a label file may name (ImageNet-21k has 21,841 classes)
DEFLATE_MAX_RATIO = 1032  # deflate never expands data more than ~1032:1: bounds what a .gz can hold
_LABEL_LINE_BYTES = 32  # a generous bound on one label line ("1048575\r\n" with stray spaces)
_READ_CHUNK = 1 << 24


def stream_bound(tokens: str | os.PathLike) -> int:
    """The most bytes the gzip file ``tokens`` can decompress to."""
    try:
        return os.stat(tokens).st_size * DEFLATE_MAX_RATIO
    except OSError as e:
        raise StoreError(f"{tokens}: {'no such file' if isinstance(e, FileNotFoundError) else e.strerror}") from None


def _read_exact(f: io.BufferedIOBase, size: int) -> bytes:
    """Up to ``size`` bytes of ``f``, in chunks, so memory follows the data actually there, not the ask."""
    parts, left = [], size
    while left > 0:
        chunk = f.read(min(left, _READ_CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


@contextlib.contextmanager
def _open_gzip(path: Path) -> Iterator[gzip.GzipFile]:
    """``gzip.open(path)`` whose missing file and damaged or cut stream are one-line store errors."""
    try:
        with gzip.open(path, "rb") as f:
            yield f
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as e:
        raise StoreError(f"{path}: not a complete gzip file ({e}); re-download it") from None


def _gunzip(path: Path, size: int) -> bytes:
    """The ``size`` bytes a gzip file must hold, refusing one that holds more or less (no bomb can fill memory)."""
    with _open_gzip(path) as f:
        data = _read_exact(f, size)
        longer = bool(f.read(1))
    if len(data) != size or longer:
        raise StoreError(
            f"{path}: decompresses to {'more than ' if longer else ''}{len(data)} bytes, its index says {size}; "
            "the files do not belong together (or one is truncated)"
        )
    return data


def read_index(path: str | os.PathLike, *, numel: int | None = None, stream_bytes: int | None = None) -> np.ndarray:
    """The N+1 byte offsets (int64) of ``X-token.index.npy.gz``, checked before anything is sized by them.

    ``numel`` (ids per grid) bounds each sample to ``numel .. 2 * numel`` bytes (one or two per id);
    ``stream_bytes`` (see :func:`stream_bound`) bounds the offsets and, with it, how many the file may hold.
    """
    path = Path(path)
    with _open_gzip(path) as f:
        offsets = _read_offsets(f, path, numel or 1, stream_bytes)
        if f.read(1):
            raise StoreError(f"{path}: holds data after its offsets array (corrupt index)")
    if offsets[0] != 0:
        raise StoreError(f"{path}: offsets must start at 0, found {offsets[0]} (corrupt index)")
    sizes = np.diff(offsets)
    bad = np.flatnonzero((sizes < numel) | (sizes > 2 * numel)) if numel else np.flatnonzero(sizes < 0)
    if bad.size:
        i = int(bad[0])
        why = (
            f"a grid of {numel} ids takes {numel}..{2 * numel} bytes (corrupt index, or wrong --grid?)"
            if numel
            else "offsets never decrease (corrupt index)"
        )
        raise StoreError(f"{path}: sample {i} spans {sizes[i]} bytes; {why}")
    if stream_bytes is not None and offsets[-1] > stream_bytes:
        raise StoreError(f"{path}: offsets reach byte {offsets[-1]}, more than its token file can hold (corrupt index)")
    return offsets


def _read_offsets(f: io.BufferedIOBase, path: Path, numel: int, stream_bytes: int | None) -> np.ndarray:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=4096)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=4096)
        else:
            raise ValueError(f"npy version {version} is not one an index uses")
    except (OSError, EOFError, zlib.error):
        raise
    except Exception as e:  # numpy parses the header text: ValueError, SyntaxError, TokenError, ... on damage
        first_line = str(e).partition("\n")[0]  # numpy's header-size error goes on for three lines
        raise StoreError(f"{path}: not a .npy array inside the gzip ({type(e).__name__}: {first_line})") from None
    if len(shape) != 1 or shape[0] < 1 or dtype.kind not in "iu" or dtype.itemsize > 8:
        raise StoreError(f"{path}: expected a 1-D integer array of N+1 offsets, got {dtype} {shape}")
    most = (stream_bytes // numel + 1) if stream_bytes is not None else None
    if most is not None and shape[0] > most:
        raise StoreError(
            f"{path}: declares {shape[0] - 1} samples, more than its token file can hold ({most - 1}); "
            "the files do not belong together"
        )
    size = shape[0] * dtype.itemsize
    data = _read_exact(f, size)
    if len(data) != size:
        raise StoreError(f"{path}: ends after {len(data)} of its {size} bytes of offsets (truncated file)")
    offsets = np.frombuffer(data, dtype=dtype)
    if dtype.kind == "u" and dtype.itemsize == 8 and offsets.size and offsets.max() > np.iinfo(np.int64).max:
        raise StoreError(f"{path}: offset {offsets.max()} is beyond any file (corrupt index)")
    return offsets.astype(np.int64)


def read_labels(path: str | os.PathLike, count: int | None = None) -> np.ndarray:
    """One integer per line of ``X-label.txt`` (int64, -1 for unlabelled .. ``MAX_CLASSES - 1``);
    ``count`` checks the number of lines, and bounds what is read before that."""
    path = Path(path)
    try:
        if count is not None and path.stat().st_size > count * _LABEL_LINE_BYTES + 4096:
            raise StoreError(f"{path}: {path.stat().st_size} bytes is far more than {count} labels take; wrong file?")
        lines = path.read_text(encoding="ascii").split()
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: cannot read it as a label file ({e})") from None
    try:
        values = [int(x) for x in lines]
    except ValueError as e:
        raise StoreError(f"{path}: every line must be one integer class id ({e})") from None
    bad = next((n for n, v in enumerate(values) if not -1 <= v < MAX_CLASSES), None)
    if bad is not None:
        raise StoreError(
            f"{path}: label {values[bad]} (entry {bad + 1}) is outside -1 (unlabelled) .. {MAX_CLASSES - 1}; "
            "labels are class ids 0..K-1"
        )
    if count is not None and len(values) != count:
        raise StoreError(f"{path}: {len(values)} labels for {count} token grids; the files do not belong together")
    return np.array(values, dtype=np.int64)


def read_codebook(path: str | os.PathLike) -> np.ndarray:
    """``codebook.ckpt`` (``torch.save`` of a float tensor [K, D]), loaded with weights_only=True."""
    obj = safe_torch_load(path)
    if isinstance(obj, dict):  # tolerate a dict holding exactly one 2-D tensor
        tensors = [v for v in obj.values() if getattr(v, "ndim", 0) == 2]
        obj = tensors[0] if len(tensors) == 1 else obj
    if getattr(obj, "ndim", 0) != 2 or not obj.is_floating_point() or not len(obj):
        raise StoreError(f"{path}: expected a float tensor [K, D] (the codebook), got {type(obj).__name__}")
    return obj.detach().cpu().float().numpy()


def read_synonyms(path: str | os.PathLike, codebook_size: int) -> np.ndarray:
    """``synonyms.json`` ({"id": [ids, most similar first]}) as an array [K, k]."""
    path = Path(path)
    try:
        table = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except (OSError, ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise StoreError(f"{path}: not valid JSON ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(table, dict):
        raise StoreError(f'{path}: expected an object {{"id": [ids]}}, got {type(table).__name__}')
    missing = [i for i in range(codebook_size) if str(i) not in table]
    if missing or len(table) != codebook_size:
        raise StoreError(f"{path}: needs one entry per code 0..{codebook_size - 1} (missing e.g. {missing[:5]})")
    rows = [table[str(i)] for i in range(codebook_size)]
    if not all(isinstance(r, list) and all(type(x) is int for x in r) for r in rows):
        raise StoreError(f"{path}: every entry must be a list of integer code ids")
    if len({len(r) for r in rows}) != 1:
        raise StoreError(
            f"{path}: every code needs the same number of synonyms (found {sorted({len(r) for r in rows})})"
        )
    low, high = min((min(r, default=0) for r in rows), default=0), max((max(r, default=0) for r in rows), default=0)
    if low < 0 or high >= codebook_size:
        raise StoreError(f"{path}: synonym ids must lie in [0, {codebook_size}), found {low}..{high}")
    return np.asarray(rows, dtype=np.int64).reshape(codebook_size, -1)


def synonyms_json(synonyms: np.ndarray) -> dict[str, list[int]]:
    """A synonym table [K, k] as SeiT's ``synonyms.json`` holds it: ``{"id": [ids, most similar first]}``."""
    return {str(i): [int(x) for x in row] for i, row in enumerate(np.asarray(synonyms))}


def write_synonyms(path: str | os.PathLike, synonyms: np.ndarray) -> None:
    """A synonym table [K, k] as SeiT's ``synonyms.json``, atomically (byte for byte SeiT's layout)."""
    atomic_write_bytes(path, json.dumps(synonyms_json(synonyms)).encode())


def iter_release(
    tokens: str | os.PathLike, offsets: np.ndarray, grid_shape: Sequence[int], batch_size: int = 4096
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream the grids of a token file as (first index, grids [b, *grid] int64), without holding the file."""
    tokens, numel = Path(tokens), math.prod(grid_shape)
    n = len(offsets) - 1
    with _open_gzip(tokens) as f:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            data = _read_exact(f, int(offsets[stop] - offsets[start]))
            if len(data) != offsets[stop] - offsets[start]:
                end = int(offsets[start]) + len(data)
                cut = int(np.searchsorted(offsets, end, side="right")) - 1
                raise StoreError(f"{tokens}: stream ends at byte {end}, inside sample {cut} (truncated file)")
            grids = np.empty((stop - start, *grid_shape), dtype=np.int64)
            base = offsets[start]
            for i in range(start, stop):
                try:
                    grids[i - start] = decode_sample(data[offsets[i] - base : offsets[i + 1] - base], numel).reshape(
                        grid_shape
                    )
                except StoreError as e:
                    raise StoreError(f"{tokens}: sample {i}: {e} (wrong --grid?)") from None
            yield start, grids
        if f.read(1):
            raise StoreError(f"{tokens}: longer than its index says; the files do not belong together")


class SeitReleaseDataset(torch.utils.data.Dataset):
    """SeiT's released token files as a map-style dataset, batched like :class:`seit.store.TokenDataset`.

    The decompressed byte stream is held in memory (as the reference code does; ~1.2 GB for ImageNet
    train); ``__getitems__`` returns ``(ids [B, *grid] int16, labels [B] int64)``, use ``collate_fn=collate``.
    """

    def __init__(
        self,
        tokens: str | os.PathLike,
        index: str | os.PathLike | None = None,
        labels: str | os.PathLike | None = None,
        *,
        grid_shape: Sequence[int] = (32, 32),
    ) -> None:
        self.tokens = Path(tokens)
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.numel = math.prod(self.grid_shape)
        index = index or index_path_for(tokens)
        self.offsets = read_index(index, numel=self.numel, stream_bytes=stream_bound(self.tokens))
        n = len(self.offsets) - 1
        self.labels = read_labels(labels, n) if labels is not None else np.full(n, -1, dtype=np.int64)
        self.data = _gunzip(self.tokens, int(self.offsets[-1]))

    def __len__(self) -> int:
        return len(self.labels)

    def grid(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"sample index {i} out of range for {len(self)} samples")
        try:
            ids = decode_sample(self.data[self.offsets[i] : self.offsets[i + 1]], self.numel)
        except StoreError as e:
            raise StoreError(f"{self.tokens}: sample {i}: {e} (wrong grid_shape?)") from None
        return ids.astype(np.int16).reshape(self.grid_shape)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.grid(int(i))), int(self.labels[i])

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        grids = np.stack([self.grid(int(i)) for i in indices]) if len(indices) else np.zeros((0, *self.grid_shape))
        return torch.from_numpy(grids.astype(np.int16)), torch.from_numpy(self.labels[np.asarray(indices, dtype=int)])


# ---- conversion to and from token stores --------------------------------------------------------------
def import_seit(
    out: str | os.PathLike,
    *,
    tokens: str | os.PathLike,
    index: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    codebook: str | os.PathLike | None = None,
    synonyms: str | os.PathLike | None = None,
    grid_shape: Sequence[int] = (32, 32),
    codebook_size: int | None = None,
    class_names: Sequence[str] | None = None,
    codec: str = DEFAULT_CODEC,
    shard_bytes: int = 128 << 20,
    resume: bool = False,
    show_progress: bool = False,
) -> Path:
    """Convert SeiT release files into a token store at ``out`` (keys are the sample numbers)."""
    index = Path(index) if index is not None else index_path_for(tokens)
    offsets = read_index(index, numel=math.prod(grid_shape), stream_bytes=stream_bound(tokens))
    n = len(offsets) - 1
    label_array = read_labels(labels, n) if labels is not None else np.full(n, -1, dtype=np.int64)
    book = read_codebook(codebook) if codebook is not None else None
    if book is None and codebook_size is None:
        raise StoreError("import-seit needs the codebook (--codebook codebook.ckpt) or its size (--codebook-size)")
    size = len(book) if book is not None else int(codebook_size)
    if book is not None and codebook_size is not None and codebook_size != size:
        raise StoreError(f"{codebook}: holds {size} codes, --codebook-size says {codebook_size}")
    syn = read_synonyms(synonyms, size) if synonyms is not None else None
    config = {"source": "seit-release", "tokens": str(tokens), "index": str(index), "labels": str(labels)}
    with StoreWriter(
        out,
        grid_shape=grid_shape,
        codebook_size=size,
        class_names=class_names,
        codebook=book,
        synonyms=syn,
        shard_bytes=shard_bytes,
        codec=codec,
        config=config,
        resume=resume,
        show_progress=show_progress,
        total=n,
    ) as writer:
        done = writer.done_keys
        for start, grids in iter_release(tokens, offsets, grid_shape):
            if grids.size and grids.max() >= size:
                bad = start + int(np.flatnonzero(grids.reshape(len(grids), -1).max(axis=1) >= size)[0])
                raise StoreError(f"{tokens}: sample {bad} has id {grids.max()} >= codebook size {size}")
            keys = [str(i) for i in range(start, start + len(grids))]
            keep = [j for j, k in enumerate(keys) if k not in done]
            if keep:  # a resumed import skips what it holds (all of it, once finished)
                writer.append_batch(grids[keep], label_array[start : start + len(grids)][keep], [keys[j] for j in keep])
    return Path(out)


def export_seit(
    store_path: str | os.PathLike,
    out_prefix: str | os.PathLike,
    *,
    overwrite: bool = False,
    show_progress: bool = False,
) -> dict[str, Path]:
    """Write a token store in the SeiT release layout (same file names); ids above 509 cannot be written."""
    paths = release_paths(out_prefix)
    store = TokenStore.open(store_path)
    wanted = ["tokens", "index", "labels"] + [k for k in ("codebook", "synonyms") if store.manifest.get(k)]
    existing = [str(paths[k]) for k in wanted if paths[k].exists()]
    if existing and not overwrite:
        raise StoreError(f"would overwrite {', '.join(existing)}; pass --overwrite or choose another prefix")
    if store.codebook_size > MAX_ID + 1:  # fail before writing anything if the data cannot fit
        for idx, ids, _ in store.iter_batches(show_progress=show_progress, desc="check ids"):
            over = np.flatnonzero(ids.reshape(len(ids), -1).max(axis=1) > MAX_ID)
            if over.size:
                i = int(idx[over[0]])
                raise StoreError(
                    f"{store_path}: sample {i} (key {store.key(i)!r}) has id {int(ids[over[0]].max())}; the SeiT "
                    f"layout holds ids up to {MAX_ID} only: prune the codebook first or keep this data as a store"
                )
    offsets = [np.zeros(1, dtype=np.int64)]
    with atomic_open(paths["tokens"], "wb") as raw:
        name = paths["tokens"].name.removesuffix(".gz")
        with gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=0) as gz:
            for _, ids, _ in store.iter_batches(show_progress=show_progress, desc="export"):
                data, offs = encode_stream(ids)
                gz.write(data)
                offsets.append(offs[1:] + offsets[-1][-1])
    npy = io.BytesIO()
    np.save(npy, np.concatenate(offsets), allow_pickle=False)
    atomic_write_bytes(paths["index"], gzip.compress(npy.getvalue(), mtime=0))
    atomic_write_bytes(paths["labels"], "".join(f"{int(x)}\n" for x in store.labels).encode())
    if store.codebook is not None:
        atomic_torch_save(torch.from_numpy(store.codebook.copy()), paths["codebook"])
    if store.synonyms is not None:
        write_synonyms(paths["synonyms"], store.synonyms)
    return {k: paths[k] for k in wanted}
