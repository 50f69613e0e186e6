"""The ``seit`` command: a thin shell over the Python API, one module per command group.

Group modules import heavy libraries (torch, timm) inside their handlers, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import sys
from typing import Any

from seit import __version__
from seit.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_USAGE,
    ConfigError,
    SeitError,
)

# Command groups in the order of the data flow; each module defines register(subparsers).
GROUPS = (
    "store", "tokenizer", "tokenize", "synonyms", "decode", "tokenadapt", "pretrain", "train", "eval", "continual",
    "scenario", "tradeoff", "demo", "bench",
)  # fmt: skip

DESCRIPTION = """\
seit: train image classifiers from compact VQ tokens instead of pixels (SeiT / SeiT++).

Data flow: images -> `seit tokenize` (ViT-VQGAN) -> token store -> `seit train` (token ViT)
-> `seit eval` (on token stores or on images through the tokenizer). Run `seit demo` to see
the whole method end to end on a built-in dataset.
"""

EPILOG = f"""\
exit status:
  {EXIT_OK:<4} done
  {EXIT_ERROR:<4} error: bad input data, or a file or folder that cannot be read or written (the message names it)
  {EXIT_USAGE:<4} usage: an unknown flag, or a flag value that cannot work (the message names the flag)
  {EXIT_PREEMPTED:<4} stopped by Ctrl-C, SIGTERM or SIGUSR1 after saving the current step: rerun with
       --resume auto to continue (every long job: `seit train`, `seit pretrain`, `seit tokenizer train`,
       `seit tokenize`, `seit tokenadapt train`, `seit continual`); `seit tradeoff` and `seit demo`
       continue when rerun as they were
  {EXIT_INTERRUPTED:<4} interrupted (a second Ctrl-C, or Ctrl-C in a command that does not checkpoint)
"""


def stopped_by_signal(saved: Any, where: str, rerun: str | None = None) -> int:
    """How every long job's command ends after a stop signal: the one resume hint on stderr, exit 75.

    ``rerun``: what continues it, when not ``--resume auto`` (the jobs that continue on their own).
    """
    from seit.runtime import resume_hint

    hint = resume_hint(saved, where) if rerun is None else resume_hint(saved, where, rerun)
    print(f"seit: {hint}", file=sys.stderr)
    return EXIT_PREEMPTED


# What to do about an environment error, by errno; the message also names the path and the system's reason.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write somewhere else, then rerun (finished work is kept)",
    errno.EDQUOT: "the disk quota is exhausted: free space or write somewhere else, then rerun",
    errno.EACCES: "check its permissions, or choose a path you may use",
    errno.EPERM: "check its permissions, or choose a path you may use",
    errno.EROFS: "the file system is read-only: choose a writable output folder",
    errno.EEXIST: "a file is in the way where a folder is needed: choose another output path",
    errno.ENOTDIR: "a file is in the way where a folder is needed: choose another output path",
    errno.EISDIR: "a folder is in the way where a file is needed: give a file path",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples; wider option column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=100)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "hidden_option_strings", ())
        if not hidden:
            return super()._format_action_invocation(action)
        shown = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(_with_options(action, shown))


def _with_options(action: argparse.Action, options: list[str]) -> argparse.Action:
    """A shallow copy of ``action`` showing only ``options`` (a former spelling stays accepted, not shown)."""
    import copy

    shown = copy.copy(action)
    shown.option_strings = options
    return shown


class Parser(argparse.ArgumentParser):
    """Every seit parser: no abbreviated flags (``--drop`` must never mean ``--drop-path``).

    Sub-command parsers are made by ``add_subparsers``/``add_parser`` with the class of their parent, so the
    whole tree inherits this.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="seit", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"seit {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(f"seit.cli.{name}").register(sub)
    _add_verbosity(parser, top=True)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``-v`` / ``-q`` on ``seit`` and on every command (given after the command, they override the top's)."""
    default = 0 if top else argparse.SUPPRESS
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=default,
                       help="also log debugging detail")  # fmt: skip
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=default,
                       help="log only warnings and errors")  # fmt: skip
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                _add_verbosity(child)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest's capture swaps it per test)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbosity: int) -> None:
    """Library modules log through ``logging`` (logger ``seit``); the CLI shows them as ``seit: ...`` lines."""
    logger = logging.getLogger("seit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("seit: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[verbosity])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbosity)
    run = getattr(args, "run", None)
    if run is None:
        # A group name alone (e.g. `seit store`) prints that group's help.
        (getattr(args, "group_parser", None) or parser).print_help()
        return EXIT_USAGE
    try:
        return int(run(args) or EXIT_OK)
    except ConfigError as e:
        print(f"seit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SeitError as e:
        print(f"seit: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        if e.errno is None:  # not an environment error with a reason (e.g. a library's own OSError): a bug
            raise
        print(f"seit: error: {os_error_message(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("seit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def emit_json(target: str | None, obj: Any) -> bool:
    """``--json [PATH]``: alone (``-``) print ``obj`` as JSON and return True (print nothing else); with PATH, write
    it there atomically and return False (the usual output follows)."""
    if target is None:
        return False
    if target == "-":
        print(json.dumps(obj, indent=1))
        return True
    from seit.utils.io import atomic_write_json

    atomic_write_json(target, obj)
    return False


def os_error_message(e: OSError) -> str:
    """One line for an environment error: the path, the system's reason and what to do."""
    where = f"{e.filename}: " if e.filename is not None else ""
    reason = e.strerror or errno.errorcode.get(e.errno, str(e.errno))
    hint = _OS_HINTS.get(e.errno)
    return f"{where}{reason}" + (f"; {hint}" if hint else "")
