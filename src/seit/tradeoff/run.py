"""`seit tradeoff`: the same ViT, recipe and budget on a folder's images stored many ways; top-1 against bytes.

Rows (each a way to keep the training images, each trained and evaluated alike):

  tokens-g<G>-k<K>-d<D>  a tokenizer trained per --tokens spec, the train images as a token store
  tokens-file-...        the same from a tokenizer file (--tokenizer): no tokenizer training
  stored                 the training images as they are
  jpeg-q<Q>              re-encoded as JPEG at quality Q (--jpeg-qualities)
  downsample-<S>         downsampled to a shorter side of S px, WebP (--downsample)
  jpeg-q<Q> / downsample-<S> matched to the first token row's bytes per image (--match-tokens)

Layout of OUT (each part in a folder named by it and a hash of everything its result depends on):

  tradeoff.json                      marks OUT as a tradeoff folder (any other used folder is refused)
  tokenizers/<spec>-<hash>/          tokenizer.safetensors, its checkpoint and metrics, result.json
  match/<hash>.json                  the squeeze settings --match-tokens chose
  rows/<row>-<hash>/                 store/{train,val} or images/ (the row's training data), run/ (the ViT),
                                     result.json (bytes, top-1/top-5 on --val, the recipe it trained with)
  report/                            report.md, report.json, frontier.png (this command's rows only)

A result.json holds its settings from the start and its result once the part is done (atomic writes): a rerun
reuses every finished part, so adding a row trains only that row, a changed recipe or data gives new folders
(the old ones stay, unreported), and a row stopped by a signal continues from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seit.demo.squeeze import DOWNSAMPLE_FORMAT, DOWNSAMPLE_QUALITY, Squeeze
from seit.errors import SeitError
from seit.tradeoff.config import TOKENIZER_PRESET, Recipe, TokenSpec, TradeoffConfig
from seit.tradeoff.stages import cached

log = logging.getLogger(__name__)

MARKER = "tradeoff.json"
FORMAT, VERSION = "seit.tradeoff", 1  # bump VERSION when a result records other fields: older ones are redone
RESULT = "result.json"


@dataclass(frozen=True)
class Row:
    """One way to keep the training images: a token store (``tokenizer``) or pixels (``squeeze``; None: as stored)."""

    name: str
    kind: str  # "tokens" or "pixels"
    settings: dict[str, Any]  # what names the row's folder, with the recipe and the data
    tokenizer: Path | None = None
    grid: int | None = None
    squeeze: Squeeze | None = None
    matched: bool = False  # a --match-tokens row

    @property
    def title(self) -> str:
        if self.kind == "tokens":
            return f"tokens, {self.settings['grid']}x{self.settings['grid']} ids of {self.settings['codes']} codes"
        if self.squeeze is None:
            return "pixels as stored"
        return f"pixels, {self.squeeze.describe()}" + (" (matched to the tokens' bytes)" if self.matched else "")


@dataclass(frozen=True)
class Data:
    """The user's folders, as every row's key sees them: a changed folder gives new rows."""

    images: Path
    val: Path
    classes: list[str]
    train_images: int
    train_bytes: int  # the image files seit reads, as stored
    val_images: int

    def key(self) -> dict[str, Any]:
        return {"images": str(self.images), "val": str(self.val), "train_images": self.train_images,
                "train_bytes": self.train_bytes, "val_images": self.val_images}  # fmt: skip


def short_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class RowFolders:
    """Where one row keeps its record, its training data (a token store or re-encoded images) and its run."""

    record: Path
    train_store: Path
    val_store: Path
    images: Path
    run: Path

    @property
    def made(self) -> tuple[Path, ...]:
        return self.train_store, self.val_store, self.images, self.run


class Layout:
    """Where a trade-off keeps its parts: each in a folder named by the part and a hash of its settings, so other
    settings get other folders (`seit demo` keeps the demo's fixed folders instead: see seit.demo.run)."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def tokenizer(self, name: str, key: str) -> tuple[Path, Path]:
        """(its record, its folder)."""
        folder = self.out / "tokenizers" / f"{name}-{key}"
        return folder / RESULT, folder

    def match(self, key: str) -> Path:
        return self.out / "match" / f"{key}.json"

    def row(self, row: Row, key: str) -> RowFolders:
        folder = self.out / "rows" / f"{row.name}-{key}"
        store = folder / "store"
        return RowFolders(folder / RESULT, store / "train", store / "val", folder / "images", folder / "run")


def claim_output(out: Path, restart: bool) -> None:
    """Use ``out`` when it is new, empty or a tradeoff folder; --restart moves a used one aside first."""
    if out.exists() and not out.is_dir():
        raise SeitError(f"{out}: a file is in the way where the output folder should be; choose another --output")
    used = out.is_dir() and any(out.iterdir())
    if used and restart:
        from seit.runtime import prepare_output

        prepare_output(out, restart=True)
    elif used and not (out / MARKER).exists():
        raise SeitError(
            f"{out}: not empty and not a seit tradeoff folder (no {MARKER}); choose another --output, or --restart "
            "(moves it aside)"
        )
    from seit.utils.io import atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    if not marker.exists():
        atomic_write_json(marker, {"format": FORMAT, "version": VERSION})
    elif json.loads(marker.read_text()).get("format") != FORMAT:
        raise SeitError(f"{marker}: not a seit tradeoff marker; choose another --output, or --restart")


def describe_data(images: Path, val: Path, out: Path) -> Data:
    """The two folders, checked: labelled trees with the same classes, neither holding OUT."""
    from seit.images import list_images

    images, val = images.resolve(), val.resolve()
    resolved_out = out.resolve()
    for flag, folder in (("IMAGES", images), ("--val", val)):
        if not folder.is_dir():
            raise SeitError(f"{flag} {folder}: no such folder (give an ImageFolder tree: one sub-folder per class)")
        if resolved_out == folder or folder in resolved_out.parents:
            raise SeitError(f"--output {out} is inside {flag} {folder}: its files would join the images; move it")
    train, held_out = list_images(images), list_images(val)
    if len(train.classes) < 2:
        raise SeitError(f"IMAGES {images}: needs an ImageFolder tree of at least 2 classes (one sub-folder each)")
    if held_out.classes != train.classes:
        raise SeitError(
            f"--val {val}: its classes {held_out.classes[:5]} differ from IMAGES' {train.classes[:5]}; give the "
            "held-out images of the same classes"
        )
    return Data(
        images=images,
        val=val,
        classes=list(train.classes),
        train_images=len(train.samples),
        train_bytes=sum(Path(s.path).stat().st_size for s in train.samples),
        val_images=len(held_out.samples),
    )


def tokenizer_row(path: Path) -> Row:
    """A token row from a tokenizer file: its grid and codebook read from the file."""
    from seit.tokenizer.checkpoint import read_tokenizer

    if not path.is_file():
        raise SeitError(f"--tokenizer {path}: no such file (give a tokenizer.safetensors)")
    config = read_tokenizer(path).config
    grid = config.image_size // config.patch_size
    stat = path.stat()
    settings = {"grid": grid, "codes": config.codebook_size, "dim": config.code_dim, "tokenizer": str(path.resolve()),
                "tokenizer_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}  # fmt: skip
    name = f"tokens-file-g{grid}-k{config.codebook_size}-d{config.code_dim}"
    return Row(name, "tokens", settings, tokenizer=path.resolve(), grid=grid)


def pixel_row(squeeze: Squeeze | None, matched: bool = False) -> Row:
    if squeeze is None:
        return Row("stored", "pixels", {"squeeze": None})
    name = f"jpeg-q{squeeze.quality}" if squeeze.side is None else f"downsample-{squeeze.side}"
    return Row(name, "pixels", {"squeeze": dataclasses.asdict(squeeze)}, squeeze=squeeze, matched=matched)


def run_tradeoff(cfg: TradeoffConfig) -> dict[str, Any]:
    """Run (or finish) every row of ``cfg`` under ``cfg.output``; writes and returns the report."""
    from seit.tradeoff.report import write_report

    out = Path(cfg.output)
    specs = cfg.token_specs()
    files = [tokenizer_row(Path(p)) for p in cfg.tokenizer or ()]  # checked before anything is written
    data = describe_data(Path(cfg.images), Path(cfg.val), out)
    claim_output(out, cfg.restart)
    recipe = cfg.recipe()
    rows = run_rows(cfg, Layout(out), data, recipe, specs, files)
    return write_report(out / "report", rows, data, recipe, cfg)


def run_rows(
    cfg: TradeoffConfig, layout: Layout, data: Data, recipe: Recipe, specs: list[TokenSpec], files: list[Row]
) -> list[dict[str, Any]]:
    """Every row's result (cached): token rows first, then the pixel rows, the matched ones last."""
    common = {"version": VERSION, "data": data.key(), "recipe": dataclasses.asdict(recipe), "seed": cfg.seed}
    token_rows = [_trained_tokenizer(cfg, layout, data, spec) for spec in specs] + files
    pixel_rows = [pixel_row(None)] if cfg.stored else []
    pixel_rows += [pixel_row(Squeeze("jpeg", q)) for q in cfg.jpeg_qualities or ()]
    pixel_rows += [pixel_row(Squeeze(DOWNSAMPLE_FORMAT, DOWNSAMPLE_QUALITY, s)) for s in cfg.downsample or ()]
    results = [_row(cfg, layout, data, recipe, row, common) for row in [*token_rows, *pixel_rows]]
    if cfg.match_tokens:
        budget = results[0]["bytes_per_image"]
        for squeeze in _matched(layout, data, recipe, budget):
            row = pixel_row(squeeze, matched=True)
            if all(r["row"] != row.name for r in results):  # an explicit row of the same setting is the same row
                results.append(_row(cfg, layout, data, recipe, row, common))
            else:
                next(r for r in results if r["row"] == row.name)["matched"] = True
    return results


def _trained_tokenizer(cfg: TradeoffConfig, layout: Layout, data: Data, spec: TokenSpec) -> Row:
    from seit.tradeoff.stages import train_tokenizer

    settings = {"version": VERSION, "spec": dataclasses.asdict(spec), "preset": TOKENIZER_PRESET,
                "steps": cfg.tokenizer_steps, "seed": cfg.seed, "data": data.key()}  # fmt: skip
    record, folder = layout.tokenizer(spec.name, short_hash(settings))
    tokenizer = folder / "tokenizer.safetensors"
    result = cached(
        f"tokenizer {spec.name}",
        record,
        settings,
        lambda: train_tokenizer(
            data.images,
            data.val,
            folder,
            image_size=spec.image_size,
            codebook_size=spec.codes,
            code_dim=spec.dim,
            steps=cfg.tokenizer_steps,
            seed=cfg.seed,
            device=cfg.device,
            num_workers=cfg.num_workers,
        ),
        artefacts=(tokenizer,),
        folders=(folder,),
    )
    row_settings = {**dataclasses.asdict(spec), "tokenizer": short_hash(settings), "tokenizer_bytes": result["bytes"]}
    return Row(spec.name, "tokens", row_settings, tokenizer=tokenizer, grid=spec.grid)


def _matched(layout: Layout, data: Data, recipe: Recipe, budget: float) -> list[Squeeze]:
    """The JPEG quality and the downsampled side with the most bytes per image within ``budget`` (the demo's)."""
    settings = {"version": VERSION, "budget": budget, "data": data.key(), "max_side": recipe.image_size}
    result = cached("match the tokens' bytes", layout.match(short_hash(settings)), settings,
                    lambda: _match(data, budget, recipe.image_size))  # fmt: skip
    return [Squeeze(**result[kind]) for kind in ("jpeg", "downsample")]


def _match(data: Data, budget: float, max_side: int) -> dict[str, Any]:
    from seit.demo.squeeze import downsample_settings, jpeg_settings, match_budget
    from seit.images import list_images
    from seit.tokenizer.render import spread_indices

    samples = list_images(data.images).samples
    probe = [Path(samples[i].path) for i in spread_indices(len(samples), min(len(samples), 200))]
    choices = {"jpeg": jpeg_settings(), "downsample": downsample_settings(max_side=max_side)}
    result: dict[str, Any] = {"budget_bytes_per_image": budget}
    for kind, settings in choices.items():
        squeeze, probe_bytes = match_budget(probe, budget, settings)
        result[kind] = dataclasses.asdict(squeeze)
        result[f"{kind}_probe_bytes_per_image"] = probe_bytes
    return result


def _row(cfg: TradeoffConfig, layout: Layout, data: Data, recipe: Recipe, row: Row, common: dict[str, Any]):
    settings = {"row": row.name, "kind": row.kind, **row.settings, **common}
    folders = layout.row(row, short_hash(settings))
    result = cached(row.name, folders.record, settings, lambda: _train_row(cfg, data, recipe, row, folders),
                    artefacts=(folders.run / "model.safetensors",), folders=folders.made)  # fmt: skip
    return {**result, "matched": row.matched}


def _train_row(cfg: TradeoffConfig, data: Data, recipe: Recipe, row: Row, folders: RowFolders) -> dict[str, Any]:
    """The row's training data (a token store, a re-encoded folder or the images), its ViT and its evaluation."""
    from seit.demo.squeeze import squeeze_folder
    from seit.tradeoff.stages import classifier_config, evaluate, folder_bytes, tokenize_stores, train_classifier

    devices = {"device": cfg.device, "num_workers": cfg.num_workers}
    extra: dict[str, Any] = {}
    if row.kind == "tokens":
        extra["tokenize"] = tokenize_stores(
            row.tokenizer, data.images, data.val, folders.train_store, folders.val_store, **devices
        )
        train_bytes = folder_bytes(folders.train_store)  # every file of the store
        stored_as = (f"{extra['tokenize']['codes_kept']}-code ids (of {row.settings['codes']}), "
                     f"{row.grid}x{row.grid} per image, every file of the store")  # fmt: skip
        inputs = {"store": folders.train_store, "val_store": folders.val_store, "grid": row.grid}
    elif row.squeeze is None:
        train_bytes, stored_as = data.train_bytes, "the image files as stored"
        inputs = {"images": data.images, "val_images": data.val}
    else:
        train_bytes = squeeze_folder(data.images, folders.images, row.squeeze, num_workers=cfg.num_workers)
        stored_as, inputs = row.squeeze.describe(), {"images": folders.images, "val_images": data.val}
    start = time.perf_counter()
    trained = train_classifier(classifier_config(recipe, cfg.seed, cfg.device, folders.run, **inputs))
    trained["train_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    evaluation = evaluate(folders.run, data.val, tokenizer=row.tokenizer, **devices)
    seconds = time.perf_counter() - start
    return {
        "row": row.name,
        "kind": row.kind,
        "title": row.title,
        "stored_as": stored_as,
        "train_bytes": train_bytes,
        "bytes_per_image": train_bytes / data.train_images,
        "top1": evaluation.top1,
        "top5": evaluation.top5,
        "held_out_images": evaluation.count,
        "run": str(folders.run),
        "train_data": str(folders.train_store if row.kind == "tokens" else inputs["images"]),
        "squeeze": dataclasses.asdict(row.squeeze) if row.squeeze is not None else None,
        "evaluation": {**evaluation.to_json(), "images_per_s": evaluation.count / seconds},
        **trained,
        **extra,
    }
