"""Continual learning with a token replay memory (SeiT's class-incremental scenario).

``run_continual(cfg)`` trains one class-incremental run per memory kind given (a token store: exemplars kept
as tokens; an image folder: exemplars kept as image files) with the same ViT, recipe, steps and byte budget,
then writes OUTPUT/report.{md,json} and OUTPUT/accuracy.png. Each run is resumable on the shared runtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seit.continual.config import ContinualConfig

__all__ = ["ContinualConfig", "ContinualResult", "command_line", "run_continual"]

log = logging.getLogger(__name__)


@dataclass
class ContinualResult:
    output: Path
    preempted: bool
    where: str = ""  # a stopped run: which memory, at which step (for the resume hint)
    report: dict[str, Any] = field(default_factory=dict)  # report.json's content (finished runs)
    report_md: Path | None = None


def command_line(cfg: ContinualConfig) -> str:
    """The `seit continual` command that runs ``cfg``: every setting that differs from its default, as flags."""
    import dataclasses
    import shlex

    from seit.config import field_flag

    words = ["seit", "continual"]
    for section in dataclasses.fields(cfg):
        values, defaults = getattr(cfg, section.name), type(getattr(cfg, section.name))()
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if value == getattr(defaults, f.name) or f.name in ("resume", "restart"):
                continue
            flag = field_flag(f)
            if isinstance(value, bool):
                words.append(flag if value else "--no-" + flag[2:])
            else:
                words += [flag, *map(str, value if isinstance(value, tuple | list) else [value])]
    return shlex.join(words)


def run_continual(cfg: ContinualConfig) -> ContinualResult:
    """Every memory kind's run in turn (a finished one is read back from its checkpoint), then the report."""
    from seit import runtime
    from seit.config import to_dict
    from seit.continual.learner import ContinualLearner
    from seit.continual.report import summarise, write_report
    from seit.errors import SeitError
    from seit.models import check_model_args
    from seit.utils import dist as seit_dist

    kinds = cfg.data.kinds()
    m = cfg.model
    for name in (m.token_model if "tokens" in kinds else None, m.pixel_model if "pixels" in kinds else None):
        if name:
            check_model_args(name, m.embed_dim, m.num_heads)  # before touching --output
    _check_same_classes(cfg)
    seit_dist.resolve_device(cfg.run.device)
    r = cfg.run
    with runtime.start(r.output, device=r.device, resume=r.resume, restart=r.restart) as run:
        if run.info.world_size > 1:
            raise SeitError("seit continual runs on one process; start it without torchrun")
        run.announce("seit continual")
        results = {}
        for kind in kinds:
            result = ContinualLearner(cfg, kind, run).fit()
            if result.preempted:
                return ContinualResult(run.output, True, f"in the {kind} memory run at step {result.global_step}")
            results[kind] = result
        report = summarise(results, cfg.protocol.memory_bytes)
        md = write_report(run.output, report, command_line(cfg), to_dict(cfg))
        log.info("%s", report["verdict"])
        return ContinualResult(run.output, False, report=report, report_md=md)


def _check_same_classes(cfg: ContinualConfig) -> None:
    """Token and pixel runs compare only on the same classes, in the same label order."""
    d = cfg.data
    if not (d.store and d.images):
        return
    from seit.errors import SeitError
    from seit.images import list_images
    from seit.store import TokenStore

    tokens, pixels = list(TokenStore.open(d.store).class_names or []), list(list_images(d.images).classes)
    if tokens != pixels:
        raise SeitError(
            f"{d.store} and {d.images} name other classes ({tokens[:4]}... vs {pixels[:4]}...): the two memories "
            "compare on the same classes; tokenize the same image folder"
        )
