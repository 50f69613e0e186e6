"""seit.runtime: the output folder rules, --resume auto|PATH and the stop signals every long job shares."""

import os
import signal
from pathlib import Path

import pytest
import torch

from seit.runtime import RunError, StopSignal, check_output, prepare_output, resume_checkpoint


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
