"""`seit demo`: the whole method end to end on the built-in dataset, with a storage / accuracy report.

Stages (each writes the artefacts the normal commands write, so every one can be reused or inspected):

  data        the built-in JPEG dataset                     OUT/data/{train,val}/<class>/*.jpg
  tokenizer   a small ViT-VQGAN trained on the train images  OUT/tokenizer/tokenizer.safetensors
  tokenize    train (pruned, synonyms) and val token stores  OUT/stores/{train,val}
  token-vit   a token ViT trained on the train store         OUT/token-vit/model.safetensors
  pixel-vit   the same ViT on the train JPEGs, same budget   OUT/pixel-vit/model.safetensors
  evaluate    both on the held-out val *images*              (the token model through the tokenizer)
  report      OUT/report/{report.md, report.json, reconstructions.png, curves.png, confusion-*.png}

A rerun skips the stages whose results are recorded in OUT/demo-state.json; delete a stage's folder to redo
it and every stage after it (or all of OUT to start over).
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
from seit.errors import SeitError

STATE = "demo-state.json"
STATE_VERSION = 3  # bump when a stage records other fields: an older state is then redone, not misread


class _Stages:
    """Runs the stages in order, each once: results are recorded in OUT/demo-state.json with their settings.

    A recorded stage whose artefacts exist is reused; once a stage runs, every later stage runs again on a
    clean folder (its inputs changed). A stage that was interrupted continues from its own checkpoints.
    """

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.path = out / STATE
        self.settings = settings
        state = json.loads(self.path.read_text()) if self.path.exists() else {}
        if state.get("settings") != settings:
            state = {"settings": settings, "stages": {}}  # other settings: redo everything
        self.state = state
        self.upstream_changed = False

    def run(self, name: str, fn, *artefacts: Path, folder: Path | None = None) -> dict[str, Any]:
        done = self.state["stages"].get(name)
        if not self.upstream_changed and done is not None and all(p.exists() for p in artefacts):
            print(f"[demo] {name}: done earlier ({done['seconds']:.1f} s), reusing its artefacts", flush=True)
            return done
        if self.upstream_changed and folder is not None and folder.exists():
            import shutil

            shutil.rmtree(folder)  # built from inputs that were just redone
        self.upstream_changed = True
        print(f"[demo] {name} ...", flush=True)
        start = time.perf_counter()
        result = fn()
        result["seconds"] = time.perf_counter() - start
        self.state["stages"][name] = result
        from seit.utils.io import atomic_write_json

        atomic_write_json(self.path, self.state)
        print(f"[demo] {name}: {result['seconds']:.1f} s", flush=True)
        return result


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run (or finish) the demo under ``cfg.out``; returns the report's figures."""
    size_name, size = cfg.demo_size()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"state_version": STATE_VERSION, "size": size_name, **dataclasses.asdict(size), "seed": cfg.seed}
    stages = _Stages(out, settings)
    started = time.perf_counter()
    paths = _Paths(out)

    data = stages.run("data", lambda: _make_data(paths, size, cfg), paths.data / "demo-dataset.json")
    tok = stages.run(
        "tokenizer", lambda: _train_tokenizer(paths, size, cfg), paths.tokenizer, folder=paths.tokenizer_dir
    )
    stores = stages.run(
        "tokenize",
        lambda: _tokenize(paths, size, cfg),
        paths.train_store / "manifest.json",
        paths.val_store / "manifest.json",
        folder=paths.out / "stores",
    )
    token = stages.run(
        "token-vit",
        lambda: _train_classifier(paths, size, cfg, tokens=True),
        paths.token_model,
        folder=paths.token_run,
    )
    pixel = stages.run(
        "pixel-vit",
        lambda: _train_classifier(paths, size, cfg, tokens=False),
        paths.pixel_model,
        folder=paths.pixel_run,
    )
    evals = stages.run("evaluate", lambda: _evaluate(paths, cfg))
    figures = _report(
        paths, size_name, size, data, tok, stores, token, pixel, evals, total=time.perf_counter() - started
    )
    return figures


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
    def token_run(self) -> Path:
        return self.out / "token-vit"

    @property
    def pixel_run(self) -> Path:
        return self.out / "pixel-vit"

    @property
    def token_model(self) -> Path:
        return self.token_run / "model.safetensors"

    @property
    def pixel_model(self) -> Path:
        return self.pixel_run / "model.safetensors"

    @property
    def report(self) -> Path:
        return self.out / "report"


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
    from seit.tokenizer.config import TrainConfig
    from seit.tokenizer.train import train

    steps = size.tokenizer_steps
    tcfg = TrainConfig(
        images=str(paths.data / "train"),
        out=str(paths.tokenizer_dir),
        preset="vitvq-tiny",
        image_size=size.image_size,
        steps=steps,
        batch_size=16,
        # a few hundred CPU steps: a high peak rate and frequent dead-code restarts keep the codebook from
        # collapsing onto a few codes (measured on the quick data: 14.5 dB at 1e-3 / 50 vs ~20 dB at 3e-3 / 20)
        lr=3e-3,
        warmup_steps=min(50, steps // 4),
        dead_code_steps=20,
        eval_every=max(steps // 4, 1),
        save_every=max(steps // 4, 1),
        log_every=10,
        val_images=str(paths.data / "val"),
        num_workers=cfg.num_workers,
        device=cfg.device,
        seed=cfg.seed,
        resume=True,
    )
    result = train(tcfg)
    if not result.finished:
        raise SeitError("tokenizer training was interrupted; rerun `seit demo` to continue it")
    evals = [r for r in _jsonl(paths.tokenizer_dir / "log.jsonl") if r.get("split") == "eval"]
    return {
        "steps": steps,
        "images": steps * tcfg.batch_size,
        "final_eval": evals[-1] if evals else {},
        "bytes": paths.tokenizer.stat().st_size,
    }


def _tokenize(paths: _Paths, size: DemoSize, cfg: DemoConfig) -> dict[str, Any]:
    from seit.tokenizer.config import TokenizeConfig
    from seit.tokenizer.to_store import tokenize

    common = dict(tokenizer=str(paths.tokenizer), num_workers=cfg.num_workers, device=cfg.device)
    train = tokenize(
        TokenizeConfig(images=str(paths.data / "train"), out=str(paths.train_store), prune=True, synonyms=10, **common)
    )
    val = tokenize(
        TokenizeConfig(
            images=str(paths.data / "val"), out=str(paths.val_store), codes_from=str(paths.train_store), **common
        )
    )
    for result in (train, val):
        print(result.summary(), flush=True)
    seconds = train.seconds + val.seconds
    return {
        "images_per_s": (train.encoded + val.encoded) / seconds,
        "train_samples": train.samples,
        "val_samples": val.samples,
        "skipped": len(train.skipped) + len(val.skipped),
        "codes_kept": train.codebook_size,
        "val_tokens_mapped": val.prune.mapped_tokens if val.prune is not None else 0,
    }


def _train_classifier(paths: _Paths, size: DemoSize, cfg: DemoConfig, *, tokens: bool) -> dict[str, Any]:
    from seit.engine.config import TrainConfig
    from seit.engine.train import train

    t = TrainConfig()
    if tokens:
        t.data.store, t.data.val_store = str(paths.train_store), str(paths.val_store)
        t.model.model, t.run.output = "deit_tiny_token_32", str(paths.token_run)
    else:
        t.data.images, t.data.val_images = str(paths.data / "train"), str(paths.data / "val")
        t.data.image_size = size.image_size * 7 // 8  # 112 px -> 7x7 patches of 16, as 16x16 ids -> 14 -> 7x7
        t.model.model, t.run.output = "deit_tiny_pixel_16", str(paths.pixel_run)
    # a short CPU budget: a small ViT, a higher unscaled learning rate, no CutMix, EMA or drop-path; flips
    # and milder crops than SeiT's ImageNet recipe help a ViT that sees a few thousand images
    t.model.embed_dim, t.model.depth, t.model.num_heads, t.model.drop_path = (
        size.embed_dim,
        size.depth,
        size.num_heads,
        0.0,
    )
    t.optim.epochs, t.optim.batch_size, t.optim.lr, t.optim.unscale_lr = size.epochs, size.batch_size, 1e-3, True
    t.optim.warmup_epochs, t.optim.model_ema = 1.0, False
    t.augment = dataclasses.replace(t.augment, cutmix=0.0, rrc_scale=(0.35, 1.0), hflip_prob=0.5)
    # tokens: seit train's default (no worker processes on CPU); pixels: the demo's image-decoding workers
    t.data.num_workers = None if tokens else cfg.num_workers
    t.run.device, t.run.seed, t.run.resume = cfg.device, cfg.seed, "auto"
    t.run.tensorboard, t.run.ckpt_every, t.run.log_every = True, 0, 10
    result = train(t)
    if result.preempted:
        raise SeitError("training was stopped by a signal; rerun `seit demo` to continue it")
    return {
        "model": t.model.model,
        "epochs": size.epochs,
        "steps": result.global_step,
        "samples": result.global_step * size.batch_size,
        "val_top1": result.best_top1,  # of the weights best.json names, which the evaluate stage uses
        "parameters": _parameters(Path(t.run.output) / "model.safetensors"),
    }


def _parameters(path: Path) -> int:
    from seit.utils.serialization import load_weights

    return sum(v.numel() for k, v in load_weights(path).items() if k.startswith("model."))


def _evaluate(paths: _Paths, cfg: DemoConfig) -> dict[str, Any]:
    from seit.engine.config import EvalConfig
    from seit.engine.evaluate import run_eval, save_confusion_png

    paths.report.mkdir(parents=True, exist_ok=True)
    results = {}
    # a run folder stands for its better weights (model or EMA, as its best.json says)
    runs = {
        "tokens": EvalConfig(
            checkpoint=str(paths.token_run), images=str(paths.data / "val"), tokenizer=str(paths.tokenizer)
        ),
        "pixels": EvalConfig(checkpoint=str(paths.pixel_run), images=str(paths.data / "val")),
        "tokens_on_store": EvalConfig(checkpoint=str(paths.token_run), store=str(paths.val_store)),
    }
    for name, ecfg in runs.items():
        ecfg.num_workers, ecfg.device = cfg.num_workers, cfg.device
        start = time.perf_counter()
        result = run_eval(ecfg)
        seconds = time.perf_counter() - start
        results[name] = {**result.to_json(), "images_per_s": result.count / seconds}
        if name != "tokens_on_store":
            save_confusion_png(
                result,
                paths.report / f"confusion-{name}.png",
                title=f"{name}: top-1 {result.top1:.1f}% on {result.count} held-out images",
            )
    return results


def _report(
    paths: _Paths, size_name: str, size: DemoSize, data, tok, stores, token, pixel, evals, total: float
) -> dict[str, Any]:
    from seit.utils.io import atomic_write_bytes, atomic_write_json

    report = paths.report
    report.mkdir(parents=True, exist_ok=True)
    jpeg = data["train_jpeg_bytes"] + data["val_jpeg_bytes"]
    store_bytes = {"train": _folder_bytes(paths.train_store), "val": _folder_bytes(paths.val_store)}
    tokens_total = sum(store_bytes.values())
    images = data["train_images"] + data["val_images"]
    chance = 100.0 / len(data["classes"])
    t, p = evals["tokens"], evals["pixels"]
    figures = {
        "size": size_name,
        "settings": dataclasses.asdict(size),
        "total_seconds": total,
        "storage": {
            "jpeg_bytes": jpeg,
            "token_store_bytes": tokens_total,
            "token_store_bytes_by_split": store_bytes,
            "ratio_tokens_to_jpeg": tokens_total / jpeg,
            "jpeg_bytes_per_image": jpeg / images,
            "token_bytes_per_image": tokens_total / images,
            "tokenizer_bytes": tok["bytes"],
        },
        "accuracy": {
            "chance_top1": chance,
            "tokens_top1": t["top1"],
            "tokens_top5": t["top5"],
            "pixels_top1": p["top1"],
            "pixels_top5": p["top5"],
            "ratio_tokens_to_pixels": t["top1"] / p["top1"] if p["top1"] else math.inf,
            "gap_points": p["top1"] - t["top1"],
            "tokens_top1_on_store": evals["tokens_on_store"]["top1"],
            "per_class_tokens": t["per_class_top1"],
            "per_class_pixels": p["per_class_top1"],
            "held_out_images": t["count"],
        },
        "throughput": {
            # NaN where a rerun found the images already drawn
            "dataset_images_per_s": data["generated"] / data["seconds"] if data["generated"] else math.nan,
            "tokenizer_train_images_per_s": tok["images"] / tok["seconds"],
            "tokenize_images_per_s": stores["images_per_s"],
            "token_vit_train_samples_per_s": token["samples"] / token["seconds"],
            "pixel_vit_train_samples_per_s": pixel["samples"] / pixel["seconds"],
            "eval_tokens_images_per_s": t["images_per_s"],
            "eval_pixels_images_per_s": p["images_per_s"],
        },
        "stages_seconds": {
            name: s["seconds"]
            for name, s in (
                ("data", data),
                ("tokenizer", tok),
                ("tokenize", stores),
                ("token-vit", token),
                ("pixel-vit", pixel),
                ("evaluate", evals),
            )
        },
        "tokenizer": tok["final_eval"],
        "tokenize": stores,
        "token_vit": token,
        "pixel_vit": pixel,
    }
    _reconstructions(paths, report / "reconstructions.png")
    _curves(paths, report / "curves.png")
    atomic_write_json(report / "report.json", figures)
    atomic_write_bytes(report / "report.md", _markdown(figures, paths).encode())
    print("\n" + _summary(figures, paths), flush=True)
    return figures


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
    for name, run in (("tokens", paths.token_run), ("pixels", paths.pixel_run)):
        records = _jsonl(run / "metrics.jsonl")
        train = [r for r in records if r["kind"] == "train"]
        evals = [r for r in records if r["kind"] == "eval"]
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label=f"{name} ViT", alpha=0.8)
        axes[1].plot([r["epoch"] for r in evals], [r["top1"] for r in evals], marker="o", ms=3, label=f"{name} ViT")
    tok = [r for r in _jsonl(paths.tokenizer_dir / "log.jsonl") if r.get("split") == "train"]
    axes[2].plot([r["step"] for r in tok], [r["psnr"] for r in tok], color="tab:green")
    axes[0].set(title="training loss", xlabel="step", ylabel="soft-target cross-entropy")
    axes[1].set(title="held-out top-1 (val split)", xlabel="epoch", ylabel="%")
    axes[2].set(title="tokenizer reconstruction", xlabel="step", ylabel="PSNR (dB, train batches)")
    for ax in axes[:2]:
        ax.legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_open(png, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def _summary(f: dict[str, Any], paths: _Paths) -> str:
    s, a = f["storage"], f["accuracy"]
    return (
        f"seit demo ({f['size']}, {f['total_seconds'] / 60:.1f} min)\n"
        f"  storage : {s['jpeg_bytes'] / 1e6:.2f} MB of JPEG -> {s['token_store_bytes'] / 1e6:.3f} MB of token stores "
        f"({s['ratio_tokens_to_jpeg']:.3f}x, {s['jpeg_bytes'] / s['token_store_bytes']:.0f}x smaller; "
        f"{s['token_bytes_per_image']:.0f} vs {s['jpeg_bytes_per_image']:.0f} bytes per image)\n"
        f"  accuracy: token ViT {a['tokens_top1']:.1f}% vs pixel ViT {a['pixels_top1']:.1f}% top-1 on "
        f"{a['held_out_images']} held-out images (chance {a['chance_top1']:.1f}%): tokens are "
        f"{abs(a['gap_points']):.1f} points {'below' if a['gap_points'] > 0 else 'above'} pixels "
        f"({100 * a['ratio_tokens_to_pixels']:.0f}% of the pixel baseline)\n"
        f"  report  : {paths.report / 'report.md'}"
    )


def _markdown(f: dict[str, Any], paths: _Paths) -> str:
    s, a, t = f["storage"], f["accuracy"], f["throughput"]
    per_class = "\n".join(
        f"| {name} | {a['per_class_tokens'][name]:.1f} | {a['per_class_pixels'][name]:.1f} |"
        for name in a["per_class_tokens"]
    )
    stage_rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in f["stages_seconds"].items())
    tok = f["tokenizer"]
    verdict = (
        f"The token ViT reaches {a['tokens_top1']:.1f}% top-1, {a['tokens_top1'] - a['chance_top1']:.1f} points above "
        f"chance and {100 * a['ratio_tokens_to_pixels']:.0f}% of the pixel ViT's {a['pixels_top1']:.1f}% "
        f"({abs(a['gap_points']):.1f} points {'below' if a['gap_points'] > 0 else 'above'} it), while its training "
        f"data takes {s['ratio_tokens_to_jpeg']:.3f}x the bytes of the JPEGs."
    )
    if a["pixels_top1"] < a["chance_top1"] + 5:
        verdict += (
            " The pixel ViT barely leaves chance on this CPU budget: a plain patch-16 ViT learns shapes from raw "
            "pixels slowly, while the token ViT starts from the tokenizer's learned codes and a convolutional stem. "
            "With ImageNet-scale budgets pixels lead (SeiT: ViT-B 81.8% on pixels vs 74.0% on tokens)."
        )
    return f"""# seit demo report ({f["size"]})

{verdict}

Both ViTs have the same transformer ({f["settings"]["embed_dim"]} wide, {f["settings"]["depth"]} blocks,
{f["settings"]["num_heads"]} heads, 49 patch tokens), the same recipe and the same budget
({f["settings"]["epochs"]} epochs of {f["token_vit"]["steps"] // max(f["settings"]["epochs"], 1)} steps of
{f["settings"]["batch_size"]}); only the input differs: 16x16 token ids (-> Stem-Adaptor) versus 112 px
pixels (-> 16 px patches). Both are evaluated on the same held-out JPEGs; the token model tokenizes them
on the fly.

## Storage

| | bytes | per image |
|---|---:|---:|
| JPEG images (train + val) | {s["jpeg_bytes"]:,} | {s["jpeg_bytes_per_image"]:.0f} |
| token stores (train + val, every file) | {s["token_store_bytes"]:,} | {s["token_bytes_per_image"]:.0f} |
| **ratio tokens / JPEG** | **{s["ratio_tokens_to_jpeg"]:.4f}** | |

The tokenizer itself ({s["tokenizer_bytes"]:,} bytes) is needed once, not per image.

## Accuracy on {a["held_out_images"]} held-out images (chance {a["chance_top1"]:.1f}%)

| | top-1 | top-5 |
|---|---:|---:|
| token ViT (images tokenized on the fly) | {a["tokens_top1"]:.1f} | {a["tokens_top5"]:.1f} |
| pixel ViT | {a["pixels_top1"]:.1f} | {a["pixels_top5"]:.1f} |
| **ratio tokens / pixels** | **{a["ratio_tokens_to_pixels"]:.3f}** | |

The token ViT on the val token store (instead of the images): {a["tokens_top1_on_store"]:.1f}% top-1.

| class | tokens top-1 | pixels top-1 |
|---|---:|---:|
{per_class}

## Throughput (this machine)

| stage | rate |
|---|---:|
| dataset generation | {t["dataset_images_per_s"]:.0f} images/s |
| tokenizer training | {t["tokenizer_train_images_per_s"]:.1f} images/s |
| tokenizing | {t["tokenize_images_per_s"]:.0f} images/s |
| token ViT training | {t["token_vit_train_samples_per_s"]:.0f} samples/s |
| pixel ViT training | {t["pixel_vit_train_samples_per_s"]:.0f} samples/s |
| evaluation, tokens (tokenize + classify) | {t["eval_tokens_images_per_s"]:.0f} images/s |
| evaluation, pixels | {t["eval_pixels_images_per_s"]:.0f} images/s |

| stage | seconds |
|---|---:|
{stage_rows}

Tokenizer after {f["settings"]["tokenizer_steps"]} steps: PSNR {tok.get("psnr", float("nan")):.1f} dB, SSIM
{tok.get("ssim", float("nan")):.3f}, {100 * tok.get("usage", float("nan")):.0f}% of the codes in use.

## Pictures

- `reconstructions.png`: held-out images (top) and what their tokens decode back to (bottom)
- `curves.png`: training loss and held-out top-1 of both ViTs, tokenizer PSNR
- `confusion-tokens.png`, `confusion-pixels.png`

## Reuse the artefacts

    seit store info {paths.train_store}
    seit decode {paths.val_store} --tokenizer {paths.tokenizer} --grid decoded.png
    seit eval {paths.token_run} --images {paths.data / "val"} --tokenizer {paths.tokenizer}
    seit eval {paths.pixel_run} --images {paths.data / "val"}
"""
