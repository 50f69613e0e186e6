"""The stages of a storage / accuracy trade-off, shared by `seit tradeoff` and `seit demo`.

Each stage is a plain function over folders: train a tokenizer, tokenize the train and val images into token
stores, re-encode the train images (``seit.demo.squeeze``), train one row's classifier with the one recipe,
evaluate it on the full-quality held-out images. Each resumes what it finds in its output (the tokenizer and
the training runs from their checkpoints, the stores from their durable shards) and raises :class:`Stopped`
when a signal ends it, so the command exits 75 and a rerun continues.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seit.errors import SeitError

log = logging.getLogger(__name__)

PIXEL_MODEL = "deit_tiny_pixel_8"
TOKENIZER_BATCH = 16


class Stopped(SeitError):
    """A stage stopped by a signal after saving ``saved``; rerunning the same command continues it."""

    def __init__(self, saved: Path, where: str) -> None:
        super().__init__(f"stopped {where}; {saved} saved")
        self.saved, self.where = saved, where


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (timing under load: wall time is noisy)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cached(
    name: str,
    record: Path,
    settings: dict[str, Any],
    fn: Callable[[], dict[str, Any]],
    *,
    artefacts: tuple[Path, ...] = (),
    folders: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """``fn``'s result, from ``record`` when a run with these ``settings`` finished it (and ``artefacts`` exist).

    The record holds the settings from the start and the result once ``fn`` returns (atomic writes): a part
    stopped half-way continues in its ``folders`` (from their checkpoints); a record of other settings means
    its ``folders`` were made for those, so they are removed first.
    """
    import shutil

    from seit.utils.io import atomic_write_json

    settings = json.loads(json.dumps(settings))  # as a rerun reads them back (tuples become lists)
    done = json.loads(record.read_text()) if record.exists() else None
    if done is not None and done.get("settings") != settings:
        for folder in folders:
            if folder.exists():
                shutil.rmtree(folder)
        done = None
    if done is not None and done.get("result") is not None and all(p.exists() for p in artefacts):
        log.info("%s: done earlier, reusing it (%s)", name, record)
        return done["result"]
    if done is None:
        atomic_write_json(record, {"settings": settings, "result": None})
    log.info("%s ...", name)
    start, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    result.update(seconds=time.perf_counter() - start, cpu_seconds=cpu_seconds() - cpu)
    atomic_write_json(record, {"settings": settings, "result": result})
    log.info("%s: %.1f s", name, result["seconds"])
    return result


def folder_bytes(folder: Path) -> int:
    """Every byte of every file under ``folder``: what keeping it costs."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_tokenizer(
    images: Path,
    val_images: Path,
    out: Path,
    *,
    image_size: int,
    steps: int,
    seed: int,
    device: str | None,
    num_workers: int,
    codebook_size: int | None = None,
    code_dim: int | None = None,
) -> dict[str, Any]:
    """A small ViT-VQGAN on ``images`` (vitvq-tiny: ``image_size`` px -> (image_size/8)^2 ids): OUT/tokenizer.*."""
    from seit.tokenizer.config import TrainConfig
    from seit.tokenizer.train import train

    tcfg = TrainConfig(
        images=str(images),
        out=str(out),
        preset="vitvq-tiny",
        image_size=image_size,
        codebook_size=codebook_size,
        code_dim=code_dim,
        steps=steps,
        batch_size=TOKENIZER_BATCH,
        # a few hundred CPU steps: a high peak rate and frequent dead-code restarts keep the codebook from
        # collapsing onto a few codes (measured on the quick data: 14.5 dB at 1e-3 / 50 vs ~20 dB at 3e-3 / 20)
        lr=3e-3,
        warmup_steps=min(50, steps // 4),
        dead_code_steps=20,
        eval_every=max(steps // 4, 1),
        save_every=max(steps // 4, 1),
        log_every=10,
        val_images=str(val_images),
        num_workers=num_workers,
        device=device,
        seed=seed,
        resume="auto",
    )
    result = train(tcfg)
    if not result.finished:
        raise Stopped(result.checkpoint or out, f"at step {result.step}")
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("kind") == "eval"]
    return {
        "steps": steps,
        "images": steps * TOKENIZER_BATCH,
        "final_eval": evals[-1] if evals else {},
        "bytes": (out / "tokenizer.safetensors").stat().st_size,
    }


def tokenize_stores(
    tokenizer: Path, images: Path, val_images: Path, train_store: Path, val_store: Path, *, device, num_workers
) -> dict[str, Any]:
    """The train images into a pruned store with synonyms; the val images into a store of the same codes."""
    from seit.tokenizer.config import TokenizeConfig
    from seit.tokenizer.to_store import tokenize

    common = dict(tokenizer=str(tokenizer), num_workers=num_workers, device=device, resume="auto")
    results = []
    for config in (
        TokenizeConfig(images=str(images), out=str(train_store), prune=True, synonyms=10, **common),
        TokenizeConfig(images=str(val_images), out=str(val_store), codes_from=str(train_store), **common),
    ):
        result = tokenize(config)
        if not result.finished:
            raise Stopped(result.store, f"after {result.samples:,} images")
        log.info("%s", result.summary())
        results.append(result)
    train, val = results
    seconds = train.seconds + val.seconds
    return {
        "images_per_s": (train.encoded + val.encoded) / seconds if seconds else float("nan"),
        "train_samples": train.samples,
        "val_samples": val.samples,
        "skipped": len(train.skipped) + len(val.skipped),
        "codes_kept": train.codebook_size,
        "val_tokens_mapped": val.prune.mapped_tokens if val.prune is not None else 0,
    }


def recipe_config(size, seed: int, device: str | None):
    """The one training recipe (every row's, and the scenarios'): a TrainConfig without data or model name.

    ``size``: a :class:`~seit.tradeoff.config.Recipe` or a :class:`~seit.demo.config.DemoSize` (the same fields).
    A short CPU budget: a small ViT, an unscaled learning rate, no CutMix, EMA or drop-path; flips and milder
    crops than SeiT's ImageNet recipe help a ViT that sees a few thousand images.
    """
    from seit.engine.config import TrainConfig

    t = TrainConfig()
    t.model.embed_dim, t.model.depth, t.model.num_heads, t.model.drop_path = (
        size.embed_dim,
        size.depth,
        size.num_heads,
        0.0,
    )
    t.optim.epochs, t.optim.batch_size, t.optim.lr, t.optim.unscale_lr = size.epochs, size.batch_size, size.lr, True
    t.optim.warmup_epochs, t.optim.model_ema = 1.0, False
    t.augment = dataclasses.replace(t.augment, cutmix=0.0, rrc_scale=tuple(size.crop_scale), hflip_prob=0.5)
    t.run.device, t.run.seed, t.run.resume = device, seed, "auto"
    t.run.tensorboard, t.run.ckpt_every, t.run.log_every = True, 0, 10
    return t


def pixel_image_size(size) -> int:
    """56 px crops in 8 px patches: the token ViT's 7x7 sequence (16x16 ids -> 14x14 crop -> 7x7). A plain ViT
    learns from 8 px patches within the demo's budget; on 112 px crops in 16 px patches it stayed at chance."""
    return size.image_size * 7 // 16


def token_model(grid: int) -> str:
    """The token ViT for a grid of ``grid`` x ``grid`` ids: SeiT's stride-2 stem from 16x16 up, stride 1 below.

    BENCHMARKS.md "Grid-aware token models", the demo's recipe and budget: on 16x16 grids the stride-2 stem
    wins (46.0% vs 39.5%, at a quarter of the CPU); on 8x8 grids the stride-1 stem wins (38.5% vs 34.5%: a 7x7
    crop leaves a stride-2 stem 3x3 patches, the stride-1 stem 7x7).
    """
    return "deit_tiny_token_32" if grid >= 16 else "deit_tiny_token_32_s1"


def classifier_config(
    size,
    seed: int,
    device: str | None,
    output: Path,
    *,
    store: Path | None = None,
    val_store: Path | None = None,
    images: Path | None = None,
    val_images: Path | None = None,
    grid: int = 16,
):
    """One row's TrainConfig: the recipe, the row's training data and its input stem (token store or images)."""
    t = recipe_config(size, seed, device)
    if store is not None:
        t.data.store, t.data.val_store = str(store), str(val_store)
        t.model.model = token_model(grid)
    else:
        t.data.images, t.data.val_images = str(images), str(val_images)
        t.data.image_size = pixel_image_size(size)
        t.model.model = PIXEL_MODEL
    t.run.output = str(output)
    # seit train's defaults: no worker processes on CPU, for ids and for images decoded into memory alike
    t.data.num_workers = None
    return t


def train_or_stop(t):
    """``seit.engine.train.train(t)``'s result; :class:`Stopped` when a signal ended it (its last.pt saved)."""
    from seit.engine.train import train

    result = train(t)
    if result.preempted:
        raise Stopped(Path(t.run.output) / "last.pt", f"at step {result.global_step}")
    return result


def train_classifier(t) -> dict[str, Any]:
    """Train one row's ViT (``classifier_config``); raises :class:`Stopped` when a signal ends it."""
    result = train_or_stop(t)
    return {
        "model": t.model.model,
        "epochs": t.optim.epochs,
        "steps": result.global_step,
        "samples": result.global_step * t.optim.batch_size,
        "val_top1": result.best_top1,  # of the weights best.json names, which the evaluation uses
        "parameters": _parameters(Path(t.run.output) / "model.safetensors"),
        # what the run's settings were, so the report (and a test) can show every row had the same
        "recipe": recipe_of(t),
    }


def recipe_of(t) -> dict[str, Any]:
    """The settings every row must share: model size, optimisation, augmentation, seed."""
    model = {k: v for k, v in dataclasses.asdict(t.model).items() if k not in ("model", "finetune")}
    return json.loads(
        json.dumps(
            {
                "model": model,
                "optim": dataclasses.asdict(t.optim),
                "augment": dataclasses.asdict(t.augment),
                "seed": t.run.seed,
            }
        )
    )


def _parameters(path: Path) -> int:
    from seit.utils.serialization import load_weights

    return sum(v.numel() for k, v in load_weights(path).items() if k.startswith("model."))


def evaluate(run: Path, val_images: Path, *, tokenizer: Path | None, device, num_workers, store: Path | None = None):
    """A run folder's better weights (as its best.json says) on the full-quality held-out images (or ``store``)."""
    from seit.engine.config import EvalConfig
    from seit.engine.eval_job import run_eval

    ecfg = EvalConfig(checkpoint=str(run), images=None if store else str(val_images), store=store and str(store))
    ecfg.tokenizer = str(tokenizer) if tokenizer is not None and store is None else None
    ecfg.num_workers, ecfg.device = num_workers, device
    return run_eval(ecfg)
