"""Typed configs and their one-to-one mapping onto command-line flags.

Every job is described by a dataclass. The CLI is generated from it (one flag per field, the field's
``help`` metadata as help text, its default shown), and the same dataclass is saved inside the
checkpoints and manifests the job writes, so a run can be reproduced from its artefacts.

Field metadata understood here:
  help     text for ``--help``
  choices  allowed values
  positional  the field is a positional argument
  const    the value of the flag given alone (its value is then optional)
  flag     the flag's name when it differs from the field's (``flag="output"`` for a field ``out``)
  hidden   former spellings still accepted but left out of ``--help`` (``hidden=("--out",)``)
  check    a predicate from this module (``at_least(1)``, ``probability``, ...) that every value must pass;
           :class:`Checked` configs run them in ``__post_init__``, so the CLI and the Python API fail the same
           way: one line naming the flag, e.g. ``--batch-size must be >= 1, got 0``
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from seit.errors import ConfigError

T = TypeVar("T")

# A field check: None if the value is fine, else what it must be ("must be >= 1").
Check = Callable[[Any], "str | None"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def at_least(lo: float) -> Check:
    """value >= lo (and finite: NaN and inf fail every numeric check)."""
    return lambda v: None if _number(v) and v >= lo else f"must be >= {lo}"


def greater_than(lo: float) -> Check:
    return lambda v: None if _number(v) and v > lo else f"must be > {lo}"


def between(lo: float, hi: float, *, include_lo: bool = True, include_hi: bool = True) -> Check:
    """lo <= value <= hi (or lo < value, value < hi)."""
    left, right = "[" if include_lo else "(", "]" if include_hi else ")"
    return lambda v: (
        None
        if _number(v) and (lo <= v if include_lo else lo < v) and (v <= hi if include_hi else v < hi)
        else f"must be in {left}{lo}, {hi}{right}"
    )


def each(check: Check) -> Check:
    """Apply ``check`` to every element of a list/tuple value."""
    return lambda v: next((f"values {p}" for p in map(check, v) if p), None)


positive = greater_than(0)
non_negative = at_least(0)
probability = between(0, 1)


def arg_type(convert: Callable[[str], Any], check: Check) -> Callable[[str], Any]:
    """An argparse ``type`` for a flag outside a config dataclass: ``convert``, then ``check`` (exit 2 naming it)."""

    def parse(text: str) -> Any:
        value = convert(text)
        problem = check(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text}")
        return value

    parse.__name__ = convert.__name__  # argparse's "invalid int value" names the type
    return parse


def flag_name(name: str) -> str:
    """The flag a field is set with on the command line: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def field_flag(f: dataclasses.Field) -> str:
    """The flag of a dataclass field: its ``flag`` metadata, or its name."""
    return flag_name(f.metadata.get("flag", f.name))


def check_fields(cfg: Any) -> None:
    """Run every field's ``check`` (unset optional values pass); raise ConfigError naming the first bad flag."""
    for f in dataclasses.fields(cfg):
        check, value = f.metadata.get("check"), getattr(cfg, f.name)
        if check is None or value is None:
            continue
        problem = check(value)
        if problem:
            name = f.name.upper() if f.metadata.get("positional") else field_flag(f)
            shown = repr(value) if isinstance(value, str) else str(list(value) if isinstance(value, tuple) else value)
            raise ConfigError(f"{name} {problem}, got {shown}")


class Checked:
    """Dataclass mixin: construction checks every field (``check=`` metadata).

    A config with checks across fields overrides ``__post_init__`` and calls ``super().__post_init__()`` first.
    """

    def __post_init__(self) -> None:
        check_fields(self)


def field(default: Any = dataclasses.MISSING, *, help: str = "", **meta: Any) -> Any:
    """A dataclass field carrying its CLI help (and optional choices/positional/check)."""
    kwargs: dict[str, Any] = {"metadata": {"help": help, **meta}}
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        kwargs["default_factory"] = default  # a nested config: pass its class, get its defaults
    elif isinstance(default, list | dict | set):
        kwargs["default_factory"] = lambda d=default: copy.deepcopy(d)
    elif default is not dataclasses.MISSING:
        kwargs["default"] = default
    return dataclasses.field(**kwargs)


def json_field(what: str) -> Any:
    """``--json [PATH]``, the same in every command: ``what`` as JSON on stdout (the flag alone) or into PATH."""
    return field(None, help=f"{what} as JSON: on stdout (the flag alone) or into PATH", metavar="PATH", const="-")


def resume_field(checkpoint: str) -> Any:
    """``--resume [auto|PATH]`` of a long job (see :mod:`seit.runtime`); ``checkpoint``: its file in OUTPUT."""
    return field(
        None,
        help=f"continue a run: 'auto' (or the flag alone) = OUTPUT/{checkpoint} if it exists (else start), or a "
        "checkpoint PATH",
        metavar="auto|PATH",
        const="auto",
    )


def resume_in_place_field(output: str, kept: str | None = None) -> Any:
    """``--resume [auto|PATH]`` of a job that continues in its output folder ``output`` (e.g. "OUTPUT"; ``kept``:
    what it keeps there): PATH can only be that folder. ``--no-resume`` of the former on/off switch still parses
    (hidden) and means no resume."""
    return field(
        None,
        help=f"continue an interrupted run: 'auto' (or the flag alone) keeps {kept or f'the finished part of {output}'}"
        f" and does the rest; a PATH must be {output} itself",
        metavar="auto|PATH",
        const="auto",
        former_switch=True,
    )


class ResumesInPlace(Checked):
    """Config mixin of a job that continues in its output folder ``out`` (``resume``: a resume_in_place_field).

    ``resume`` becomes "auto" or None: the Python API's former True/False are taken, a PATH must be ``out``.
    """

    output_flag = "--output"  # how the CLI names ``out``, for the message

    def __post_init__(self) -> None:
        resume, out = self.resume, self.out
        if isinstance(resume, bool):
            resume = "auto" if resume else None
        elif resume not in (None, "auto") and Path(resume).resolve() != Path(out).resolve():
            raise ConfigError(f"--resume {resume}: this job continues in {self.output_flag} ({out}); use --resume auto")
        self.resume = None if resume is None else "auto"
        super().__post_init__()


def restart_field() -> Any:
    """``--restart`` of a long job: a non-empty OUTPUT is moved aside, never deleted."""
    return field(False, help="start over in a non-empty OUTPUT: the old run is moved to OUTPUT.old-N first")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_dataclass_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    aliases: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """Add one flag per field of ``cls`` to ``parser``; a nested config gets its own argument group.

    ``aliases``: field name -> extra spellings of its flag (SeiT's names, from :mod:`seit.interop.seit_flags`).
    """
    aliases = aliases or {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, _ = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            title = f.metadata.get("help") or f.name
            add_dataclass_args(parser.add_argument_group(title), tp, aliases)
            continue
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        help_text = meta.get("help", "")
        if not required and default is not None and tp is not bool:
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"help": help_text, "dest": f.name}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if meta.get("positional"):
            kwargs.pop("dest")
            elem = typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp
            nargs = "+" if typing.get_origin(tp) is list else None
            if not required:
                nargs = "*" if nargs == "+" else "?"
                kwargs["default"] = default
            parser.add_argument(f.name, type=elem, nargs=nargs, metavar=f.name.upper(), **kwargs)
            continue
        hidden = tuple(meta.get("hidden", ()))
        names = [field_flag(f), *aliases.get(f.name, ()), *hidden]
        if tp is bool:
            kwargs["help"] = help_text + (" (default: on)" if default else "")
            action = parser.add_argument(*names, action=argparse.BooleanOptionalAction, default=default, **kwargs)
        elif typing.get_origin(tp) in (list, tuple):
            args = typing.get_args(tp)
            fixed = typing.get_origin(tp) is tuple and Ellipsis not in args
            nargs = len(args) if fixed else "+"
            action = parser.add_argument(
                *names, type=args[0], nargs=nargs, default=default, required=required, **kwargs
            )
        else:
            if "const" in meta:  # the flag alone means this value (``--resume`` = ``--resume auto``)
                kwargs.update(nargs="?", const=meta["const"])
            if meta.get("former_switch"):  # ``--no-X`` of a flag that was an on/off switch: X unset
                off = f"--no-{field_flag(f)[2:]}"
                parser.add_argument(off, dest=f.name, action="store_const", const=None, help=argparse.SUPPRESS)
            action = parser.add_argument(
                *names,
                type=tp,
                default=default,
                required=required,
                metavar=meta.get("metavar"),
                **kwargs,
            )
        action.hidden_option_strings = hidden  # seit's HelpFormatter leaves them out of --help


def from_args(cls: type[T], ns: argparse.Namespace) -> T:
    """Build ``cls`` from the parsed namespace (fields absent from the namespace keep defaults)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        tp = _unwrap_optional(hints[f.name])[0]
        if f.init and dataclasses.is_dataclass(tp):
            values[f.name] = from_args(tp, ns)
        elif f.init and hasattr(ns, f.name):
            values[f.name] = getattr(ns, f.name)
    for name, value in values.items():
        if typing.get_origin(_unwrap_optional(hints[name])[0]) is tuple and isinstance(value, list):
            values[name] = tuple(value)
    return cls(**values)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config saved by :func:`to_dict`; unknown keys are an error naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {unknown}; known: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        tp, _ = _unwrap_optional(hints[key])
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = from_dict(tp, value)
        elif typing.get_origin(tp) is tuple and isinstance(value, list):
            value = tuple(value)
        values[key] = value
    return cls(**values)


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Where ``current`` differs from ``saved`` (nested dicts), e.g. ``["resize: 'squash' there, 'crop' now"]``.

    Only keys of ``current`` are compared, so a saved config may carry more entries than the job that checks it.
    """
    if isinstance(saved, dict) and isinstance(current, dict):
        return [d for k in current for d in config_differences(saved.get(k), current[k], f"{prefix}{k}.")]
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} there, {current!r} now"]
