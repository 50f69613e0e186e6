"""Token ViT top-1 with SeiT's stride-2 Stem-Adaptor vs the stride-1 (grid-aware) stem, on the demo data.

The demo's data, tokenizer and stores are made once by the demo's own stage code (``--size`` picks the demo
size); then every ``--models`` entry trains with the demo's token-ViT recipe and budget (same width, depth,
epochs, crops, flips, seed) and is evaluated on the held-out store, which is deterministic. Process CPU
seconds of each run are printed too (CPU timing on a shared machine is noisy; compare them as ratios).
``--tokenizer-variant`` trains extra tokenizers (their own stores) to compare tokenizer settings downstream.

    PYTHONPATH=src python benchmarks/grid_stems.py --out /tmp/grid-bench --size quick \
        --models deit_tiny_token_32 deit_tiny_token_32_s1
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

from seit.config import to_dict
from seit.demo import run as demo
from seit.demo.config import SIZES, DemoConfig
from seit.store.format import MANIFEST


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def prepare(paths, size, cfg) -> dict:
    """The demo's data, tokenizer and token stores (each stage skipped when its artefacts exist)."""
    state = {}
    if not (paths.data / "demo-dataset.json").exists():
        state["data"] = demo._make_data(paths, size, cfg)
    if not paths.tokenizer.exists():
        state["tokenizer"] = demo._train_tokenizer(paths, size, cfg)
    if not (paths.val_store / MANIFEST).exists():
        state["tokenize"] = demo._tokenize(paths, size, cfg)
    return state


def demo_recipe(size, cfg) -> dict:
    """The demo's token-ViT recipe as it is now, recorded with each result so a stale one can be told apart."""
    return json.loads(json.dumps(to_dict(demo.recipe_config(size, cfg.seed, cfg.device))))  # as read back


def train_token_vit(paths, size, cfg, model: str, out: Path) -> dict:
    """The demo's token-ViT recipe (seit.demo.run.recipe_config) with another ``--model``."""
    from seit.engine.train import train

    t = demo.recipe_config(size, cfg.seed, cfg.device)
    t.data.store, t.data.val_store = str(paths.train_store), str(paths.val_store)
    t.model.model = model
    t.run.output = str(out)
    t.run.tensorboard, t.run.log_every = False, 50
    start = cpu_seconds()
    result = train(t)
    return {
        "model": model,
        "val_top1": result.best_top1,
        "steps": result.global_step,
        "cpu_s": cpu_seconds() - start,
        "recipe": demo_recipe(size, cfg),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", default="quick", choices=tuple(SIZES))
    parser.add_argument("--models", nargs="*", default=["deit_tiny_token_32", "deit_tiny_token_32_s1"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    cfg = DemoConfig(out=str(args.out), size=args.size, seed=args.seed, device="cpu")
    size = SIZES[args.size]
    paths = demo._Paths(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    prep = prepare(paths, size, cfg)
    if prep:
        (args.out / "prepare.json").write_text(json.dumps(prep, indent=1, default=str))
    if args.prepare_only:
        return
    rows = []
    for model in args.models:
        result = args.out / f"vit-{model}" / "result.json"
        if not result.exists():  # each row once: rerun to add rows (or run rows in parallel processes)
            result.parent.mkdir(parents=True, exist_ok=True)
            result.write_text(json.dumps(train_token_vit(paths, size, cfg, model, result.parent)))
        rows.append({k: v for k, v in json.loads(result.read_text()).items() if k != "recipe"})
        print(json.dumps(rows[-1]), flush=True)
    print("| model | val top-1 (%) | steps | process CPU s |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['val_top1']:.1f} | {r['steps']} | {r['cpu_s']:.0f} |")


if __name__ == "__main__":
    main()
