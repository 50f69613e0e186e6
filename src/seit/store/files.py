"""Where a store's files live: a local directory (memory-mapped) or any fsspec URL (byte-range reads)."""

from __future__ import annotations

import logging
import mmap
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seit.store.errors import StoreError
from seit.store.format import check_file_name

# Reads of nearby byte ranges are merged when the gap between them is below this (bytes): a local read
# costs little per request, a request to object storage costs about as much as a few MB of transfer.
LOCAL_MAX_GAP = 128 << 10
REMOTE_MAX_GAP = 4 << 20
# A remote read that fails (dropped connection, truncated body, timeout) is tried this many times in all,
# waiting REMOTE_RETRY_WAIT_S, then twice that, ... between tries, before it becomes a StoreError.
REMOTE_TRIES = 3
REMOTE_RETRY_WAIT_S = 0.2
# The optional extra (pyproject) that brings each remote protocol's fsspec filesystem.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}

log = logging.getLogger(__name__)


def is_url(path: str | os.PathLike) -> bool:
    s = os.fspath(path)
    return "://" in s and not s.startswith("file://")


def local_path(path: str | os.PathLike) -> Path:
    return Path(os.fspath(path).removeprefix("file://"))


def inside(root: str | os.PathLike, name: str, where: str) -> Path:
    """``root/name`` for a file name read from a store's own files: a plain name (see ``check_file_name``) that
    must not resolve outside ``root``, through symlinks either; anything else raises naming ``where``."""
    check_file_name(name, where)
    path = Path(root) / name
    real, top = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, top]) != top or real == top:
        raise StoreError(f"{where}: {name!r} resolves outside the store ({real}); a store's files must be in it")
    return path


class StoreFiles:
    """Read access to the files of one store directory, named relative to it."""

    def __init__(self, url: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> None:
        self.url = os.fspath(url)
        self.storage_options = storage_options or {}
        self.fs = None
        if is_url(self.url):
            import fsspec

            try:
                self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
            except ImportError as err:
                protocol = self.url.split("://", 1)[0]
                extra = EXTRAS.get(protocol)
                fix = f"pip install 'seit[{extra}]'" if extra else f"install the fsspec filesystem for {protocol}://"
                raise StoreError(f"{self.url}: reading {protocol}:// stores needs a package: {fix} ({err})") from None
            self.root = self.root.rstrip("/")
        else:
            self.root = str(local_path(self.url))

    @property
    def is_local(self) -> bool:
        return self.fs is None

    @property
    def max_gap(self) -> int:
        return LOCAL_MAX_GAP if self.is_local else REMOTE_MAX_GAP

    def where(self, name: str) -> str:
        """The user-facing location of a file, for messages."""
        return f"{self.url.rstrip('/')}/{name}"

    def _path(self, name: str) -> str:
        if self.is_local:
            return os.fspath(inside(self.root, name, self.where(name)))
        return f"{self.root}/{check_file_name(name, self.where(name))}"

    def exists(self, name: str) -> bool:
        return os.path.exists(self._path(name)) if self.is_local else self.fs.exists(self._path(name))

    def listdir(self) -> list[str]:
        if self.is_local:
            return sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []
        if not self.fs.isdir(self.root):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))

    def size(self, name: str) -> int:
        try:
            if self.is_local:
                return os.path.getsize(self._path(name))
            return self._retried(name, lambda: int(self.fs.size(self._path(name))))
        except FileNotFoundError:
            raise self.missing(name) from None

    def _retried(self, name: str, read, check=None):
        """``read()`` of a remote file, tried again after a network failure or a ``check`` that raises
        StoreError (a short read); after REMOTE_TRIES failures, a StoreError naming the file."""
        for attempt in range(1, REMOTE_TRIES + 1):
            try:
                out = read()
                if check is not None:
                    check(out)
                return out
            except FileNotFoundError:
                raise
            except Exception as err:  # each filesystem has its own network errors (aiohttp, botocore, OSError)
                if attempt == REMOTE_TRIES:
                    raise StoreError(
                        f"{self.where(name)}: read failed {REMOTE_TRIES} times, last with {type(err).__name__}: "
                        f"{err}; check the connection and the storage, then run again"
                    ) from err
                wait = REMOTE_RETRY_WAIT_S * 2 ** (attempt - 1)
                log.warning(
                    "%s: read failed (%s: %s); trying again in %.1fs", self.where(name), type(err).__name__, err, wait
                )
                time.sleep(wait)
        raise AssertionError("unreachable")

    def missing(self, name: str) -> StoreError:
        return StoreError(
            f"{self.where(name)}: missing file listed in the store manifest; the store is incomplete "
            "(copy it again, or re-create it)"
        )

    def read_bytes(self, name: str, limit: int) -> bytes:
        """A whole file of at most ``limit`` bytes (checked before it is read)."""
        size = self.size(name)
        if size > limit:
            raise StoreError(f"{self.where(name)}: {size} bytes, more than the {limit} such a file can hold (corrupt?)")
        try:
            if self.is_local:
                return Path(self._path(name)).read_bytes()
            return self._retried(
                name, lambda: self.fs.cat_file(self._path(name)), lambda b: self._check(name, [0], [size], [b])
            )
        except FileNotFoundError:
            raise self.missing(name) from None

    def read_ranges(self, name: str, starts: Sequence[int], ends: Sequence[int]) -> list[bytes]:
        """Byte ranges [start, end) of one file; remote filesystems fetch them concurrently."""
        if not len(starts):
            return []
        try:
            if self.is_local:
                with open(self._path(name), "rb") as f:
                    out = []
                    for s, e in zip(starts, ends):
                        f.seek(s)
                        out.append(f.read(e - s))
            else:
                paths, starts, ends = [self._path(name)] * len(starts), list(starts), list(ends)
                return self._retried(
                    name,
                    lambda: self.fs.cat_ranges(paths, starts, ends, on_error="raise"),
                    lambda out: self._check(name, starts, ends, out),
                )
        except FileNotFoundError:
            raise self.missing(name) from None
        self._check(name, starts, ends, out)
        return out

    def _check(self, name: str, starts: Sequence[int], ends: Sequence[int], out: Sequence[bytes]) -> None:
        for s, e, b in zip(starts, ends, out):
            if len(b) != e - s:
                raise StoreError(f"{self.where(name)}: read {len(b)} bytes at {s}, expected {e - s} (truncated file?)")

    def map(self, name: str) -> mmap.mmap:
        """A read-only memory map of a local file."""
        try:
            with open(self._path(name), "rb") as f:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise self.missing(name) from None
        except ValueError:  # mmap of an empty file
            raise StoreError(f"{self.where(name)}: empty file (truncated?); re-copy the store") from None

    def __getstate__(self) -> dict[str, Any]:
        # filesystem objects hold sessions that must not cross processes; rebuilt from the URL
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])
