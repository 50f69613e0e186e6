"""`seit bench NAME`: benchmarks that report ratios against a baseline measured in the same run."""

from __future__ import annotations

import argparse
import importlib
import platform

from seit.bench import BENCHMARKS
from seit.cli import emit_json


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "bench",
        help="benchmarks: seit vs. a baseline measured in the same run",
        description="Run a benchmark. Each prints its figures as ratios against a baseline measured in the\n"
        "same run (these machines are shared and noisy) and can save them as JSON.",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(group_parser=p)
    names = p.add_subparsers(title="benchmarks", metavar="NAME")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        b = names.add_parser(
            name, help=module.DESCRIPTION.splitlines()[0], description=module.DESCRIPTION, formatter_class=HelpFormatter
        )
        module.add_arguments(b)
        b.add_argument(
            "--json",
            nargs="?",
            const="-",
            metavar="PATH",
            help="the figures (and the machine) as JSON: on stdout (the flag alone) or into PATH",
        )
        b.set_defaults(run=_runner(module))


def _runner(module):
    def run(args: argparse.Namespace) -> int:
        figures = module.run(args)
        if args.json:
            machine = {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "processor": platform.processor(),
            }
            emit_json(args.json, {"figures": figures, "machine": machine})
        return 0

    return run
