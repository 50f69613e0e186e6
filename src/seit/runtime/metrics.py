"""Metrics out of a run: one JSON line per record (metrics.jsonl) and TensorBoard scalars."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from seit.utils.io import atomic_write_bytes


class MetricsLogger:
    """Appends records to ``OUTPUT/metrics.jsonl`` and mirrors numeric fields to TensorBoard (main rank only)."""

    def __init__(
        self, output: str | Path, *, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None
    ) -> None:
        """``resume_step``: the step of the checkpoint a run resumes; what an interrupted run logged after it
        (up to where it was killed) is dropped from both logs, so each reads as one uninterrupted run."""
        self.enabled = enabled
        self.path = Path(output) / "metrics.jsonl"
        self._tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: readers of the event files discard the earlier files' events from this step on
            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(log_dir=str(Path(output) / "tb"), purge_step=purge)
        if resume_step is not None:
            self.truncate_after(resume_step)

    def truncate_after(self, step: int) -> None:
        """On resume: drop records past the checkpoint's step, so the log reads as one uninterrupted run."""
        if not (self.enabled and self.path.exists()):
            return
        kept = [json.dumps(r) for r in read_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write_bytes(self.path, ("\n".join(kept) + "\n" if kept else "").encode())

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl (optionally one kind), skipping a torn last line after a crash."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or record.get("kind") == kind:
            records.append(record)
    return records
