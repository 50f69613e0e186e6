"""Encoding images to ids: images/s of the whole pipeline against decoding + resizing alone.

On a folder of generated JPEGs (ImageNet-like size, 500x375 by default), for each tokenizer preset
with random weights (speed does not depend on the weights):
  decode  DataLoader workers decode and resize the images, nothing else (the baseline: the
          I/O and decoding any pipeline pays);
  model   the encoder + nearest-code search alone on already-decoded batches;
  encode  ``seit.tokenizer.encode_images`` end to end (decoding in workers, encoding in the main
          process), reported as images/s and as its time over the baseline's;
  store   the whole ``seit tokenize`` (``seit.tokenizer.tokenize``) into a new token store: loading and
          hashing the tokenizer file, listing, encoding, writing and merging the store, and the skip
          report; its time over ``encode`` is what the store costs on top of encoding.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from seit.config import arg_type, at_least, non_negative

DESCRIPTION = __doc__

DEFAULT_PRESETS = ("vitvq-tiny", "vitvq-mini", "vitvq-base")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--images",
        type=arg_type(int, at_least(1)),
        default=96,
        help="generated JPEGs for the small presets (default: 96)",
    )
    p.add_argument(
        "--large-images", type=arg_type(int, at_least(1)), default=8, help="images for the 256 px presets (default: 8)"
    )
    p.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS), help="tokenizer presets to time")
    p.add_argument("--batch-size", type=arg_type(int, at_least(1)), default=16, help="images per batch (default: 16)")
    p.add_argument(
        "--num-workers", type=arg_type(int, non_negative), default=2, help="decoding worker processes (default: 2)"
    )
    p.add_argument(
        "--source-size",
        type=arg_type(int, at_least(1)),
        nargs=2,
        default=(500, 375),
        metavar=("W", "H"),
        help="JPEG size",
    )
    p.add_argument(
        "--repeats",
        type=arg_type(int, at_least(1)),
        default=2,
        help="timed rounds (each runs every measurement once); the best counts",
    )
    p.add_argument(
        "--torch-threads",
        type=arg_type(int, at_least(1)),
        default=None,
        help="torch threads of decode/model/encode (default: the cores the workers leave free, which is also "
        "what `store` uses)",
    )


def make_jpegs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> None:
    """Smooth gradients with shapes and noise: JPEG-compresses like photos, not like flat colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        a, b = rng.random(3), rng.random(3)
        t = (xx * rng.random() + yy * rng.random()) / (w + h)
        img = a * (1 - t[..., None]) + b * t[..., None]
        for _ in range(4):
            x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
            img[y0 : y0 + rng.integers(10, h // 2), x0 : x0 + rng.integers(10, w // 2)] = rng.random(3)
        img = img * 255 + rng.normal(0, 6, img.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def _best(fns, repeats: int) -> list[float]:
    """Best time of each function over ``repeats`` rounds; rounds alternate the functions, so a burst of load
    from other jobs on a shared machine hits all of them rather than one."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [min(t) for t in times]


def run(args: argparse.Namespace) -> dict:
    import torch

    from seit.images import list_images
    from seit.tokenizer.checkpoint import load_tokenizer, save_tokenizer
    from seit.tokenizer.config import TokenizeConfig, preset
    from seit.tokenizer.encode import cpu_count, cpu_threads, encode_images, image_batches
    from seit.tokenizer.model import Tokenizer
    from seit.tokenizer.to_store import tokenize

    if args.torch_threads is not None:
        threads = args.torch_threads
    else:
        threads = max(1, cpu_count() - args.num_workers) if args.num_workers else torch.get_num_threads()
    figures: dict = {"cores": cpu_count(), "torch_threads": threads, "workers": args.num_workers, "presets": {}}
    print(f"{cpu_count()} cores: {args.num_workers} decoding workers, torch on {threads} threads; random weights")
    header = (
        f"{'preset':<12}{'px':>5}{'images':>8}{'decode/s':>10}{'model/s':>10}{'encode/s':>10}{'store/s':>10}"
        f"{'encode/decode time':>20}{'store/encode time':>19}"
    )
    print(header)
    with tempfile.TemporaryDirectory(prefix="seit-bench-") as tmp:
        folder = Path(tmp)
        make_jpegs(folder, max(args.images, args.large_images), tuple(args.source_size))
        all_samples = list_images(folder).samples
        for name in args.presets:
            cfg = preset(name)
            n = args.images if cfg.image_size < 256 else args.large_images
            samples = all_samples[:n]
            torch.manual_seed(0)
            # every measurement uses the tokenizer as `seit tokenize` loads it from its file: the same weights in the
            # same memory (a freshly initialised model timed 5-25% slower here than the loaded one)
            tokenizer_file = save_tokenizer(Tokenizer(cfg), folder / "tokenizers" / f"{name}.safetensors")
            tokenizer = load_tokenizer(tokenizer_file)

            def decode(cfg=cfg, samples=samples) -> None:
                for _ in image_batches(
                    samples, size=cfg.image_size, batch_size=args.batch_size, num_workers=args.num_workers
                ):
                    pass

            batch = torch.rand(min(args.batch_size, n), 3, cfg.image_size, cfg.image_size)

            def model(tokenizer=tokenizer, batch=batch, n=n) -> None:
                with cpu_threads(torch.device("cpu"), args.num_workers, threads):  # as the encode job runs
                    for _ in range(0, n, len(batch)):
                        tokenizer.encode(batch)

            def encode(tokenizer=tokenizer, samples=samples) -> None:
                job = encode_images(
                    tokenizer,
                    samples,
                    batch_size=args.batch_size,
                    num_workers=args.num_workers,
                    device="cpu",
                    threads=threads,
                )
                for _ in job:
                    pass

            image_list = folder / "lists" / f"{name}.txt"
            image_list.parent.mkdir(exist_ok=True)
            image_list.write_text("".join(f"{s.path}\n" for s in samples))
            (folder / "stores").mkdir(exist_ok=True)

            def store(tokenizer_file=tokenizer_file, image_list=image_list) -> None:
                job = TokenizeConfig(
                    images=str(image_list),
                    tokenizer=str(tokenizer_file),
                    out=tempfile.mkdtemp(dir=folder / "stores"),  # a new store every round
                    batch_size=args.batch_size,
                    num_workers=args.num_workers,
                    device="cpu",
                )
                tokenize(job)

            tokenizer.encode(batch[:2])  # warm-up
            t_decode, t_model, t_encode, t_store = _best((decode, model, encode, store), args.repeats)
            row = {
                "image_size": cfg.image_size,
                "images": n,
                "decode_images_per_s": n / t_decode,
                "model_images_per_s": n / t_model,
                "encode_images_per_s": n / t_encode,
                "store_images_per_s": n / t_store,
                "encode_over_decode_time": t_encode / t_decode,
                "store_over_encode_time": t_store / t_encode,
            }
            figures["presets"][name] = row
            print(
                f"{name:<12}{cfg.image_size:>5}{n:>8}{row['decode_images_per_s']:>10.1f}"
                f"{row['model_images_per_s']:>10.1f}{row['encode_images_per_s']:>10.1f}"
                f"{row['store_images_per_s']:>10.1f}{row['encode_over_decode_time']:>19.2f}x"
                f"{row['store_over_encode_time']:>18.2f}x"
            )
    return figures
