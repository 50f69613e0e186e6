"""Exact evaluation, also across processes: every sample is counted once (no padded duplicates)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seit.utils.dist import all_reduce
from seit.utils.progress import progress


@dataclass
class EvalResult:
    confusion: np.ndarray  # [C, C] counts: row = true class, column = predicted class
    top5_correct: int
    loss_sum: float
    class_names: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1(self) -> float:
        return 100.0 * float(np.trace(self.confusion)) / max(self.count, 1)

    @property
    def top5(self) -> float:
        return 100.0 * self.top5_correct / max(self.count, 1)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    def per_class(self) -> dict[str, float]:
        totals = self.confusion.sum(axis=1)
        names = self.class_names or [str(i) for i in range(len(totals))]
        return {
            n: (100.0 * self.confusion[i, i] / totals[i] if totals[i] else float("nan")) for i, n in enumerate(names)
        }

    def summary(self) -> dict[str, float]:
        return {"top1": self.top1, "top5": self.top5, "loss": self.loss, "count": self.count}

    def to_json(self) -> dict:
        return {
            **self.summary(),
            "per_class_top1": self.per_class(),
            "class_names": self.class_names,
            "confusion": self.confusion.tolist(),
        }


class Accumulator:
    """Sums predictions into a confusion matrix; ``reduce`` adds the sums of all ranks."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        self.top5 = torch.zeros((), dtype=torch.long, device=device)
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.num_classes = num_classes

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits, labels = logits.float(), labels.to(logits.device)
        pred = logits.argmax(dim=1)
        self.confusion += torch.bincount(labels * self.num_classes + pred, minlength=self.num_classes**2)
        k = min(5, logits.shape[1])
        self.top5 += (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum()
        self.loss += F.cross_entropy(logits, labels, reduction="sum").double()

    def result(self, class_names: list[str]) -> EvalResult:
        for t in (self.confusion, self.top5, self.loss):
            all_reduce(t)
        c = self.num_classes
        return EvalResult(self.confusion.view(c, c).cpu().numpy(), int(self.top5), float(self.loss), class_names)


@torch.no_grad()
def evaluate(model: torch.nn.Module, pipe, device: torch.device, autocast=None, desc: str = "eval") -> EvalResult:
    """Top-1/top-5/loss/confusion of ``model`` on the pipeline's validation data (this rank's unpadded share)."""
    was_training = model.training
    model.eval()
    acc = Accumulator(pipe.num_classes, device)
    loader = pipe.eval_loader()
    for inputs, labels in progress(loader, desc=desc, unit="batch", leave=False):
        x = pipe.eval_batch(inputs)
        with autocast or contextlib.nullcontext():
            logits = model(x)
        acc.add(logits, labels.to(device))
    model.train(was_training)
    return acc.result(pipe.class_names)


def save_confusion_png(result: EvalResult, path: str | Path, title: str = "") -> None:
    """A row-normalised confusion matrix with class names (readable up to ~50 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seit.utils.io import atomic_open

    conf = result.confusion.astype(float)
    rows = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    n = len(conf)
    size = min(4 + 0.35 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = result.class_names or [str(i) for i in range(n)]
    if n <= 50:
        ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if conf[i, j]:
                        ax.text(
                            j,
                            i,
                            int(conf[i, j]),
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black",
                        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"top-1 {result.top1:.1f}% on {result.count} samples")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
