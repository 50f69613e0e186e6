"""Storage-efficient pre-training (SeiT's first scenario): pre-train on tokens, fine-tune on a few pixels.

A user keeps most of a labelled collection only as tokens and a small part as pixels. Is a pixel ViT better
off fine-tuned from a token ViT trained on the token part, or trained from scratch on its few pixels? On the
built-in data (``seit demo``'s generator and classes):

  data          the demo's JPEG dataset (quick: its 4 classes, 4x the       OUT/data/{train,val}/<class>/
                train images)
  split         per class, a seeded order of the train images: each         OUT/split/tokens/, OUT/split/pixels-*/
                labelled subset (a fraction of the train images, at most a
                half) is its first images, so smaller subsets nest in
                larger; every image after the largest subset goes to the
                token pool
  tokenizer     the demo's tokenizer on the train images (or --tokenizer)   OUT/tokenizer/tokenizer.safetensors
  tokenize      the token pool and the val images into token stores         OUT/stores/{pool,val}
  pretrain      a token ViT on the pool store (the demo's recipe, its own   OUT/runs/pretrain-tokens/
                --pretrain-steps budget)
  scratch-*     per subset: a pixel ViT from scratch on the subset          OUT/runs/scratch-<pct>/
  finetune-*    per subset: the same pixel ViT, --finetune from pretrain    OUT/runs/finetune-<pct>/
  report        OUT/report/{report.md, report.json, accuracy.png}

Both sides of a subset share one recipe and budget (:func:`labelled_config`: the same steps, batch, schedule,
augmentation and seed; only ``--finetune`` and the output differ); the pre-training is the token side's extra
(its steps are in the report), so changing its budget redoes the pre-training and the fine-tuned rows only.
Every run is evaluated on the same full-quality held-out images. Each stage
records its result with its settings in OUT/state/<stage>.json: a rerun reuses finished stages, redoes those
whose settings changed, and an interrupted training run resumes from its own checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seit.config import Checked, at_least, between, each, field, non_negative
from seit.demo.config import SIZES as DEMO_SIZES
from seit.demo.config import DemoSize
from seit.demo.run import _Paths
from seit.errors import ConfigError, SeitError

log = logging.getLogger(__name__)


STATE_VERSION = 1  # bump when a stage records other fields: an older record is then redone, not misread
PIXEL_MODEL = "deit_tiny_pixel_8"
TOKEN_MODEL = "deit_tiny_token_32"
SIDES = ("scratch", "finetune")
SIDE_TITLES = {"scratch": "pixel ViT from scratch", "finetune": "fine-tuned from token pre-training"}


@dataclass(frozen=True)
class PretrainSize:
    """The demo size (data, tokenizer, ViT, the token pre-training's recipe) and the two training budgets."""

    demo: DemoSize
    pretrain_steps: int  # optimizer steps of the token pre-training on the pool (rounded to epochs)
    labelled_steps: int  # optimizer steps of every labelled row, scratch and fine-tuned alike (rounded to epochs)
    labelled_batch: int


SIZES = {
    # the quick demo's classes, tokenizer and ViT with 4x its train images (images are drawn by class and index:
    # the first 250 per class are the quick demo's) and 2x its held-out ones, so that the token pool is large
    # and a top-1 difference is less noisy; a pre-training of 1,000 steps is 3x the quick demo's token ViT's
    "quick": PretrainSize(
        dataclasses.replace(DEMO_SIZES["quick"], train_per_class=1000, val_per_class=100),
        pretrain_steps=1000,
        labelled_steps=600,
        labelled_batch=32,
    ),
    # every stage and artefact in seconds (tests of the plumbing); its accuracies mean nothing
    "tiny": PretrainSize(
        DemoSize(
            classes=2,
            train_per_class=40,
            val_per_class=4,
            tokenizer_steps=2,
            epochs=1,
            batch_size=8,
            image_size=64,
            embed_dim=32,
            depth=1,
            num_heads=2,
        ),
        pretrain_steps=5,
        labelled_steps=4,
        labelled_batch=2,  # the default --fractions' smallest subset (2%) is 2 images at this size
    ),
}


@dataclass
class StoragePretrainConfig(Checked):
    output: str = field("seit-storage-pretrain", help="output folder (every stage's artefacts and the report)")
    size: str = field(
        "quick",
        help="quick (the classes, tokenizer and ViT of `seit demo --quick`: 4 classes, 4,000 train and 400 "
        "held-out images) or tiny (a smoke run in seconds; its accuracies mean nothing)",
        choices=tuple(SIZES),
    )
    labelled_steps: int | None = field(
        None,
        help="optimizer steps of every labelled row, scratch and fine-tuned alike, rounded to whole epochs "
        "(default: the size's: quick 600, tiny 4)",
        check=at_least(1),
    )
    pretrain_steps: int | None = field(
        None,
        help="optimizer steps of the token pre-training, rounded to whole epochs of the token pool (default: the "
        "size's: quick 1000, tiny 5); changing it redoes the pre-training and the fine-tuned rows, not the "
        "scratch rows",
        check=at_least(1),
    )
    fractions: tuple[float, ...] = field(
        (0.02, 0.05, 0.1, 0.25),
        help="labelled pixel subsets as fractions of the train images (at most 0.5); the train images outside "
        "the largest subset are the token pre-training pool",
        check=each(between(0, 0.5, include_lo=False)),
    )
    tokenizer: str | None = field(
        None,
        help="use this tokenizer instead of training one (e.g. `seit demo --quick`'s OUT/tokenizer/"
        "tokenizer.safetensors, trained on the same classes)",
    )
    seed: int = field(0, help="seed of the dataset, the split and every training run", check=non_negative)
    device: str | None = field(None, help="cuda / cpu (default: cuda if available)")
    num_workers: int = field(2, help="worker processes for image decoding", check=non_negative)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fractions or len(set(self.fractions)) != len(self.fractions):
            raise ConfigError(f"--fractions needs distinct values, got {list(self.fractions)}")
        size = SIZES[self.size]
        for fraction in self.fractions:
            images = labelled_per_class(size, fraction) * size.demo.classes
            if images < size.labelled_batch:
                raise ConfigError(
                    f"--fractions {fraction:g} gives {images} labelled images at --size {self.size}, fewer than one "
                    f"batch of {size.labelled_batch}; use a fraction of at least "
                    f"{size.labelled_batch / (size.demo.classes * size.demo.train_per_class):.2g}"
                )

    def steps(self) -> int:
        """The labelled rows' step budget: --labelled-steps, or the size's."""
        return self.labelled_steps or SIZES[self.size].labelled_steps

    def pretraining_steps(self) -> int:
        """The token pre-training's step budget: --pretrain-steps, or the size's."""
        return self.pretrain_steps or SIZES[self.size].pretrain_steps

    def pool_images(self) -> int:
        """The token pool: the train images outside the largest labelled subset."""
        size = SIZES[self.size]
        return (size.demo.train_per_class - labelled_per_class(size, max(self.fractions))) * size.demo.classes


def labelled_per_class(size: PretrainSize, fraction: float) -> int:
    return max(1, round(fraction * size.demo.train_per_class))


def row_name(side: str, fraction: float) -> str:
    return f"{side}-{fraction * 100:g}pct"


@dataclass(frozen=True)
class Paths(_Paths):
    """The demo's folders (data, tokenizer, stores/val, report: its data and tokenizer stages write them) and ours."""

    @property
    def token_pool(self) -> Path:
        return self.out / "split" / "tokens"

    def labelled(self, fraction: float) -> Path:
        return self.out / "split" / f"pixels-{fraction * 100:g}pct"

    @property
    def pool_store(self) -> Path:
        return self.out / "stores" / "pool"

    def run(self, name: str) -> Path:
        return self.out / "runs" / name

    @property
    def pretrained(self) -> Path:
        return self.run("pretrain-tokens") / "model.safetensors"


def labelled_config(cfg: StoragePretrainConfig, paths: Paths, fraction: float, side: str):
    """The TrainConfig of one labelled row: both sides of a subset get the same one but for --finetune."""
    from seit.demo.run import pixel_image_size, recipe_config

    size = SIZES[cfg.size]
    t = recipe_config(size.demo, cfg.seed, cfg.device)
    steps_per_epoch = labelled_per_class(size, fraction) * size.demo.classes // size.labelled_batch
    t.optim.batch_size = size.labelled_batch
    t.optim.epochs = max(1, round(cfg.steps() / steps_per_epoch))
    t.run.eval_every = t.optim.epochs  # evaluated once, at the end
    t.data.images, t.data.val_images = str(paths.labelled(fraction)), str(paths.data / "val")
    t.data.image_size, t.data.num_workers = pixel_image_size(size.demo), cfg.num_workers
    t.model.model = PIXEL_MODEL
    t.model.finetune = str(paths.pretrained) if side == "finetune" else None
    t.run.output = str(paths.run(row_name(side, fraction)))
    return t


def pretrain_config(cfg: StoragePretrainConfig, paths: Paths):
    """The token ViT on the pool store: the demo's token row's recipe, for --pretrain-steps (whole epochs)."""
    from seit.demo.run import recipe_config

    size = SIZES[cfg.size]
    t = recipe_config(size.demo, cfg.seed, cfg.device)
    t.optim.epochs = max(1, round(cfg.pretraining_steps() / (cfg.pool_images() // size.demo.batch_size)))
    t.run.eval_every = t.optim.epochs  # evaluated once, at the end
    t.data.store, t.data.val_store = str(paths.pool_store), str(paths.val_store)
    t.model.model, t.run.output = TOKEN_MODEL, str(paths.run("pretrain-tokens"))
    return t


class _Stages:
    """Each stage once: its result and settings in OUT/state/<stage>.json (see the module docstring)."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "state"

    def run(self, name: str, settings: dict[str, Any], fn: Callable[[], dict[str, Any]], *artefacts: Path,
            folder: Path | None = None) -> dict[str, Any]:  # fmt: skip
        from seit.tradeoff.stages import cached

        return cached(name, self.dir / f"{name}.json", {"state_version": STATE_VERSION, **settings}, fn,
                      artefacts=artefacts, folders=(folder,) if folder is not None else ())  # fmt: skip


def run_storage_pretrain(cfg: StoragePretrainConfig) -> dict[str, Any]:
    """Run (or finish) the scenario under ``cfg.output``; returns the report's figures."""
    from seit.demo.config import DemoConfig
    from seit.demo.run import _make_data, _train_tokenizer

    if cfg.tokenizer is not None and not Path(cfg.tokenizer).is_file():
        raise SeitError(f"--tokenizer {cfg.tokenizer}: no such file (give a tokenizer.safetensors, or leave it out)")
    size = SIZES[cfg.size]
    paths = Paths(Path(cfg.output))
    paths.out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(paths.out)
    demo_cfg = DemoConfig(out=str(paths.out), seed=cfg.seed, device=cfg.device, num_workers=cfg.num_workers)
    base = {"size": dataclasses.asdict(size.demo), "seed": cfg.seed}  # what data, tokens and pre-training depend on

    data = stages.run("data", base, lambda: _make_data(paths, size.demo, demo_cfg), paths.data)
    split = stages.run(
        "split",
        {**base, "fractions": sorted(cfg.fractions)},
        lambda: _split(paths, size, cfg),
        paths.token_pool,
        *map(paths.labelled, cfg.fractions),
        folder=paths.out / "split",
    )
    if cfg.tokenizer is None:
        tokenizer = paths.tokenizer
        tok = stages.run(
            "tokenizer",
            base,
            lambda: _train_tokenizer(paths, size.demo, demo_cfg),
            tokenizer,
            folder=paths.tokenizer_dir,
        )
        tokens = {**base, "tokenizer": tok["steps"]}
    else:
        tokenizer = Path(cfg.tokenizer)
        tokens = {**base, "tokenizer": str(tokenizer.resolve()), "tokenizer_bytes": tokenizer.stat().st_size}
    pool = {**tokens, "pool_images": cfg.pool_images()}  # the pool is the train images outside the largest subset
    stores = stages.run(
        "tokenize",
        pool,
        lambda: _tokenize(paths, tokenizer, cfg),
        paths.pool_store,
        paths.val_store,
        folder=paths.out / "stores",
    )
    pretrained = {**pool, "pretrain_steps": cfg.pretraining_steps()}
    pretrain = stages.run(
        "pretrain",
        pretrained,
        lambda: _train(pretrain_config(cfg, paths)),
        paths.pretrained,
        folder=paths.run("pretrain-tokens"),
    )
    rows = []
    for fraction in sorted(cfg.fractions):
        for side in SIDES:
            name = row_name(side, fraction)
            budget = {"fraction": fraction, "steps": cfg.steps(), "batch_size": size.labelled_batch}
            settings = {**(pretrained if side == "finetune" else base), **budget}
            result = stages.run(
                name,
                settings,
                lambda fraction=fraction, side=side: _train_labelled(cfg, paths, fraction, side),
                paths.run(name) / "model.safetensors",
                folder=paths.run(name),
            )
            rows.append({"fraction": fraction, "side": side, **result})
    return _report(cfg, paths, size, data, split, stores, pretrain, rows)


def _split(paths: Paths, size: PretrainSize, cfg: StoragePretrainConfig) -> dict[str, Any]:
    """Per class, a seeded permutation of the train images: the first ones -> the labelled subsets (nested), every
    one after the largest subset -> the token pool."""
    import numpy as np

    from seit.images import list_images

    listing = list_images(paths.data / "train")
    by_class: dict[int, list[Path]] = {}
    for sample in listing.samples:
        by_class.setdefault(sample.label, []).append(Path(sample.path))
    counts = {"pool": 0, **{f: 0 for f in cfg.fractions}}
    pool_bytes = 0
    for label, files in sorted(by_class.items()):
        name = listing.classes[label]
        order = np.random.default_rng([cfg.seed, label]).permutation(len(files))
        chosen = [files[i] for i in order]
        labelled = labelled_per_class(size, max(cfg.fractions))
        pool_bytes += _place(chosen[labelled:], paths.token_pool / name)
        counts["pool"] += len(chosen) - labelled
        for fraction in cfg.fractions:
            subset = chosen[: labelled_per_class(size, fraction)]
            _place(subset, paths.labelled(fraction) / name)
            counts[fraction] += len(subset)
    return {
        "pool_images": counts["pool"],
        "pool_jpeg_bytes": pool_bytes,
        "labelled_images": {str(f): counts[f] for f in cfg.fractions},
        "train_images": len(listing.samples),
    }


def _place(files: list[Path], folder: Path) -> int:
    """Hard links (copies where links cannot be made) of ``files`` in ``folder``; returns their bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        target = folder / file.name
        target.unlink(missing_ok=True)
        try:
            os.link(file, target)
        except OSError:
            shutil.copyfile(file, target)
    return sum(f.stat().st_size for f in files)


def _tokenize(paths: Paths, tokenizer: Path, cfg: StoragePretrainConfig) -> dict[str, Any]:
    """The token pool into a pruned store with synonyms, the val images into a store of its codes."""
    from seit.tradeoff.stages import folder_bytes, tokenize_stores

    stores = tokenize_stores(tokenizer, paths.token_pool, paths.data / "val", paths.pool_store, paths.val_store,
                             device=cfg.device, num_workers=cfg.num_workers)  # fmt: skip
    return {"pool_samples": stores["train_samples"], "pool_store_bytes": folder_bytes(paths.pool_store)}


def _train_labelled(cfg: StoragePretrainConfig, paths: Paths, fraction: float, side: str) -> dict[str, Any]:
    t = labelled_config(cfg, paths, fraction, side)
    return {
        "labelled_images": labelled_per_class(SIZES[cfg.size], fraction) * SIZES[cfg.size].demo.classes,
        **_train(t),
    }


def _train(t) -> dict[str, Any]:
    """Train ``t``; its held-out figures at the last step come from its metrics.jsonl, so a run resumed after
    its last evaluation (which then does not evaluate again) reports the same."""
    from seit.runtime.metrics import read_metrics
    from seit.tradeoff.stages import train_or_stop

    result = train_or_stop(t)
    evals = [r for r in read_metrics(result.output / "metrics.jsonl", "eval") if r["step"] == result.global_step]
    if not evals:
        raise SeitError(f"{result.output}: no evaluation at the last step; delete the folder and rerun")
    return {
        "model": t.model.model,
        "epochs": t.optim.epochs,
        "steps": result.global_step,
        "batch_size": t.optim.batch_size,
        **{k: evals[-1][k] for k in ("top1", "top5", "count")},
        "config": dataclasses.asdict(t),
    }


def _report(cfg, paths, size, data, split, stores, pretrain, rows) -> dict[str, Any]:
    from seit.utils.io import atomic_write_bytes, atomic_write_json

    chance = 100.0 / len(data["classes"])
    table = []
    for fraction in sorted(cfg.fractions):
        pair = {r["side"]: r for r in rows if r["fraction"] == fraction}
        table.append(
            {
                "fraction": fraction,
                "labelled_images": pair["scratch"]["labelled_images"],
                "steps": pair["scratch"]["steps"],
                "epochs": pair["scratch"]["epochs"],
                "scratch_top1": pair["scratch"]["top1"],
                "finetune_top1": pair["finetune"]["top1"],
                "gain_points": pair["finetune"]["top1"] - pair["scratch"]["top1"],
                "scratch_cpu_seconds": pair["scratch"]["cpu_seconds"],
                "finetune_cpu_seconds": pair["finetune"]["cpu_seconds"],
            }
        )
    figures = {
        "size": cfg.size,
        "settings": dataclasses.asdict(size),
        "fractions": sorted(cfg.fractions),
        "labelled_steps": cfg.steps(),
        "pretrain_steps": cfg.pretraining_steps(),
        "chance_top1": chance,
        "held_out_images": data["val_images"],
        "train_images": split["train_images"],
        "table": table,
        "verdict": _verdict(table, pretrain, data["val_images"]),
        "same_recipe": all(_recipe(a["config"]) == _recipe(b["config"]) for a, b in zip(rows[::2], rows[1::2])),
        "pretrain": {
            "pool_images": split["pool_images"],
            "pool_jpeg_bytes": split["pool_jpeg_bytes"],
            "pool_store_bytes": stores["pool_store_bytes"],
            "steps": pretrain["steps"],
            "epochs": pretrain["epochs"],
            "batch_size": pretrain["batch_size"],
            "token_top1": pretrain["top1"],
            "cpu_seconds": pretrain["cpu_seconds"],
        },
        "rows": [{k: v for k, v in r.items() if k != "config"} for r in rows],
    }  # fmt: skip
    paths.report.mkdir(parents=True, exist_ok=True)
    _plot(table, chance, pretrain["top1"], paths.report / "accuracy.png")
    atomic_write_json(paths.report / "report.json", figures)
    atomic_write_bytes(paths.report / "report.md", _markdown(figures, cfg).encode())
    log.info("storage-efficient pre-training:\n%s\nreport: %s", _table(table), paths.report / "report.md")
    return figures


def _recipe(config: dict[str, Any]) -> dict[str, Any]:
    """A row's settings but the two a pair may differ in: the checkpoint it starts from and its output folder."""
    same = json.loads(json.dumps(config))
    same["model"].pop("finetune")
    same["run"].pop("output")
    return same


def _verdict(table: list[dict[str, Any]], pretrain: dict[str, Any], held_out: int) -> str:
    """Which side wins where, and whether the gaps exceed the noise of a top-1 on ``held_out`` images."""
    wins = [r for r in table if r["gain_points"] > 0]
    mean = sum(r["gain_points"] for r in table) / len(table)
    by_size = "; ".join(
        f"{r['labelled_images']} images: {r['finetune_top1']:.1f}% vs {r['scratch_top1']:.1f}%" for r in table
    )
    top1 = sum(r["scratch_top1"] + r["finetune_top1"] for r in table) / (2 * len(table)) / 100
    noise = 100 * math.sqrt(2 * top1 * (1 - top1) / max(held_out, 1))  # standard error of a difference
    clear = [r for r in table if abs(r["gain_points"]) > 2 * noise]
    return (
        f"Fine-tuning from token pre-training beats training from scratch at {len(wins)} of {len(table)} labelled-set "
        f"sizes (mean {mean:+.1f} points; {by_size}); gaps beyond twice the standard error of a difference on "
        f"{held_out} held-out images ({noise:.1f} points): {len(clear)} of {len(table)}. The token pre-training "
        f"({pretrain['steps']} steps on the token pool) reaches {pretrain['top1']:.1f}% on its own, on the val token "
        "store."
    )


def _table(table: list[dict[str, Any]]) -> str:
    lines = [
        "| labelled pixels | images | steps | from scratch | token-pretrained | gain |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {100 * r['fraction']:g}% | {r['labelled_images']} | {r['steps']} | {r['scratch_top1']:.1f} | "
        f"{r['finetune_top1']:.1f} | {r['gain_points']:+.1f} |"
        for r in table
    ]  # fmt: skip
    return "\n".join(lines)


def _markdown(f: dict[str, Any], cfg: StoragePretrainConfig) -> str:
    p, s = f["pretrain"], f["settings"]["demo"]
    recipe = "the same" if f["same_recipe"] else "NOT the same (a bug: the comparison is void)"
    ratio = p["pool_jpeg_bytes"] / max(p["pool_store_bytes"], 1)
    cpu = ", ".join(f"{r['scratch_cpu_seconds']:.0f}/{r['finetune_cpu_seconds']:.0f}" for r in f["table"])
    fractions = " ".join(f"{x:g}" for x in f["fractions"])
    return f"""# Storage-efficient pre-training ({f["size"]})

{f["verdict"]}

Top-1 (%) on {f["held_out_images"]} held-out full-quality images (chance {f["chance_top1"]:.0f}%); the labelled
subsets are fractions of the {f["train_images"]} train images:

{_table(f["table"])}

Both columns train the same pixel ViT ({PIXEL_MODEL}: {s["embed_dim"]} wide, {s["depth"]} blocks, {s["num_heads"]}
heads, 8 px patches of {s["image_size"] * 7 // 16} px crops) with {recipe} recipe and budget per row (AdamW at
{s["lr"]:g}, batch {f["settings"]["labelled_batch"]}, about {f["labelled_steps"]} steps rounded to
whole epochs, the same crops, flips and label smoothing, seed {cfg.seed}); the right column starts from the
token ViT (`seit train --finetune`): its blocks, norms, class token, position embedding (the same 7x7 patch
grid) and head (the same classes) carry over; the pixel patch embedding is new, at timm's initialisation.

The token pre-training ({TOKEN_MODEL}, the same transformer) ran {p["steps"]} steps of {p["batch_size"]} over
{p["epochs"]} epochs on the train images outside the labelled subsets: {p["pool_images"]} images kept as a token
store of {p["pool_store_bytes"]:,} bytes ({p["pool_jpeg_bytes"]:,} as JPEG, {ratio:.0f}x more). Alone it reaches
{p["token_top1"]:.1f}% on the val token store. Process CPU seconds: pre-training {p["cpu_seconds"]:.0f}; rows
(scratch/fine-tuned) {cpu}.

`accuracy.png` plots top-1 against the labelled-set size, token-pretrained vs from scratch.

    seit scenario storage-pretrain --size {f["size"]} --fractions {fractions} --labelled-steps {f["labelled_steps"]} \\
        --pretrain-steps {f["pretrain_steps"]} --output {cfg.output}
"""


def _plot(table: list[dict[str, Any]], chance: float, token_top1: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seit.utils.io import atomic_open

    x = [r["labelled_images"] for r in table]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(x, [r["finetune_top1"] for r in table], marker="*", ms=10, color="tab:red", label=SIDE_TITLES["finetune"])
    ax.plot(x, [r["scratch_top1"] for r in table], marker="o", color="tab:blue", label=SIDE_TITLES["scratch"])
    ax.axhline(token_top1, color="tab:red", linestyle="--", alpha=0.4, label="the token pre-training alone")
    ax.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.0f}%)")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{n}\n({100 * r['fraction']:g}%)" for n, r in zip(x, table)])
    ax.minorticks_off()
    ax.set(
        xlabel="labelled pixel images (share of the train images)",
        ylabel="top-1 on held-out images (%)",
        title="pixel ViT: token pre-training + fine-tuning vs from scratch",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_open(png, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
