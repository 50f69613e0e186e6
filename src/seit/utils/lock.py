"""Advisory lock files (``fcntl.flock``): one writer per output, released by the OS when the holder dies.

A lock file names its holder (``PID HOST``). A holder killed by SIGKILL leaves the file but not the lock, so
the next writer proceeds; :func:`held_by` tells a live holder from such a leftover without taking the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


class FileLock:
    """Hold ``path`` exclusively until :meth:`release` (which deletes it); ``busy(holder)`` makes the error to raise."""

    def __init__(self, path: Path, busy: Callable[[str], Exception]) -> None:
        self.path = path
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise busy(holder) from None
            except OSError as e:  # e.g. a network filesystem without flock: write on, unguarded
                logger.warning("%s: cannot lock (%s); make sure no other writer uses this output", self.path, e)
                break
            # the holder may have deleted the file between our open and flock: then lock the new one
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {platform.node()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    pid, host = [*os.read(fd, 200).decode(errors="replace").split(), "?", "?"][:2]
    return f"pid {pid} (host {host})"


def held_by(directory: Path) -> str | None:
    """The holder of a live lock file directly in ``directory`` ("pid N (host H)"), or None.

    Probes with a shared lock, which never blocks another probe, only a live exclusive holder.
    """
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob(f".*{LOCK_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # deleted meanwhile, or unreadable: not ours to judge
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd)
        except OSError:
            continue
        finally:
            os.close(fd)
    return None


def is_lock_file(name: str) -> bool:
    return name.startswith(".") and name.endswith(LOCK_SUFFIX)
