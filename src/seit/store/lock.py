"""One writer per store part: an advisory lock file that the OS releases when its holder dies."""

from __future__ import annotations

from pathlib import Path

from seit.store.errors import StoreError
from seit.utils.lock import FileLock


class WriterLock(FileLock):
    """Held while a process writes part ``part`` of the store at ``directory`` (``.writer-PPPPP.lock``).

    A second writer of the same part fails at once, naming the holder; a writer killed by SIGKILL leaves the
    file behind but not the lock, so a resumed write proceeds. ``release`` deletes the file.
    """

    def __init__(self, directory: Path, part: int) -> None:
        def busy(holder: str) -> StoreError:
            return StoreError(
                f"{directory}: already being written by {holder}; wait for it to finish, or stop it and re-run "
                "with --resume (resume=True)"
            )

        super().__init__(directory / f".writer-{part:05d}.lock", busy)
