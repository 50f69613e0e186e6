"""The continual-learning report: report.json, report.md and accuracy.png (top-1 per incremental step, per memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seit.utils.io import atomic_open, atomic_write_bytes, atomic_write_json

TITLES = {"tokens": "token memory", "pixels": "pixel memory (JPEG files)"}


def average_incremental(steps: list[dict[str, Any]]) -> float:
    """iCaRL's average incremental accuracy: the mean top-1 over every step (on all classes seen at that step)."""
    return float(np.mean([s["top1"] for s in steps]))


def forgetting(steps: list[dict[str, Any]]) -> float | None:
    """Average forgetting (Chaudhry et al.): for each step's classes but the last, the best top-1 they had before
    the end minus their top-1 at the end. None with one step."""
    if len(steps) < 2:
        return None
    last = steps[-1]["per_task_top1"]
    drops = [max(s["per_task_top1"][j] for s in steps[j:-1]) - last[j] for j in range(len(steps) - 1)]
    return float(np.mean(drops))


def summarise(kind_results: dict[str, Any], budget: int) -> dict[str, Any]:
    """report.json's content from each memory kind's :class:`~seit.continual.learner.KindResult`."""
    runs = {}
    for kind, r in kind_results.items():
        last = r.steps[-1]
        runs[kind] = {
            "memory": TITLES[kind],
            "average_incremental_top1": average_incremental(r.steps),
            "final_top1": last["top1"],
            "forgetting": forgetting(r.steps),
            "final_exemplars": last["exemplars"],
            "final_memory_bytes": last["memory_bytes"],
            "reserved_bytes": last["memory_reserved_bytes"],
            "bytes_per_exemplar": (
                (last["memory_bytes"] - last["memory_reserved_bytes"]) / last["exemplars"]
                if last["exemplars"]
                else None
            ),
            "optimizer_steps": r.global_step,
            "steps": r.steps,
            "recipe": r.recipe,
        }
    recipes = [r["recipe"] for r in runs.values()]
    return {
        "memory_budget_bytes": budget,
        "same_recipe": all(r == recipes[0] for r in recipes),
        "runs": runs,
        "verdict": verdict(runs, budget),
    }


def verdict(runs: dict[str, Any], budget: int) -> str:
    if set(runs) != {"tokens", "pixels"}:
        [(kind, r)] = runs.items()
        return f"{TITLES[kind]}: average incremental top-1 {r['average_incremental_top1']:.1f}%"
    t, p = runs["tokens"], runs["pixels"]
    gap = t["average_incremental_top1"] - p["average_incremental_top1"]
    lead = "above" if gap >= 0 else "below"
    return (
        f"At {budget:,} bytes of memory, tokens keep {t['final_exemplars']} exemplars at the end "
        f"({t['bytes_per_exemplar'] or 0:.0f} B each, after {t['reserved_bytes']:,} B of decoding tables), "
        f"JPEG files {p['final_exemplars']} "
        f"({p['bytes_per_exemplar'] or 0:.0f} B each). Average incremental top-1: token memory "
        f"{t['average_incremental_top1']:.1f}%, pixel memory {p['average_incremental_top1']:.1f}% (tokens "
        f"{abs(gap):.1f} points {lead}); final top-1 {t['final_top1']:.1f}% vs {p['final_top1']:.1f}%."
    )


def write_report(folder: str | Path, report: dict[str, Any], command: str, config: dict[str, Any]) -> Path:
    """report.json (with the command and config that ran), report.md and accuracy.png in ``folder``; returns
    report.md."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "report.json", {**report, "command": command, "config": config})
    _plot(report, folder / "accuracy.png")
    md = folder / "report.md"
    atomic_write_bytes(md, markdown(report, command).encode())
    return md


def markdown(report: dict[str, Any], command: str) -> str:
    runs = report["runs"]
    lines = [
        "# Continual learning with a token memory",
        "",
        f"Class-incremental: {len(next(iter(runs.values()))['steps'])} steps, a replay memory of "
        f"{report['memory_budget_bytes']:,} bytes (every stored byte of each exemplar counted), the same ViT, "
        f"recipe and optimizer steps for each memory (same recipe: {'yes' if report['same_recipe'] else 'NO'}).",
        "",
        report["verdict"],
        "",
        "Bytes: a token exemplar is its encoded page in the store, its offset and label, and a token memory reserves "
        "the store's codec state and group tables once; a pixel exemplar is its image file as stored and its label "
        "(the codebook belongs to the token ViT, as the pixel ViT's patch weights to "
        "it). Each memory's run is evaluated on its own validation input (the token store of the validation "
        "images, or the images); logits are restricted to the classes seen so far.",
        "",
        "| memory | avg incremental top-1 | final top-1 | forgetting | exemplars at end | bytes/exemplar | "
        "reserved bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs.values():
        forget = "-" if r["forgetting"] is None else f"{r['forgetting']:.1f}"
        per = "-" if r["bytes_per_exemplar"] is None else f"{r['bytes_per_exemplar']:.0f}"
        lines.append(
            f"| {r['memory']} | {r['average_incremental_top1']:.1f}% | {r['final_top1']:.1f}% | {forget} | "
            f"{r['final_exemplars']} | {per} | {r['reserved_bytes']:,} |"
        )
    lines += ["", "Top-1 on all classes seen so far, per incremental step:", ""]
    lines += ["| step | classes seen | " + " | ".join(r["memory"] for r in runs.values()) + " |"]
    lines += ["|---" * (2 + len(runs)) + "|"]
    first = next(iter(runs.values()))["steps"]
    for i, s in enumerate(first):
        cells = [f"{r['steps'][i]['top1']:.1f}% ({r['steps'][i]['exemplars']} ex.)" for r in runs.values()]
        lines.append(f"| {i + 1} | {s['classes_seen']} | " + " | ".join(cells) + " |")
    lines += ["", "![accuracy per incremental step](accuracy.png)", "", "```", command, "```", ""]
    return "\n".join(lines)


def _plot(report: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in report["runs"].values():
        seen = [s["classes_seen"] for s in r["steps"]]
        label = f"{r['memory']}: {r['final_exemplars']} exemplars at the end"
        ax.plot(seen, [s["top1"] for s in r["steps"]], marker="o", label=label)
    seen = [s["classes_seen"] for s in next(iter(report["runs"].values()))["steps"]]
    ax.plot(seen, [100.0 / n for n in seen], "k:", label="chance")
    ax.set_xlabel("classes seen")
    ax.set_ylabel("top-1 on all classes seen (%)")
    ax.set_title(f"replay memory of {report['memory_budget_bytes']:,} bytes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(png, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
