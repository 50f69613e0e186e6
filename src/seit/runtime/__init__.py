"""What every long job shares: its output folder, resume, the stop signals and the resume hint.

`seit train` and `seit tokenizer train` run on this, so they behave alike:
- a run into a non-empty output folder refuses unless it resumes (``--resume auto|PATH``) or starts over
  (``--restart``, which moves the old run aside, never deletes it);
- SIGINT, SIGTERM and SIGUSR1 (which SLURM can send before a deadline) all save the current step and stop
  with :data:`~seit.errors.EXIT_PREEMPTED` and one message saying how to resume; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seit.errors import SeitError
from seit.utils import dist as seit_dist
from seit.utils.dist import DistInfo
from seit.utils.lock import FileLock, held_by, is_lock_file
from seit.utils.progress import progress

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class RunError(SeitError):
    """A run that cannot start as asked (output in use, missing checkpoint); the message says what to pass."""


RUN_LOCK = ".run.lock"  # held in the output folder by the main rank while a job writes there


def check_output(output: str | Path, *, resume: str | None, restart: bool) -> None:
    """Refuse to write a new run over a non-empty ``output`` unless resuming or restarting, and any run into an
    output a live process writes (read-only: every rank)."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: a file is in the way where the output folder should be; choose another --output")
    holder = held_by(out)
    if holder is not None:  # resuming or moving it aside now would interleave two writers
        raise RunError(
            f"{out}: already being written by {holder}; wait for it to finish, or stop it and rerun with "
            "--resume auto (or --restart)"
        )
    if resume is None and not restart and out.is_dir() and any(not is_lock_file(p.name) for p in out.iterdir()):
        raise RunError(
            f"{out} already holds a run; continue it with --resume auto, start over with --restart (moves the old "
            "run aside), or choose another --output"
        )


def prepare_output(output: str | Path, *, restart: bool) -> Path:
    """Create ``output`` (main rank); with ``restart``, first move a non-empty one aside to ``OUTPUT.old-N``."""
    out = Path(output)
    if restart and out.is_dir() and any(not is_lock_file(p.name) for p in out.iterdir()):
        n = 1
        while out.with_name(f"{out.name}.old-{n}").exists():
            n += 1
        aside = out.with_name(f"{out.name}.old-{n}")
        out.rename(aside)
        log.info("moved the previous run in %s to %s", out, aside)
    out.mkdir(parents=True, exist_ok=True)
    return out


def resume_checkpoint(resume: str | None, default: Path) -> Path | None:
    """The checkpoint ``--resume`` names: ``auto`` is ``default`` when it exists (else a fresh start), or a path."""
    if resume is None:
        return None
    if resume == "auto":
        return default if default.exists() else None
    path = Path(resume)
    if not path.exists():
        raise RunError(f"{path}: checkpoint to resume from does not exist (use --resume auto to start fresh)")
    return path


def resume_hint(saved: Path, where: str, rerun: str = "the same command with --resume auto") -> str:
    """The one message of a stopped run, for every long job (``where``: e.g. "at step 40")."""
    return f"stopped {where}; {saved} saved: rerun {rerun} to continue"


class StopSignal:
    """SIGINT / SIGTERM / SIGUSR1 set a flag the loop reads between steps; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError):  # not in the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: do not wait for the step to end
        self.received = signum
        log.info("%s received: saving after this step", signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, device: torch.device) -> bool:
        """True on every rank as soon as any rank was signalled (all ranks must stop at the same step)."""
        return seit_dist.any_rank(self.received is not None, device)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of data loaders: the main process handles stop signals, then shuts the workers down."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@dataclass
class Run:
    """One job's process group, output folder and stop signals (see :func:`start`)."""

    info: DistInfo
    output: Path
    stop: StopSignal

    def announce(self, job: str) -> None:
        """Name where the outputs go, once the job is set up (main rank)."""
        if self.info.is_main:
            log.info("%s: writing to %s", job, self.output)


@contextlib.contextmanager
def start(
    output: str | Path, *, device: str | None, resume: str | None, restart: bool, timeout_s: int = 1800
) -> Iterator[Run]:
    """Join the process group, claim ``output`` (refusing a run in use, see :func:`check_output`), catch stop signals.

    Every rank checks the folder before the main rank changes it, so all ranks decide alike; the main rank then
    holds OUTPUT/.run.lock until the job ends, so a second job into the same folder is refused. ``timeout_s``:
    how long a collective waits for the slowest rank (longer for jobs whose ranks meet only at the end).
    """
    with seit_dist.process_group(device, timeout_s=timeout_s) as info:
        check_output(output, resume=resume, restart=restart)
        seit_dist.barrier()
        lock = None
        if info.is_main:
            out = prepare_output(output, restart=restart)
            lock = FileLock(out / RUN_LOCK, lambda holder: RunError(f"{out}: already being written by {holder}"))
        seit_dist.barrier()
        try:
            with StopSignal() as stop:
                yield Run(info, Path(output), stop)
        finally:
            if lock is not None:
                lock.release()


class RunProgress:
    """One bar over the whole run (its ETA is the run's) that names the epoch and that epoch's ETA."""

    def __init__(self, total: int, done: int, epochs: int) -> None:
        self.epochs = epochs
        self.bar = progress(total=total, initial=done, desc="train", unit="step")
        self._epoch_steps = self._epoch_done = 0
        self._epoch_start = time.perf_counter()

    def start_epoch(self, epoch: int, steps: int) -> None:
        """``epoch`` counts from 0 as the loop does; shown from 1, as the summary line after it."""
        self.bar.set_description(f"epoch {epoch + 1}/{self.epochs}")
        self._epoch_steps, self._epoch_done, self._epoch_start = steps, 0, time.perf_counter()

    def step(self, **postfix: str) -> None:
        self._epoch_done += 1
        rate = self._epoch_done / max(time.perf_counter() - self._epoch_start, 1e-9)
        left = (self._epoch_steps - self._epoch_done) / rate
        self.bar.set_postfix(epoch_eta=f"{left:.0f}s", **postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
