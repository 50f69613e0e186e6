"""One writer per output: an advisory lock file (``fcntl.flock``) that the OS releases when its holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import platform
from pathlib import Path

from seit.store.errors import StoreError

logger = logging.getLogger(__name__)


class WriterLock:
    """Held while a process writes part ``part`` of the store at ``directory`` (``.writer-PPPPP.lock``).

    A second writer of the same part fails at once, naming the holder; a writer killed by SIGKILL leaves the
    file behind but not the lock, so a resumed write proceeds. ``release`` deletes the file.
    """

    def __init__(self, directory: Path, part: int) -> None:
        self.path = directory / f".writer-{part:05d}.lock"
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").split()
                os.close(fd)
                pid, host = [*holder, "?", "?"][:2]
                raise StoreError(
                    f"{directory}: already being written by pid {pid} (host {host}); wait for it to finish, or stop "
                    "it and re-run with --resume (resume=True)"
                ) from None
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
