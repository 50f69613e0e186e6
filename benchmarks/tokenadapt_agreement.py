"""Does TokenAdapt's flip / crop in converted space reproduce the codes of transformed images better than
transforming the token grid itself?

Trains a TokenAdapt pair with ``seit tokenadapt train`` (resumes an existing run in --output), then on
held-out images compares, per transform family, the fraction of ids equal to the tokenizer's codes of the
transformed image (:func:`seit.tokenadapt.evaluate.agreement`). Uses the quick demo's tokenizer and data:

    seit demo --quick --output /tmp/seit-demo      # or any earlier quick demo run
    PYTHONPATH=src python benchmarks/tokenadapt_agreement.py --demo /tmp/seit-demo --output /tmp/ta-bench/run
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

import numpy as np
import torch

from seit.augment.tokenadapt import crop_window, sample_geometry
from seit.images import list_images, load_image
from seit.tokenadapt import GeometryConfig, TokenAdaptTrainConfig, load_tokenadapt, train_tokenadapt
from seit.tokenadapt.evaluate import agreement
from seit.tokenizer import load_tokenizer

RANDOM = {
    "resized crop (SeiT++'s, scale 0.2-1)": GeometryConfig(hflip_prob=0.0, affine_prob=0.0),
    "rotate/translate/shear, whole map": GeometryConfig(
        hflip_prob=0.0, affine_prob=1.0, rrc_scale=(1.0, 1.0), rrc_aspect=(1.0, 1.0)
    ),
    "SeiT++'s distribution (all of them)": GeometryConfig(),
}


def fixed(matrix: torch.Tensor):
    """The same theta [2, 3] for every image."""
    return lambda batch: matrix[:2].repeat(batch, 1, 1)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", type=Path, required=True, help="a `seit demo` output folder (tokenizer/, data/)")
    p.add_argument("--output", type=Path, required=True, help="the TokenAdapt run folder")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--mlp-dim", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-images", type=int, default=200)
    args = p.parse_args()

    tokenizer_path = args.demo / "tokenizer" / "tokenizer.safetensors"
    start = cpu_seconds()
    cfg = TokenAdaptTrainConfig(
        images=str(args.demo / "data" / "train"),
        tokenizer=str(tokenizer_path),
        out=str(args.output),
        dim=args.dim,
        heads=args.heads,
        mlp_dim=args.mlp_dim,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        num_workers=0,
        device="cpu",
        tensorboard=False,
        resume="auto",
    )
    result = train_tokenadapt(cfg)
    train_cpu = cpu_seconds() - start

    tokenizer = load_tokenizer(tokenizer_path)
    model = load_tokenadapt(args.output)
    size = tokenizer.config.image_size
    samples = list_images(args.demo / "data" / "val").samples[: args.eval_images]
    images = torch.from_numpy(np.stack([load_image(s.path, size, "squash") for s in samples])).permute(0, 3, 1, 2)
    batches = list(images.split(50))
    window = crop_window(model.config.grid, model.config.crop)  # the centre crop grid, no transform
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    transforms = {"none (centre crop)": fixed(window), "flip (centre crop)": fixed(mirror @ window)}
    side = model.config.grid * model.config.scale
    for name, geometry in RANDOM.items():
        g = torch.Generator().manual_seed(0)
        transforms[name] = lambda batch, geometry=geometry, g=g: sample_geometry(batch, side, geometry, g)
    rows = {name: agreement(model, tokenizer, batches, sample) for name, sample in transforms.items()}
    report = {
        "tokenizer": str(tokenizer_path),
        "pair": vars(model.config),
        "steps": result.step,
        "last_train": result.last,
        "train_cpu_s": round(train_cpu, 1),
        "val_images": len(samples),
        "agreement": rows,
    }
    print(json.dumps(report, indent=1, default=str))
    print("| transform | TokenAdapt | token grid (nearest) | token grid (bilinear vectors) |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['tokenadapt']:.3f} | {row['token_nearest']:.3f} | {row['token_bilinear']:.3f} |")


if __name__ == "__main__":
    main()
