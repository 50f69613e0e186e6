"""The trade-off's report: a table, the Pareto front of top-1 against bytes per image, a verdict, a plot."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MATCHED = " (matched to the tokens' bytes)"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Per (bytes, top-1) point: True when no other point has at most its bytes and at least its top-1, and is
    better in one of them. Equal points are all on the front (none beats another); a point with the same bytes
    and a lower top-1 (or the same top-1 at more bytes) is not."""
    return [
        not any(b2 <= b and a2 >= a and (b2 < b or a2 > a) for b2, a2 in points)
        for b, a in points
    ]  # fmt: skip


def verdict(rows: list[dict[str, Any]]) -> str:
    """Which rows form the front, and whether a token row matches every pixel row (<= its bytes, >= its top-1)."""
    front = [r for r in rows if r["on_front"]]
    words = "The front (the most top-1 for the bytes): " + ", ".join(
        f"{r['row']} ({r['bytes_per_image']:.0f} B, {r['top1']:.1f}%)" for r in sorted(front, key=_bytes)
    ) + "."  # fmt: skip
    tokens = [r for r in rows if r["kind"] == "tokens"]
    pixels = [r for r in rows if r["kind"] == "pixels"]
    if not tokens or not pixels:
        return words + " (No token row or no pixel row: nothing to match.)"
    unmatched = [
        p
        for p in pixels
        if not any(t["bytes_per_image"] <= p["bytes_per_image"] and t["top1"] >= p["top1"] for t in tokens)
    ]
    if not unmatched:
        return words + " Every pixel row is matched by a token row at no more bytes and at least its top-1."
    named = ", ".join(f"{p['row']} ({p['bytes_per_image']:.0f} B, {p['top1']:.1f}%)" for p in unmatched)
    return (
        f"{words} Not every pixel row is matched by a token row at no more bytes and at least its top-1: {named} "
        f"{'is' if len(unmatched) == 1 else 'are'} not."
    )


def _bytes(row: dict[str, Any]) -> float:
    return row["bytes_per_image"]


def write_report(report: Path, rows: list[dict[str, Any]], data, recipe, cfg) -> dict[str, Any]:
    """OUT/report/{report.md, report.json, frontier.png} for ``rows`` (the command's rows, in its order)."""
    from seit.utils.io import atomic_write_bytes, atomic_write_json

    for row, on_front in zip(rows, pareto_front([(r["bytes_per_image"], r["top1"]) for r in rows])):
        row["on_front"] = on_front
    chance = 100.0 / len(data.classes)
    figures = {
        "images": str(data.images),
        "val": str(data.val),
        "classes": data.classes,
        "train_images": data.train_images,
        "held_out_images": data.val_images,
        "chance_top1": chance,
        "recipe": dataclasses.asdict(recipe),
        "seed": cfg.seed,
        "tokenizer_steps": cfg.tokenizer_steps,
        "same_recipe": all(r["recipe"] == rows[0]["recipe"] for r in rows),
        "rows": rows,
        "front": [r["row"] for r in sorted(rows, key=_bytes) if r["on_front"]],
        "verdict": verdict(rows),
    }
    report.mkdir(parents=True, exist_ok=True)
    frontier_png(rows, chance, report / "frontier.png")
    atomic_write_json(report / "report.json", figures)
    atomic_write_bytes(report / "report.md", markdown(figures).encode())
    log.info("storage / accuracy trade-off:\n%s\n%s\nreport: %s", table(rows), figures["verdict"], report / "report.md")
    return figures


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| row | stored as | bytes per image | top-1 | top-5 | on the front |", "|---|---|---:|---:|---:|---|"]
    lines += [
        f"| {r['row']} | {r['stored_as']}{MATCHED if r['matched'] else ''} | {r['bytes_per_image']:,.0f} | "
        f"{r['top1']:.1f} | {r['top5']:.1f} | {'yes' if r['on_front'] else 'no'} |"
        for r in rows
    ]
    return "\n".join(lines)


def markdown(f: dict[str, Any]) -> str:
    r = f["recipe"]
    recipe = "the same" if f["same_recipe"] else "NOT the same (a bug: the comparison is void)"
    steps = f["rows"][0]["steps"]
    cpu = ", ".join(f"{row['row']} {row['cpu_seconds']:.0f}" for row in f["rows"])
    return f"""# Storage / accuracy trade-off

{f["verdict"]}

Training images: {f["images"]} ({f["train_images"]:,} images, {len(f["classes"])} classes); every row is evaluated
on the full-quality held-out images {f["val"]} ({f["held_out_images"]:,} images, chance {f["chance_top1"]:.1f}%),
the token rows through their tokenizer. Bytes per image: every byte of the row's training data on disk (a token
store: all its files; pixels: the image files) over the {f["train_images"]:,} training images.

{table(f["rows"])}

`frontier.png` plots top-1 against bytes per image (log scale) with the front as a step line.

Every row trains the same ViT ({r["embed_dim"]} wide, {r["depth"]} blocks, {r["num_heads"]} heads) with {recipe}
recipe and budget: {r["epochs"]} epochs of batch {r["batch_size"]} ({steps} steps), AdamW at {r["lr"]:g}, the same
crops, flips and label smoothing, seed {f["seed"]}. The token rows' stem has stride 2 from 16x16 grids up (a 16x16
grid's 14x14 crop gives 7x7 patches) and stride 1 below (an 8x8 grid's 7x7 crop gives 7x7); the pixel rows see
8 px patches of {r["image_size"] * 7 // 16} px crops, 7x7 as well. Each tokenizer trained {f["tokenizer_steps"]} steps
(its bytes are needed once, not per image). Process CPU seconds per row (its data, training and evaluation;
measured when the row was made): {cpu}.
"""


def frontier_png(rows: list[dict[str, Any]], chance: float, png: Path) -> None:
    """Top-1 against bytes per image (log scale): every row a labelled point, the front a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seit.utils.io import atomic_open

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        tokens = r["kind"] == "tokens"
        ax.scatter(r["bytes_per_image"], r["top1"], marker="*" if tokens else "o", s=150 if tokens else 60,
                   color="tab:red" if tokens else "tab:blue", edgecolors="black" if r["on_front"] else "none",
                   zorder=3)  # fmt: skip
        ax.annotate(r["row"], (r["bytes_per_image"], r["top1"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    front = sorted((r for r in rows if r["on_front"]), key=_bytes)
    right = max(r["bytes_per_image"] for r in rows)  # the front holds to the right of its last point
    ax.step([r["bytes_per_image"] for r in front] + [right], [r["top1"] for r in front] + [front[-1]["top1"]],
            where="post", color="black", alpha=0.6, label="Pareto front")  # fmt: skip
    ax.scatter([], [], marker="*", color="tab:red", label="token store")
    ax.scatter([], [], marker="o", color="tab:blue", label="pixels")
    ax.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.0f}%)")
    ax.set_xscale("log")
    ax.set(xlabel="bytes per training image (log scale)", ylabel="top-1 on held-out images (%)",
           title="storage / accuracy trade-off: the same ViT, recipe and budget per row")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_open(png, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
