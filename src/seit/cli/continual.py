"""`seit continual`: class-incremental training with a replay memory kept as tokens vs as image files."""

from __future__ import annotations

import argparse

from seit.config import add_dataclass_args, from_args
from seit.continual.config import ContinualConfig

EXAMPLES = """\
examples:
  # token memory vs pixel memory at the same bytes: 5 steps of 2 classes, a 100 KB memory each
  seit continual --store tokens/train --val-store tokens/val --images photos/train --val-images photos/val \\
      --tasks 5 --memory-bytes 100000 --selection herding --output runs/cl

  # one memory only (the token store), random exemplars
  seit continual --store tokens/train --val-store tokens/val --selection random --output runs/cl-tokens

  # resume after a preemption (Ctrl-C, SIGTERM or SIGUSR1 save OUTPUT/KIND/last.pt and exit with code 75)
  seit continual ... --output runs/cl --resume auto

outputs (in --output): tokens/ and pixels/ (each: last.pt, metrics.jsonl with a "task" record per step,
tb/, model.safetensors), report.md, report.json (per step: top-1 on all classes seen, per-step top-1,
exemplars and bytes in memory; average incremental top-1, forgetting, each run's recipe) and accuracy.png.
Token memory: each exemplar costs its encoded page in the store (+ offset and label); pixel memory: its
image file as stored (+ label). Both runs train the same ViT with the same recipe and optimizer steps.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "continual",
        help="class-incremental learning with a replay memory in bytes: exemplars as tokens vs as images",
        description="Class-incremental training (SeiT's continual-learning scenario): the classes arrive in\n"
        "--tasks steps in a seeded order; a replay memory of --memory-bytes keeps exemplars of past classes,\n"
        "as tokens (--store) or as image files (--images). Each step is evaluated on every class seen so far;\n"
        "the report gives average incremental top-1 and forgetting per memory.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(p, ContinualConfig)
    p.set_defaults(run=_run, group_parser=p)


def _run(args: argparse.Namespace) -> int:
    from seit.cli import stopped_by_signal

    cfg = from_args(ContinualConfig, args)  # flag values are checked before torch is imported
    cfg.data.kinds()
    from seit.continual import run_continual

    result = run_continual(cfg)
    if result.preempted:
        return stopped_by_signal(result.output, result.where)
    print(f"[seit] {result.report['verdict']}")
    print(f"[seit] report: {result.report_md}")
    return 0
