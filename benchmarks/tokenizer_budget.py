"""Tokenizer settings on a small CPU budget, judged downstream: reconstruction PSNR, store bytes, token-ViT top-1.

Each ``--variant NAME key=value ...`` trains the demo's tokenizer (``seit.demo.run._train_tokenizer``: the
same steps, batch and seed) with those ``seit tokenizer train`` settings replaced, tokenizes the demo data
with it (the demo's stage) and trains the token ViT of ``benchmarks/grid_stems.py`` on the stores. The data
come from a folder ``grid_stems.py`` prepared (``--data``); its own tokenizer and stores are the row ``demo``
(linked, read only; that row's ViT trains in OUT/demo). A variant's folder is reused only for the settings
and seed it was made with, and a ViT result only for the demo's recipe as it is now. ``--seed N`` trains every
tokenizer and ViT with seed N on the same data; the prepared tokenizer is seed 0's, so with another seed the
row ``demo`` trains its own.

    PYTHONPATH=src python benchmarks/tokenizer_budget.py --data /tmp/grid-bench/quick --out /tmp/tok-bench \
        --model deit_tiny_token_32 --variant dim8 code_dim=8 --variant k256 codebook_size=256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from unittest import mock

from seit.demo import run as demo
from seit.demo.config import SIZES, DemoConfig
from seit.store.format import MANIFEST

sys.path.insert(0, str(Path(__file__).parent))
from grid_stems import demo_recipe, train_token_vit


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def prepare_variant(paths, size, cfg, overrides: dict) -> None:
    """The demo's tokenizer and tokenize stages with ``overrides`` in the tokenizer's TrainConfig."""
    import seit.tokenizer.config as tokenizer_config

    base = tokenizer_config.TrainConfig
    if not paths.tokenizer.exists():
        with mock.patch.object(tokenizer_config, "TrainConfig", lambda **kw: base(**{**kw, **overrides})):
            demo._train_tokenizer(paths, size, cfg)
    if not (paths.val_store / MANIFEST).exists():
        demo._tokenize(paths, size, cfg)


def _settings(folder: Path, overrides: dict, seed: int) -> dict:
    """``overrides``, recorded in FOLDER/settings.json with the seed: a folder is reused only for what it was made
    with (seed 0 folders record the overrides alone, as before ``--seed``)."""
    made = overrides if seed == 0 else {"settings": overrides, "seed": seed}
    record = folder / "settings.json"
    if record.exists() and json.loads(record.read_text()) != made:
        sys.exit(f"{folder} was made with {record.read_text().strip()}, not {made}: use another name or --out")
    if not record.exists() and (folder / "tokenizer").exists():
        sys.exit(f"{folder} holds a run of unknown settings (no settings.json): use another name or --out")
    record.write_text(json.dumps(made))
    return overrides


def vit_result(paths, size, cfg, model: str) -> dict:
    """The token ViT's figures on this row's stores: trained once per folder, for the demo's current recipe."""
    result = paths.out / f"vit-{model}" / "result.json"
    if not result.exists():
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps(train_token_vit(paths, size, cfg, model, result.parent)))
    row = json.loads(result.read_text())
    if row.pop("recipe", None) != demo_recipe(size, cfg):
        sys.exit(f"{result}: trained with another recipe than the demo's now ({row['steps']} steps); move it away")
    return row


def figures(paths) -> dict:
    evals = [r for r in demo._jsonl(paths.tokenizer_dir / "metrics.jsonl") if r.get("kind") == "eval"]
    info = json.loads((paths.data / "demo-dataset.json").read_text())
    count = len(info["classes"]) * info["counts"]["train"]
    return {
        "psnr": evals[-1]["psnr"],
        "usage": evals[-1]["usage"],
        "store_bytes_per_image": demo._folder_bytes(paths.train_store) / count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a folder grid_stems.py prepared")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", default="quick", choices=tuple(SIZES))
    parser.add_argument("--model", default="deit_tiny_token_32")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"))
    parser.add_argument("--seed", type=int, default=0, help="seed of every tokenizer and ViT (the data stay)")
    args = parser.parse_args()
    size = SIZES[args.size]
    rows = {}
    for name, *settings in args.variant:
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "data").exists():
            (folder / "data").symlink_to((args.data / "data").resolve())
        overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in settings)}
        rows[name] = (folder, _settings(folder, overrides, args.seed))
    demo_folder = args.out / "demo"
    demo_folder.mkdir(parents=True, exist_ok=True)
    _settings(demo_folder, {}, args.seed)
    for part in ("data", "tokenizer", "stores") if args.seed == 0 else ("data",):  # the prepared tokenizer: seed 0
        if not (demo_folder / part).exists():
            (demo_folder / part).symlink_to((args.data / part).resolve())
    rows["demo"] = (demo_folder, {})
    table = []
    for name, (folder, overrides) in rows.items():
        cfg = DemoConfig(out=str(folder), size=args.size, seed=args.seed, device="cpu")
        paths = demo._Paths(folder)
        prepare_variant(paths, size, cfg, overrides)
        row = {"variant": name, "settings": overrides, **figures(paths), **vit_result(paths, size, cfg, args.model)}
        table.append(row)
        print(json.dumps(row), flush=True)
    print("| variant | settings | PSNR dB | codes used | store B/image | val top-1 (%) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in table:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "demo's"
        print(
            f"| {r['variant']} | {settings} | {r['psnr']:.1f} | {r['usage']:.0%} | {r['store_bytes_per_image']:.0f} "
            f"| {r['val_top1']:.1f} |"
        )


if __name__ == "__main__":
    main()
