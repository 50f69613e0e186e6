"""SeiT++'s question on the demo data: does masked token modeling before fine-tuning beat training from scratch?

On the token stores of a `seit demo` run (default: `seit demo --quick`'s, 4 classes, 16x16 ids), the demo's token
ViT (deit_tiny_token_32 at width 128, 2 blocks, 4 heads) and recipe are trained for the same number of optimizer
steps two ways: from scratch (the demo's row), and `seit pretrain` (an MTM encoder of the same width, depth and
heads, on the same training ids, no labels) for a share of the steps, then `seit train --finetune ...
--layer-decay` for the rest; and, to tell what the encoder adds, the same fine-tuning steps from a random init.
Both on the full training split and on a quarter of it (every 4th sample; the same step budget, so 4x the
epochs). Validation top-1 on the demo's held-out token store.

``--tokenadapt`` adds SeiT++'s other half: the same pre-training with half of each batch through a TokenAdapt pair
(``seit pretrain --tokenadapt``), trained for the demo's tokenizer first; ``--also SHARE:BLR ...`` adds rows
with another pre-training share of the steps or another ``--blr``. Runs already in OUTPUT resume (finished ones
are only read), so extra rows cost only their own runs.

    seit demo --quick                                   # once: makes seit-demo/stores/{train,val}
    python benchmarks/pretrain_finetune.py --demo seit-demo --output bench-pretrain [--steps 375 --pretrain-share 0.4]
    # (about 7 CPU minutes at the defaults; --tokenadapt about 3 more, plus about 2 to train the pair)
    python benchmarks/pretrain_finetune.py --demo seit-demo --output bench-pretrain --tokenadapt --also 0.8:4e-3

Prints a Markdown table (and writes OUTPUT/results.json). CPU seconds are this process's (resource.getrusage).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seit.cli import main as seit_main
from seit.runtime.metrics import read_metrics

VIT = ["--model", "deit_tiny_token_32", "--embed-dim", "128", "--depth", "2", "--num-heads", "4"]
# the demo's token-ViT recipe (seit.demo.run._train_classifier): short CPU budget, unscaled lr, no CutMix/EMA
RECIPE = ["--batch-size", "64", "--lr", "1e-3", "--unscale-lr", "--warmup-epochs", "1", "--no-model-ema"]
RECIPE += ["--cutmix", "0", "--rrc-scale", "0.35", "1.0", "--hflip-prob", "0.5", "--drop-path", "0"]
COMMON = ["--no-tensorboard", "--ckpt-every", "0", "--log-every", "10", "--seed", "0"]
MTM = ["--model", "mtm_token_vit_tiny_test", "--embed-dim", "128", "--depth", "2", "--num-heads", "4"]


def quarter(train: Path, out: Path) -> Path:
    """Every 4th sample of ``train`` as a store of its own (classes stay balanced: the demo interleaves them)."""
    from seit.store import StoreWriter, TokenStore

    if (out / "manifest.json").exists():
        return out
    store = TokenStore.open(train)
    keep = np.arange(0, len(store), 4)
    ids, labels = store.get_batch(keep)
    keys = [store.keys[i] for i in keep]
    with StoreWriter(
        out,
        grid_shape=store.grid_shape,
        codebook_size=store.codebook_size,
        class_names=store.class_names,
        codebook=store.codebook,
        synonyms=store.synonyms,
        code_ids=store.code_ids,
    ) as writer:
        writer.append_batch(ids, labels, keys)
    return out


def run(argv: list[str]) -> None:
    code = seit_main(argv)
    if code != 0:
        raise SystemExit(f"seit {' '.join(argv)} exited {code}")


def top1(out: Path) -> float:
    return read_metrics(out / "metrics.jsonl", "eval")[-1]["top1"]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Pretraining:
    """One way to pre-train: the share of the steps it takes, its --blr and an optional TokenAdapt pair."""

    share: float
    blr: float
    tokenadapt: str | None = None

    def suffix(self, default: Pretraining) -> str:
        """Folder-name suffix: empty for the default setting (the first table's runs resume as they were)."""
        parts = [f"-share{self.share:g}"] if self.share != default.share else []
        parts += [f"-blr{self.blr:g}"] if self.blr != default.blr else []
        return "".join(parts) + ("-tokenadapt" if self.tokenadapt else "")

    def label(self) -> str:
        return f"MTM, blr {self.blr:g}" + (", TokenAdapt" if self.tokenadapt else "")


def mtm_loss(run: Path) -> tuple[float, float]:
    """First and last logged MTM loss of a `seit pretrain` run."""
    records = read_metrics(run / "metrics.jsonl", "train")
    return round(records[0]["loss"], 2), round(records[-1]["loss"], 2)


def scratch(train: Path, val: Path, out: Path, epochs: int, extra: list[str]) -> tuple[float, float]:
    """Top-1 and CPU seconds of the demo's token ViT trained from a random init for ``epochs``."""
    t = cpu_s()
    args = ["train", "--store", str(train), "--val-store", str(val), "--output", str(out), *VIT, *RECIPE, *COMMON]
    run([*args, "--epochs", str(epochs), *extra, "--resume", "auto"])
    return top1(out), round(cpu_s() - t, 1)


def compare(train: Path, val: Path, out: Path, steps: int, how: Pretraining, default: Pretraining, tag: str) -> dict:
    from seit.store import TokenStore

    per_epoch = len(TokenStore.open(train)) // 64
    epochs = max(1, round(steps / per_epoch))
    pre_epochs = max(1, round(epochs * how.share))
    data = ["--store", str(train)]
    row = {"train_samples": len(TokenStore.open(train)), "steps": epochs * per_epoch, "pretraining": how.label()}
    row["scratch_top1"], row["scratch_cpu_s"] = scratch(train, val, out / f"{tag}-scratch", epochs, [])

    t = cpu_s()
    suffix = how.suffix(default)
    mtm = out / f"{tag}-mtm{suffix}"
    pre = ["pretrain", *data, "--output", str(mtm), *MTM, "--batch-size", "64", "--blr", str(how.blr), *COMMON]
    pre += ["--epochs", str(pre_epochs), "--warmup-epochs", str(min(1, pre_epochs)), "--crop-size", "14"]
    pre += ["--tokenadapt", how.tokenadapt] if how.tokenadapt else []
    run([*pre, "--rrc-scale", "0.35", "1.0", "--resume", "auto"])
    ft = out / f"{tag}-finetuned{suffix}"
    fine = ["train", *data, "--val-store", str(val), "--output", str(ft), *VIT, *RECIPE, *COMMON]
    fine += ["--epochs", str(epochs - pre_epochs), "--finetune", str(mtm / "last.pt"), "--layer-decay", "0.65"]
    run([*fine, "--resume", "auto"])
    row["pretrain_steps"], row["finetune_steps"] = pre_epochs * per_epoch, (epochs - pre_epochs) * per_epoch
    row["finetuned_top1"], row["pretrain_finetune_cpu_s"] = top1(ft), round(cpu_s() - t, 1)
    row["mtm_loss_first"], row["mtm_loss_last"] = mtm_loss(mtm)

    # the fine-tuning steps alone from a random init: what the pre-trained encoder adds at equal labelled steps
    short = out / f"{tag}-scratch-short" if how.share == default.share else out / f"{tag}-scratch-share{how.share:g}"
    row["scratch_short_top1"] = scratch(train, val, short, epochs - pre_epochs, ["--layer-decay", "0.65"])[0]
    return row


def train_tokenadapt(demo: Path, out: Path) -> str:
    """A small TokenAdapt pair for the demo's tokenizer (benchmarks/tokenadapt_agreement.py's settings)."""
    pair = ["tokenadapt", "train", str(demo / "data" / "train"), "--tokenizer", str(demo / "tokenizer")]
    pair += ["--output", str(out), "--dim", "64", "--heads", "1", "--mlp-dim", "256", "--steps", "400"]
    run([*pair, "--batch-size", "16", "--lr", "2e-3", "--num-workers", "0", "--no-tensorboard", "--resume", "auto"])
    return str(out / "tokenadapt.safetensors")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", default="seit-demo", help="a `seit demo` output folder (its stores/train, stores/val)")
    p.add_argument("--output", default="bench-pretrain")
    p.add_argument("--steps", type=int, default=375, help="optimizer steps of each model in all (the quick demo's)")
    p.add_argument("--pretrain-share", type=float, default=0.4, help="share of the steps spent pre-training")
    p.add_argument(
        "--pretrain-blr",
        type=float,
        default=4e-3,
        help="seit pretrain --blr: 4e-3 gives lr 1e-3 at batch 64, the demo classifier's lr (SeiT++'s 1.5e-4 is "
        "for 400 ImageNet epochs and barely moves a few hundred steps)",
    )
    p.add_argument(
        "--tokenadapt",
        nargs="?",
        const="train",
        metavar="PAIR",
        help="also pre-train with this TokenAdapt pair (`seit pretrain --tokenadapt PAIR`); the flag alone trains "
        "a small one for the demo's tokenizer first (`seit tokenadapt train`, 400 steps, into OUTPUT/tokenadapt)",
    )
    p.add_argument(
        "--also",
        nargs="+",
        default=[],
        metavar="SHARE:BLR",
        help="further pre-training settings to compare (pre-training share and --blr), e.g. 0.8:4e-3 0.4:1.6e-2",
    )
    p.add_argument("--sizes", nargs="+", default=["full", "quarter"], choices=("full", "quarter"))
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    stores = Path(a.demo) / "stores"
    default = Pretraining(a.pretrain_share, a.pretrain_blr)
    settings = [default]
    if a.tokenadapt:
        pair = train_tokenadapt(Path(a.demo), out / "tokenadapt") if a.tokenadapt == "train" else a.tokenadapt
        settings.append(Pretraining(a.pretrain_share, a.pretrain_blr, pair))
    settings += [Pretraining(*map(float, also.split(":"))) for also in a.also]
    train = {"full": stores / "train", "quarter": None}
    results = {}
    for size in a.sizes:
        data = train[size] or quarter(stores / "train", out / "train-quarter")
        for how in settings:
            name = size + how.suffix(default)
            results[name] = compare(data, stores / "val", out, a.steps, how, default, size)
            (out / "results.json").write_text(json.dumps(results, indent=1))
    print(
        "| train split | pre-training | steps (pre-train + fine-tune) | from scratch, all steps "
        "| pre-trained + fine-tuned | from scratch, fine-tune steps only | MTM loss (first -> last) |"
    )
    print("|---|---|---|---:|---:|---:|---|")
    for name, r in results.items():
        print(
            f"| {name.split('-')[0]} ({r['train_samples']}) | {r['pretraining']} | {r['steps']} "
            f"({r['pretrain_steps']} + {r['finetune_steps']}) | {r['scratch_top1']:.1f}% | {r['finetuned_top1']:.1f}% "
            f"| {r['scratch_short_top1']:.1f}% | {r['mtm_loss_first']} -> {r['mtm_loss_last']} |"
        )
    print(
        "CPU seconds (this process; scratch, pre-train + fine-tune):",
        {name: (r["scratch_cpu_s"], r["pretrain_finetune_cpu_s"]) for name, r in results.items()},
    )


if __name__ == "__main__":
    main()
