"""How hard is the demo dataset? Small pixel models trained for a fixed CPU budget vs trivial baselines.

For each training-set size it trains a small CNN, a tiny ViT (patch 8, like the demo's token grids)
and the same ViT on a convolutional stem, on 64 px images, each on the same budget of ``--samples``
images seen, and prints train/val accuracy curves next to chance and two trivial-statistic baselines
(mean colour, colour histogram; nearest centroid) measured on the same split in the same run.

    PYTHONPATH=src python benchmarks/demo_dataset_difficulty.py --sizes 100 300 1000 --samples 60000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seit.demo.baselines import colour_histogram, mean_colour, nearest_centroid_accuracy
from seit.demo.dataset import load_split, make_demo_dataset


def small_cnn(num_classes: int, image_size: int) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        nn.Conv2d(3, 24, 4, stride=2, padding=1), nn.ReLU(inplace=True),  # 64 -> 32 px
        *block(24, 32), nn.MaxPool2d(2),
        *block(32, 64), nn.MaxPool2d(2),
        *block(64, 128), nn.MaxPool2d(2),
        *block(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes),
    )  # fmt: skip


def tiny_vit(num_classes: int, image_size: int) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=image_size, patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=2,
        num_classes=num_classes, global_pool="avg", class_token=False, fc_norm=False,
    )  # fmt: skip


def conv_stem_vit(num_classes: int, image_size: int) -> nn.Module:
    """The same tiny ViT on an 8x8 grid made by three stride-2 convolutions instead of a linear patch
    embedding (early convolutions; the pixel analogue of SeiT's Stem-Adaptor on token maps)."""
    from timm.models.vision_transformer import VisionTransformer

    def down(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    grid = image_size // 8
    return nn.Sequential(
        *down(3, 32), *down(32, 64), *down(64, 128),
        VisionTransformer(
            img_size=grid, patch_size=1, in_chans=128, embed_dim=128, depth=4, num_heads=4, mlp_ratio=2,
            num_classes=num_classes, global_pool="avg", class_token=False, fc_norm=False,
        ),
    )  # fmt: skip


def to_tensor(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    return (x - 0.5) / 0.25


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 1/8 of the image (label-preserving here)."""
    flip = torch.rand(len(x)) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = x.shape[-1] // 8
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    i, j = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
    return padded[..., i : i + x.shape[-2], j : j + x.shape[-1]]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def train(model: nn.Module, x, y, vx, vy, samples: int, lr: float, batch: int = 64) -> list[dict]:
    """AdamW, warmup + cosine over a budget of ``samples`` training images (epochs = samples / len(x))."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps_per_epoch = len(x) // batch
    epochs = max(1, round(samples / (steps_per_epoch * batch)))
    total, step, curve, start = epochs * steps_per_epoch, 0, [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        perm, correct = torch.randperm(len(x)), 0
        for i in range(steps_per_epoch):
            idx = perm[i * batch : (i + 1) * batch]
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / total))
            logits = model(augment(x[idx]))
            loss = F.cross_entropy(logits, y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
            step += 1
        if epoch % max(1, epochs // 10) and epoch != epochs:
            continue  # about ten points per curve
        point = {"epoch": epoch, "seconds": round(time.perf_counter() - start, 1),
                 "train_acc": correct / (steps_per_epoch * batch), "val_acc": accuracy(model, vx, vy)}  # fmt: skip
        curve.append(point)
        print(f"    epoch {epoch:3d}/{epochs}  {point['seconds']:6.1f}s  train {point['train_acc']:.3f}"
              f"  val {point['val_acc']:.3f}", flush=True)  # fmt: skip
    return curve


def subset(images: np.ndarray, labels: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` images of each class (load_split keeps files in index order)."""
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    return images[keep], labels[keep]


# name -> (builder, peak learning rate)
MODELS = {"cnn": (small_cnn, 2e-3), "vit": (tiny_vit, 1e-3), "vit-stem": (conv_stem_vit, 1e-3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="dataset folder (default: a temporary folder)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000], help="train images per class")
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--samples", type=int, default=60000, help="training images seen per model and size (budget)")
    ap.add_argument("--models", nargs="+", default=["cnn", "vit"], choices=list(MODELS))
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp) / "demo"
        results: dict = {"load_average_start": os.getloadavg()[0]}
        make_demo_dataset(root, train_per_class=max(args.sizes), val_per_class=args.val_per_class)
        train_all, train_labels_all, classes = load_split(root, "train", args.image_size)
        val_images, val_labels, _ = load_split(root, "val", args.image_size)
    vx, vy = to_tensor(val_images), torch.from_numpy(val_labels)
    results["chance"] = 1 / len(classes)
    results["sizes"] = {}
    for per_class in args.sizes:
        images, labels = subset(train_all, train_labels_all, per_class)
        row = {
            f"{f.__name__}_nc": nearest_centroid_accuracy(f(images), labels, f(val_images), val_labels)
            for f in (mean_colour, colour_histogram)
        }
        print(f"train {per_class}/class: chance {results['chance']:.3f}  mean-colour NC {row['mean_colour_nc']:.3f}"
              f"  histogram NC {row['colour_histogram_nc']:.3f}")  # fmt: skip
        x, y = to_tensor(images), torch.from_numpy(labels)
        for name in args.models:
            print(f"  {name}:")
            torch.manual_seed(0)
            build, lr = MODELS[name]
            model = build(len(classes), args.image_size)
            curve = train(model, x, y, vx, vy, args.samples, lr)
            row[name] = {"final_val_acc": curve[-1]["val_acc"], "best_val_acc": max(c["val_acc"] for c in curve),
                         "curve": curve}  # fmt: skip
        results["sizes"][per_class] = row

    print(f"\nsummary (val accuracy; chance {results['chance']:.2f})")
    print(f"{'train/class':>11} {'mean-col NC':>11} {'hist NC':>8} " + " ".join(f"{m:>8}" for m in args.models))
    for per_class, row in results["sizes"].items():
        models = " ".join(f"{row[m]['final_val_acc']:8.3f}" for m in args.models)
        print(f"{per_class:>11} {row['mean_colour_nc']:11.3f} {row['colour_histogram_nc']:8.3f} {models}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
