"""`seit demo`: the whole method end to end on the built-in dataset, as a storage / accuracy trade-off.

The demo is a preset of `seit tradeoff` (seit.tradeoff) on the data it draws, with the demo's folders and
pictures. Its parts (each writes the artefacts the normal commands write, so every one can be reused):

  data                   the built-in JPEG dataset                     OUT/data/{train,val}/<class>/*.jpg
  tokenizer              a small ViT-VQGAN trained on the train images  OUT/tokenizer/tokenizer.safetensors
  token-vit              train (pruned, synonyms) and val token stores, OUT/stores/{train,val}, OUT/token-vit/
                         a token ViT on the train store
  pixel-vit              the same ViT on the train JPEGs, same budget   OUT/pixel-vit/
  squeeze                the JPEG quality and the downsampled side with the most bytes per image within the
                         token store's (OUT/state/squeeze.json)
  pixel-vit-jpeg-low     the train JPEGs re-encoded at that quality,    OUT/squeezed/jpeg-low/,
                         the same ViT on them                           OUT/pixel-vit-jpeg-low/
  pixel-vit-downsampled  ... downsampled to that side (WebP)            OUT/squeezed/downsampled/, OUT/pixel-vit-...
  report                 OUT/report/{report.md, report.json, tradeoff.png, reconstructions.png, curves.png,
                         confusion-*.png}

Every ViT is evaluated on the full-quality held-out images (the token one through the tokenizer) as part of its
row. Each part records its settings and result in OUT/state/<part>.json: a rerun reuses the finished parts,
continues a stopped one from its checkpoints, and redoes (in a clean folder) a part whose settings changed;
delete a part's record to redo it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seit.demo.config import DemoConfig, DemoSize
from seit.tradeoff.config import TOKENIZER_PATCH
from seit.tradeoff.run import Layout, Row, RowFolders
from seit.tradeoff.stages import (  # noqa: F401 (the scenarios' and benchmarks' names)
    PIXEL_MODEL,
    classifier_config,
    evaluate,
    pixel_image_size,
    recipe_config,
    tokenize_stores,
    train_classifier,
    train_tokenizer,
)
from seit.tradeoff.stages import folder_bytes as _folder_bytes
from seit.tradeoff.stages import read_jsonl as _jsonl

# the demo's tokenizer: vitvq-tiny's codebook (512 codes of 32 dimensions) at the size's image side
DEMO_CODES, DEMO_CODE_DIM = 512, 32


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run (or finish) the demo under ``cfg.out``; returns the report's figures.

    The demo is a preset of `seit tradeoff` on the data it draws: a token row (the vitvq-tiny tokenizer at the
    size's image side), the images as stored, and the JPEG quality and downsampled side matched to the tokens'
    bytes (--match-tokens), in the demo's fixed folders (:class:`DemoLayout`).
    """
    from seit.tradeoff.config import Recipe, TradeoffConfig
    from seit.tradeoff.run import cached, describe_data, run_rows

    size_name, size = cfg.demo_size()
    paths = _Paths(Path(cfg.out))
    paths.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    settings = {"size": dataclasses.asdict(size), "seed": cfg.seed}
    data = cached("data", paths.state("data"), settings, lambda: _make_data(paths, size, cfg),
                  artefacts=(paths.data / "demo-dataset.json",))  # fmt: skip
    preset = TradeoffConfig(
        images=str(paths.data / "train"),
        val=str(paths.data / "val"),
        output=str(paths.out),
        tokens=(f"grid={size.image_size // TOKENIZER_PATCH},codes={DEMO_CODES},dim={DEMO_CODE_DIM}",),
        match_tokens=True,
        tokenizer_steps=size.tokenizer_steps,
        embed_dim=size.embed_dim,
        depth=size.depth,
        num_heads=size.num_heads,
        epochs=size.epochs,
        batch_size=size.batch_size,
        lr=size.lr,
        seed=cfg.seed,
        device=cfg.device,
        num_workers=cfg.num_workers,
    )
    recipe = Recipe(size.embed_dim, size.depth, size.num_heads, size.epochs, size.batch_size, size.lr,
                    tuple(size.crop_scale), size.image_size)  # fmt: skip
    described = describe_data(paths.data / "train", paths.data / "val", paths.out)
    rows = dict(zip(ROWS, run_rows(preset, DemoLayout(paths), described, recipe, preset.token_specs(), [])))
    return _report(paths, size_name, size, data, rows, cfg, total=time.perf_counter() - started)


# The rows of the trade-off, as in SeiT's main table: every row trains the same ViT with the same recipe and
# budget and is evaluated on the same full-quality held-out images; only the stored training data differs.
ROWS = ("tokens", "jpeg", "jpeg-low", "downsampled")
SQUEEZED_ROWS = ("jpeg-low", "downsampled")
ROW_TITLES = {
    "tokens": "tokens (token store)",
    "jpeg": "pixels, JPEG as stored",
    "jpeg-low": "pixels, low-quality JPEG",
    "downsampled": "pixels, downsampled",
}


@dataclass(frozen=True)
class _Paths:
    out: Path

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def tokenizer_dir(self) -> Path:
        return self.out / "tokenizer"

    @property
    def tokenizer(self) -> Path:
        return self.tokenizer_dir / "tokenizer.safetensors"

    @property
    def train_store(self) -> Path:
        return self.out / "stores" / "train"

    @property
    def val_store(self) -> Path:
        return self.out / "stores" / "val"

    @property
    def squeezed(self) -> Path:
        return self.out / "squeezed"

    def row_train(self, row: str) -> Path:
        """The training data of a row: a token store or an image folder."""
        if row == "tokens":
            return self.train_store
        return self.data / "train" if row == "jpeg" else self.squeezed / row

    def row_run(self, row: str) -> Path:
        return self.out / ("token-vit" if row == "tokens" else "pixel-vit" if row == "jpeg" else f"pixel-vit-{row}")

    def row_model(self, row: str) -> Path:
        return self.row_run(row) / "model.safetensors"

    @property
    def report(self) -> Path:
        return self.out / "report"

    def state(self, part: str) -> Path:
        """The record of a part (its settings and result): OUT/state/<part>.json."""
        return self.out / "state" / f"{part}.json"


class DemoLayout(Layout):
    """`seit tradeoff`'s parts in the demo's fixed folders (named in the README and reused by the scenarios),
    their records in OUT/state/: one token row, the images as stored, the two rows matched to the tokens."""

    def __init__(self, paths: _Paths) -> None:
        super().__init__(paths.out)
        self.paths = paths

    def tokenizer(self, name: str, key: str) -> tuple[Path, Path]:
        return self.paths.state("tokenizer"), self.paths.tokenizer_dir

    def match(self, key: str) -> Path:
        return self.paths.state("squeeze")

    def row(self, row: Row, key: str) -> RowFolders:
        p, name = self.paths, demo_row(row)
        run = p.row_run(name)
        return RowFolders(p.state(run.name), p.train_store, p.val_store, p.squeezed / name, run)


def demo_row(row: Row) -> str:
    """The demo's name of a trade-off row: tokens, jpeg (as stored), jpeg-low or downsampled."""
    if row.kind == "tokens":
        return "tokens"
    if row.squeeze is None:
        return "jpeg"
    return "jpeg-low" if row.squeeze.side is None else "downsampled"


def _make_data(paths: _Paths, size: DemoSize, cfg: DemoConfig) -> dict[str, Any]:
    from seit.demo.dataset import make_demo_dataset

    info = make_demo_dataset(
        paths.data,
        train_per_class=size.train_per_class,
        val_per_class=size.val_per_class,
        seed=cfg.seed,
        num_classes=size.classes,
        num_workers=cfg.num_workers,
    )
    return {
        "classes": list(info.classes),
        "train_images": info.num_train,
        "val_images": info.num_val,
        "train_jpeg_bytes": info.train_bytes,
        "val_jpeg_bytes": info.val_bytes,
        "generated": info.generated,
    }


def _train_tokenizer(paths: _Paths, size: DemoSize, cfg: DemoConfig) -> dict[str, Any]:
    return train_tokenizer(
        paths.data / "train",
        paths.data / "val",
        paths.tokenizer_dir,
        image_size=size.image_size,
        steps=size.tokenizer_steps,
        seed=cfg.seed,
        device=cfg.device,
        num_workers=cfg.num_workers,
    )


def _tokenize(paths: _Paths, size: DemoSize, cfg: DemoConfig) -> dict[str, Any]:
    return tokenize_stores(
        paths.tokenizer,
        paths.data / "train",
        paths.data / "val",
        paths.train_store,
        paths.val_store,
        device=cfg.device,
        num_workers=cfg.num_workers,
    )


def _evaluate_extras(paths: _Paths, rows: dict[str, dict[str, Any]], cfg: DemoConfig) -> dict[str, Any]:
    """The token ViT on the val token store (it must match the on-the-fly figure) and a confusion matrix per row."""
    import numpy as np

    from seit.engine.evaluate import EvalResult, save_confusion_png

    paths.report.mkdir(parents=True, exist_ok=True)
    for name, row in rows.items():
        ev = row["evaluation"]
        save_confusion_png(
            EvalResult(np.array(ev["confusion"]), 0, 0.0, ev["class_names"]),
            paths.report / f"confusion-{name}.png",
            title=f"{ROW_TITLES[name]}: top-1 {row['top1']:.1f}% on {row['held_out_images']} held-out images",
        )
    on_store = evaluate(paths.row_run("tokens"), paths.data / "val", tokenizer=None, store=paths.val_store,
                        device=cfg.device, num_workers=cfg.num_workers)  # fmt: skip
    return on_store.to_json()


def _report(
    paths: _Paths, size_name: str, size: DemoSize, data, rows: dict[str, dict[str, Any]], cfg: DemoConfig, total: float
) -> dict[str, Any]:
    from seit.tradeoff.report import frontier_png, pareto_front
    from seit.utils.io import atomic_write_bytes, atomic_write_json

    report = paths.report
    report.mkdir(parents=True, exist_ok=True)
    tok = json.loads(paths.state("tokenizer").read_text())["result"]
    match = json.loads(paths.state("squeeze").read_text())["result"]
    stores = rows["tokens"]["tokenize"]
    on_store = _evaluate_extras(paths, rows, cfg)
    jpeg = data["train_jpeg_bytes"] + data["val_jpeg_bytes"]
    store_bytes = {"train": _folder_bytes(paths.train_store), "val": _folder_bytes(paths.val_store)}
    tokens_total = sum(store_bytes.values())
    images = data["train_images"] + data["val_images"]
    chance = 100.0 / len(data["classes"])
    squeezed = {
        row: {
            "setting": rows[row]["squeeze"],
            "describe": rows[row]["stored_as"],
            "bytes": rows[row]["train_bytes"],
            "bytes_per_image": rows[row]["bytes_per_image"],
            "probe_bytes_per_image": match[f"{'jpeg' if row == 'jpeg-low' else 'downsample'}_probe_bytes_per_image"],
        }
        for row in SQUEEZED_ROWS
    }
    stored_as = {
        "tokens": f"{stores['codes_kept']}-code ids, {size.image_size // 8}x{size.image_size // 8} per image, "
        "every file of the store",
        "jpeg": f"the dataset's JPEG files, quality {_dataset_quality(paths)}",
        **{row: squeezed[row]["describe"] for row in SQUEEZED_ROWS},
    }
    table = [
        {
            "row": row,
            "kind": rows[row]["kind"],
            "title": ROW_TITLES[row],
            "stored_as": stored_as[row],
            "train_bytes": rows[row]["train_bytes"],
            "bytes_per_image": rows[row]["bytes_per_image"],
            "top1": rows[row]["top1"],
            "top5": rows[row]["top5"],
            "train_samples_per_s": rows[row]["samples"] / rows[row]["train_seconds"],
            "run": rows[row]["run"],
            "train_data": rows[row]["train_data"],
        }
        for row in ROWS
    ]
    for r, on_front in zip(table, pareto_front([(r["bytes_per_image"], r["top1"]) for r in table])):
        r["on_front"] = on_front
    evals = {row: rows[row]["evaluation"] for row in ROWS}
    t, p = evals["tokens"], evals["jpeg"]
    figures = {
        "size": size_name,
        "settings": dataclasses.asdict(size),
        "total_seconds": total,
        "tradeoff": table,
        "tradeoff_verdict": _verdict(table, chance),
        "front": [r["row"] for r in sorted(table, key=lambda r: r["bytes_per_image"]) if r["on_front"]],
        "same_recipe": all(rows[row]["recipe"] == rows["tokens"]["recipe"] for row in ROWS),
        "recipe": rows["tokens"]["recipe"],
        "storage": {
            "jpeg_bytes": jpeg,
            "token_store_bytes": tokens_total,
            "token_store_bytes_by_split": store_bytes,
            "ratio_tokens_to_jpeg": tokens_total / jpeg,
            "jpeg_bytes_per_image": jpeg / images,
            "token_bytes_per_image": tokens_total / images,
            "tokenizer_bytes": tok["bytes"],
            "squeeze_budget_bytes_per_image": match["budget_bytes_per_image"],
        },
        "accuracy": {
            "chance_top1": chance,
            "tokens_top1": t["top1"],
            "tokens_top5": t["top5"],
            "pixels_top1": p["top1"],
            "pixels_top5": p["top5"],
            "pixels_at_least_twice_chance": p["top1"] >= 2 * chance,
            "ratio_tokens_to_pixels": t["top1"] / p["top1"] if p["top1"] else math.inf,
            "gap_points": p["top1"] - t["top1"],
            "tokens_top1_on_store": on_store["top1"],
            "per_class": {row: evals[row]["per_class_top1"] for row in ROWS},
            "held_out_images": t["count"],
        },
        "throughput": {
            # NaN where a rerun found the images already drawn
            "dataset_images_per_s": data["generated"] / data["seconds"] if data["generated"] else math.nan,
            "tokenizer_train_images_per_s": tok["images"] / tok["seconds"],
            "tokenize_images_per_s": stores["images_per_s"],
            **{f"{r['row']}_vit_train_samples_per_s": r["train_samples_per_s"] for r in table},
            "eval_tokens_images_per_s": t["images_per_s"],
            "eval_pixels_images_per_s": p["images_per_s"],
        },
        # each row: its training data (tokenize or squeeze), training and evaluation
        "stages_seconds": {
            "data": data["seconds"],
            "tokenizer": tok["seconds"],
            "squeeze": match["seconds"],
            **{paths.row_run(row).name: rows[row]["seconds"] for row in ROWS},
        },
        "tokenizer": tok["final_eval"],
        "tokenize": stores,
        "squeeze": {"budget_bytes_per_image": match["budget_bytes_per_image"], **squeezed},
        "runs": {row: {k: v for k, v in rows[row].items() if k != "evaluation"} for row in ROWS},
    }
    _reconstructions(paths, report / "reconstructions.png")
    _curves(paths, report / "curves.png")
    frontier_png(table, chance, report / "tradeoff.png")
    atomic_write_json(report / "report.json", figures)
    atomic_write_bytes(report / "report.md", _markdown(figures, paths).encode())
    return figures


def _dataset_quality(paths: _Paths) -> Any:
    manifest = paths.data / "demo-dataset.json"
    return json.loads(manifest.read_text()).get("jpeg_quality", "?") if manifest.exists() else "?"


def _verdict(rows: list[dict[str, Any]], chance: float) -> str:
    """In words: which input wins at equal bytes, and by how much; the rows that could not get that small."""
    by = {r["row"]: r for r in rows}
    tokens = by["tokens"]
    budget = tokens["bytes_per_image"]

    def versus(r: dict[str, Any]) -> str:
        gap = tokens["top1"] - r["top1"]
        return f"tokens are {abs(gap):.1f} points {'above' if gap >= 0 else 'below'} it"

    squeezed = [by[row] for row in SQUEEZED_ROWS]
    equal = [r for r in squeezed if r["bytes_per_image"] <= 1.05 * budget]
    words = f"Tokens reach {tokens['top1']:.1f}% top-1 at {budget:.0f} bytes per training image."
    if equal:
        best = max(equal, key=lambda r: r["top1"])
        words += (
            f" At those bytes, the best squeezed pixels ({best['title']}: {best['stored_as']}, "
            f"{best['bytes_per_image']:.0f} bytes per image) reach {best['top1']:.1f}%: {versus(best)}."
        )
    for r in squeezed:
        if r not in equal:
            words += (
                f" {r['title'][0].upper()}{r['title'][1:]} cannot get below {r['bytes_per_image']:.0f} bytes per image "
                f"({r['stored_as']}, {r['bytes_per_image'] / budget:.1f}x the tokens' bytes) and reach "
                f"{r['top1']:.1f}%: {versus(r)}."
            )
    jpeg = by["jpeg"]
    words += (
        f" The JPEGs as stored take {jpeg['bytes_per_image'] / budget:.0f}x the tokens' bytes and reach "
        f"{jpeg['top1']:.1f}% ({'at least' if jpeg['top1'] >= 2 * chance else 'less than'} twice chance, "
        f"{2 * chance:.0f}%): {versus(jpeg)}."
    )
    return words


def _reconstructions(paths: _Paths, png: Path, count: int = 10) -> None:
    """Held-out images (as the tokenizer sees them) over what their tokens decode back to."""
    import numpy as np
    import torch

    from seit.images import list_images, load_image
    from seit.tokenizer import load_tokenizer
    from seit.tokenizer.render import decode_to_images, spread_indices, write_comparison

    tokenizer = load_tokenizer(paths.tokenizer)
    samples = list_images(paths.data / "val").samples
    chosen = [samples[i] for i in spread_indices(len(samples), count)]
    size = tokenizer.config.image_size
    originals = np.stack([load_image(s.path, size) for s in chosen])
    with torch.no_grad():
        ids = tokenizer.encode(torch.from_numpy(originals).permute(0, 3, 1, 2).float() / 255)
    write_comparison(png, originals, decode_to_images(tokenizer, ids.numpy()))


def _curves(paths: _Paths, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seit.utils.io import atomic_open

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for row in ROWS:
        records = _jsonl(paths.row_run(row) / "metrics.jsonl")
        train = [r for r in records if r["kind"] == "train"]
        evals = [r for r in records if r["kind"] == "eval"]
        label = ROW_TITLES[row]
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label=label, alpha=0.8)
        axes[1].plot([r["epoch"] for r in evals], [r["top1"] for r in evals], marker="o", ms=3, label=label)
    tok = [r for r in _jsonl(paths.tokenizer_dir / "metrics.jsonl") if r.get("kind") == "train"]
    axes[2].plot([r["step"] for r in tok], [r["psnr"] for r in tok], color="tab:green")
    axes[0].set(title="training loss", xlabel="step", ylabel="soft-target cross-entropy")
    axes[1].set(title="held-out top-1 (val split)", xlabel="epoch", ylabel="%")
    axes[2].set(title="tokenizer reconstruction", xlabel="step", ylabel="PSNR (dB, train batches)")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_open(png, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def summary(f: dict[str, Any], out: str | Path) -> str:
    """What ``seit demo`` prints when it ends: the trade-off table and the verdict (``f``: run_demo's figures)."""
    paths = _Paths(Path(out))
    a = f["accuracy"]
    width = max(len(r["title"]) for r in f["tradeoff"])
    rows = "\n".join(
        f"    {r['title']:<{width}}  {r['bytes_per_image']:>7.0f} B/image  top-1 {r['top1']:5.1f}%  ({r['stored_as']})"
        for r in f["tradeoff"]
    )
    return (
        f"seit demo ({f['size']}, {f['total_seconds'] / 60:.1f} min): the same ViT, recipe and budget on each "
        f"input, top-1 on {a['held_out_images']} held-out images (chance {a['chance_top1']:.1f}%)\n"
        f"{rows}\n"
        f"  {f['tradeoff_verdict']}\n"
        f"  report: {paths.report / 'report.md'} (plot: {paths.report / 'tradeoff.png'})"
    )


def _markdown(f: dict[str, Any], paths: _Paths) -> str:
    s, a, t = f["storage"], f["accuracy"], f["throughput"]
    table = "\n".join(
        f"| {r['title']} | {r['stored_as']} | {r['train_bytes']:,} | {r['bytes_per_image']:.0f} | "
        f"{r['top1']:.1f} | {r['top5']:.1f} |"
        for r in f["tradeoff"]
    )
    per_class = "\n".join(
        f"| {name} | " + " | ".join(f"{a['per_class'][row][name]:.1f}" for row in ROWS) + " |"
        for name in a["per_class"]["tokens"]
    )
    stage_rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in f["stages_seconds"].items())
    rate_rows = "\n".join(
        f"| {ROW_TITLES[row]} ViT training | {t[f'{row}_vit_train_samples_per_s']:.0f} samples/s |" for row in ROWS
    )
    tok = f["tokenizer"]
    settings = f["settings"]
    steps = f["runs"]["tokens"]["steps"] // max(settings["epochs"], 1)
    twice = "reaches" if a["pixels_at_least_twice_chance"] else "does not reach"
    recipe = "the same" if f["same_recipe"] else "NOT the same (a bug: the comparison is void)"
    return f"""# seit demo report ({f["size"]})

{f["tradeoff_verdict"]}

Every row trains the same transformer ({settings["embed_dim"]} wide, {settings["depth"]} blocks,
{settings["num_heads"]} heads, 49 patch tokens) with {recipe} recipe and budget ({settings["epochs"]} epochs of
{steps} steps of {settings["batch_size"]}, AdamW at {settings["lr"]:g}, the same crops, flips and label
smoothing); only the stored training data and the input stem differ: the token ViT's Stem-Adaptor over a
14x14 crop of the {settings["image_size"] // 8}x{settings["image_size"] // 8} ids, the pixel ViTs' 8 px
patches of {settings["image_size"] * 7 // 16} px crops ({PIXEL_MODEL}; with 16 px patches of 112 px crops a
plain ViT stayed at chance on this budget). Every row is evaluated on the same full-quality held-out JPEGs;
the token model tokenizes them on the fly. The squeezed pixel rows were re-encoded to the most bytes per
image that stays within the token store's ({s["squeeze_budget_bytes_per_image"]:.0f} bytes per training
image), or the fewest their codec can reach. The full-quality pixel ViT {twice} twice chance
({2 * a["chance_top1"]:.0f}%).

## Storage and accuracy (bytes of the training split; top-1/top-5 on {a["held_out_images"]} held-out images)

| input | stored as | bytes | bytes per image | top-1 | top-5 |
|---|---|---:|---:|---:|---:|
{table}

`tradeoff.png` plots top-1 against bytes per image. The tokenizer itself ({s["tokenizer_bytes"]:,} bytes) is
needed once, not per image. With the val split, the token stores take {s["token_store_bytes"]:,} bytes
against {s["jpeg_bytes"]:,} of JPEG (**{s["ratio_tokens_to_jpeg"]:.4f}x**). The token ViT on the val token
store (instead of the images): {a["tokens_top1_on_store"]:.1f}% top-1.

| class | {" | ".join(ROW_TITLES[row] for row in ROWS)} |
|---|{"---:|" * len(ROWS)}
{per_class}

## Throughput (this machine)

| stage | rate |
|---|---:|
| dataset generation | {t["dataset_images_per_s"]:.0f} images/s |
| tokenizer training | {t["tokenizer_train_images_per_s"]:.1f} images/s |
| tokenizing | {t["tokenize_images_per_s"]:.0f} images/s |
{rate_rows}
| evaluation, tokens (tokenize + classify) | {t["eval_tokens_images_per_s"]:.0f} images/s |
| evaluation, pixels | {t["eval_pixels_images_per_s"]:.0f} images/s |

| stage (a row: its training data, training and evaluation) | seconds |
|---|---:|
{stage_rows}

Tokenizer after {settings["tokenizer_steps"]} steps: PSNR {tok.get("psnr", float("nan")):.1f} dB, SSIM
{tok.get("ssim", float("nan")):.3f}, {100 * tok.get("usage", float("nan")):.0f}% of the codes in use.

## Pictures

- `tradeoff.png`: top-1 against bytes per training image (log scale), the Pareto front as a step line
- `reconstructions.png`: held-out images (top) and what their tokens decode back to (bottom)
- `curves.png`: training loss and held-out top-1 of every row's ViT, tokenizer PSNR
- `confusion-<row>.png`: a confusion matrix per row

## Reuse the artefacts

    seit store info {paths.train_store}
    seit decode {paths.val_store} --tokenizer {paths.tokenizer} --grid decoded.png
    seit eval {paths.row_run("tokens")} --images {paths.data / "val"} --tokenizer {paths.tokenizer}
    seit eval {paths.row_run("jpeg")} --images {paths.data / "val"}
    seit train --images {paths.row_train("downsampled")} --val-images {paths.data / "val"} \\
        --model {PIXEL_MODEL} --image-size {settings["image_size"] * 7 // 16}

The same rows, and more (other grids and codebooks, JPEG qualities, sides), on any image folder:

    seit tradeoff {paths.data / "train"} --val {paths.data / "val"} --match-tokens --jpeg-qualities 1 5 20 \\
        --tokenizer-steps {settings["tokenizer_steps"]} --epochs {settings["epochs"]} --output tradeoff
"""
