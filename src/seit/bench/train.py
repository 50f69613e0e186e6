"""Benchmark (b): training steps/s of a token ViT versus the same ViT on 224x224 pixels."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from seit.config import arg_type, at_least

DESCRIPTION = """\
Training steps/s: a token ViT (default deit_tiny_token_32: 32x32 ids -> 28x28 crop -> Stem-Adaptor ->
196 tokens) versus the same ViT on pixels (deit_tiny_pixel_16: 224x224 -> patch 16 -> 196 tokens).

Each step is what `seit train` does on the device: the input pipeline (token: Token-EDA, codebook
lookup, random resized crop, Emb-Noise/ColorAdapt, CutMix; pixels: normalisation and CutMix of already
decoded uint8 crops, i.e. not counting JPEG decoding, which only the pixel side would pay), forward,
loss, backward, AdamW step. Both run in alternating rounds of the same run, on the same device and
threads; the figure is the ratio of their median steps/s (target >= 1.0x).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token-model", default="deit_tiny_token_32", help="token ViT (default: deit_tiny_token_32)")
    p.add_argument("--pixel-model", default="deit_tiny_pixel_16", help="pixel ViT (default: deit_tiny_pixel_16)")
    p.add_argument("--batch-size", type=arg_type(int, at_least(1)), default=32, help="samples per step (default: 32)")
    p.add_argument("--steps", type=arg_type(int, at_least(1)), default=3, help="timed steps per round (default: 3)")
    p.add_argument(
        "--rounds", type=arg_type(int, at_least(1)), default=3, help="alternating rounds; medians reported (default: 3)"
    )
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument(
        "--depth", type=arg_type(int, at_least(1)), default=None, help="override both models' depth (quick smoke runs)"
    )
    p.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast dtype (default: none)")


def _overrides(args) -> dict[str, int]:
    return {"depth": args.depth} if args.depth else {}


def _token_side(args, torch, device):
    import timm

    import seit.models  # noqa: F401
    from seit.augment import AugmentConfig, TokenAugment

    gen = torch.Generator().manual_seed(0)
    codebook = torch.randn(391, 32, generator=gen)
    ids = torch.randint(0, 391, (args.batch_size, 32, 32), generator=gen, dtype=torch.int16)
    labels = torch.randint(0, 1000, (args.batch_size,), generator=gen)
    augment = TokenAugment(AugmentConfig(), codebook, None, num_classes=1000, device=device)
    model = timm.create_model(args.token_model, num_classes=1000, img_size=28, **_overrides(args)).to(device)
    return model, lambda: augment.train(ids.to(device), labels.to(device))


def _pixel_side(args, torch, device):
    import timm

    import seit.models  # noqa: F401
    from seit.augment import AugmentConfig
    from seit.augment.mix import SoftTargets
    from seit.engine.pixels import normalise

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, 224, 224), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 1000, (args.batch_size,), generator=gen)
    targets = SoftTargets(AugmentConfig(), 1000)
    model = timm.create_model(args.pixel_model, num_classes=1000, img_size=224, **_overrides(args)).to(device)
    return model, lambda: targets(normalise(images, device), labels.to(device), 0)


def _steps_per_second(model, batch_fn, steps: int, torch, device, amp: str) -> float:
    from timm.loss import SoftTargetCrossEntropy

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = SoftTargetCrossEntropy()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")

    def step():
        x, y = batch_fn()
        with autocast:
            loss = criterion(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up (allocations, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from seit.utils.dist import resolve_device

    device = resolve_device(args.device)
    token_model, token_batch = _token_side(args, torch, device)
    pixel_model, pixel_batch = _pixel_side(args, torch, device)
    rates: dict[str, list[float]] = {"token": [], "pixel": []}
    for r in range(args.rounds):
        order = ("token", "pixel") if r % 2 == 0 else ("pixel", "token")
        for side in order:
            model, batch = (token_model, token_batch) if side == "token" else (pixel_model, pixel_batch)
            rates[side].append(_steps_per_second(model, batch, args.steps, torch, device, args.amp))
    token, pixel = statistics.median(rates["token"]), statistics.median(rates["pixel"])
    figures = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "token_model": args.token_model,
        "pixel_model": args.pixel_model,
        "token_steps_per_s": token,
        "pixel_steps_per_s": pixel,
        "ratio": token / pixel,
        "token_rounds": rates["token"],
        "pixel_rounds": rates["pixel"],
    }
    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch_size}, {args.rounds} rounds")
    print(f"  {args.token_model:24s} {token:8.3f} steps/s  ({token * args.batch_size:7.1f} samples/s)")
    print(f"  {args.pixel_model:24s} {pixel:8.3f} steps/s  ({pixel * args.batch_size:7.1f} samples/s)")
    print(f"  token / pixel: {token / pixel:.2f}x")
    return figures
