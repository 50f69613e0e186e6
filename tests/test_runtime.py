"""seit.runtime: the output folder rules, --resume auto|PATH and the stop signals every long job shares."""

import os
import signal
from pathlib import Path

import pytest
import torch

from seit import runtime
from seit.runtime import RUN_LOCK, RunError, StopSignal, check_output, prepare_output, resume_checkpoint
from seit.store.lock import WriterLock


def test_a_first_signal_asks_to_stop_after_the_step_and_a_second_ctrl_c_interrupts_at_once():
    with StopSignal() as stop:
        assert not stop.agreed(torch.device("cpu"))
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == signal.SIGINT and stop.agreed(torch.device("cpu"))
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored on the way out


def test_sigusr1_like_slurm_sends_before_a_deadline_also_stops():
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.received == signal.SIGUSR1


def test_output_rules(tmp_path):
    check_output(tmp_path / "new", resume=None, restart=False)  # absent: fine
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", resume=None, restart=False)
    used = tmp_path / "used"
    used.mkdir()
    (used / "last.pt").write_bytes(b"x")
    with pytest.raises(RunError, match="already holds a run"):
        check_output(used, resume=None, restart=False)
    check_output(used, resume="auto", restart=False)
    assert prepare_output(used, restart=True) == used and not any(used.iterdir())
    assert (tmp_path / "used.old-1" / "last.pt").read_bytes() == b"x"


def test_a_job_holds_its_output_so_a_second_job_neither_resumes_nor_moves_it_aside(tmp_path):
    """Two jobs in one folder would interleave checkpoints and logs: the second stops at once, naming the first."""
    out = tmp_path / "run"
    with runtime.start(out, device="cpu", resume=None, restart=False):
        (out / "last.pt").write_bytes(b"first")
        assert (out / RUN_LOCK).exists()
        for resume, restart in (("auto", False), (None, True)):
            busy = rf"{out}: already being written by pid {os.getpid()} \(host "
            with pytest.raises(RunError, match=busy), runtime.start(out, device="cpu", resume=resume, restart=restart):
                pass
        assert (out / "last.pt").read_bytes() == b"first" and not (tmp_path / "run.old-1").exists()
    assert not (out / RUN_LOCK).exists()  # released: the next job proceeds
    with runtime.start(out, device="cpu", resume="auto", restart=False):
        pass


def test_restart_refuses_a_folder_a_store_writer_holds(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    lock = WriterLock(store, 0)  # what a running `seit tokenize --output store` holds
    try:
        with pytest.raises(RunError, match="already being written by pid"):
            check_output(store, resume=None, restart=True)
    finally:
        lock.release()
    check_output(store, resume=None, restart=True)


def test_a_lock_file_left_by_a_killed_job_neither_blocks_nor_counts_as_a_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / RUN_LOCK).write_text("12345 elsewhere\n")  # SIGKILL leaves the file; the OS dropped the lock
    check_output(out, resume=None, restart=False)  # nothing else there: not a run to protect
    (out / "last.pt").write_bytes(b"x")
    check_output(out, resume="auto", restart=False)
    with pytest.raises(RunError, match="already holds a run"):
        check_output(out, resume=None, restart=False)


def test_resume_auto_or_path(tmp_path):
    default = tmp_path / "last.pt"
    assert resume_checkpoint(None, default) is None
    assert resume_checkpoint("auto", default) is None  # nothing yet: a fresh start
    default.write_bytes(b"x")
    assert resume_checkpoint("auto", default) == default
    with pytest.raises(RunError, match=r"nope\.pt: checkpoint to resume from does not exist"):
        resume_checkpoint(str(tmp_path / "nope.pt"), default)


def test_no_function_in_the_long_jobs_is_longer_than_60_lines():
    """The loops read like torchtitan's: small methods, the step and the run each in their own."""
    import ast

    import seit

    src = Path(seit.__file__).parent
    files = ["engine/train.py", "tokenizer/train.py", "tokenizer/to_store.py", "runtime/__init__.py"]
    long = [
        f"{name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name in files
        for node in ast.walk(ast.parse((src / name).read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60
    ]
    assert not long
