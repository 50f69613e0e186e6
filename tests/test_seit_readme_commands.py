"""The two command lines of SeiT's README run with seit: only the launcher and the files change.

Copied from naver-ai/seit README_seit.md ("Training examples" and "Evaluation"). What the test changes, and why:
- the launcher: ``python -m torch.distributed.launch --nproc_per_node=8 --use_env main_seit.py`` becomes
  ``torchrun --nproc-per-node 2 -m seit train`` (``evaluate_on_images.py``: ``seit eval``), on CPU;
- the paths: the fixture files of tests/fixtures/seit-reference stand for $DATA_DIR and WEIGHT_DIR;
- training: ``--batch-size 128`` becomes 8 (the fixture split has 64 samples), and four flags are added to
  make it a smoke run: ``--max-steps 2``, ``--embed-dim 192 --depth 1 --num-heads 3`` (a one-block ViT of
  DeiT-Ti width instead of ViT-B) and SeiT's own ``--input-size 48``: the fixture tokenizer makes 8x8 grids of
  64 px images, so the classifier evaluated on images must read a crop of at most 8 tokens (48 px / 8 = 6);
- evaluation: trained-vit.ckpt is the training run's weights written in SeiT's checkpoint layout. (The README's
  --model-path line ends in spaces after its backslash, which would cut the command short in a shell; dropped.)
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SEIT_TRAIN = r"""
OMP_NUM_THREADS=1 python -m torch.distributed.launch --nproc_per_node=8 --use_env main_seit.py \
    --model deit_base_token_32 \
    --codebook-path $DATA_DIR/codebook.ckpt \
    --train-token-file $DATA_DIR/imagenet1k-train-token.data.bin.gz \
    --train-label-file $DATA_DIR/imagenet1k-train-label.txt \
    --val-token-file $DATA_DIR/imagenet1k-val-token.data.bin.gz \
    --val-label-file $DATA_DIR/imagenet1k-val-label.txt \
    --token-synonym-dict $DATA_DIR/synonyms.json \
    --output_dir path/to/save \
    --batch-size 128 \
    --dist-eval
"""
SEIT_EVAL = r"""
OMP_NUM_THREADS=1 python -m torch.distributed.launch --nproc_per_node=8 --use_env evaluate_on_images.py \
    --model deit_base_token_32 \
    --model-path WEIGHT_DIR/trained-vit.ckpt \
    --codebook-path WEIGHT_DIR/codebook.ckpt \
    --tokenizer-path WEIGHT_DIR/tokenizer.ckpt \
    --tokenizer-code-path path/to/downloaded/tokenizer/repository \
    --data-path path/to/test/dataset \
    --dist-eval
"""
FIXTURES = Path(__file__).parent / "fixtures" / "seit-reference"
LAUNCHER = re.compile(r"^OMP_NUM_THREADS=1 python -m torch\.distributed\.launch --nproc_per_node=8 --use_env (\S+)\.py")


def _as_seit(command: str, files: dict[str, str], port: int) -> list[str]:
    """SeiT's command with seit's launcher and the fixture files."""
    line = re.sub(r"\\\s*\n\s*", " ", command.strip())
    script = LAUNCHER.match(line).group(1)
    words = shlex.split(line[LAUNCHER.match(line).end() :])
    words = [files.get(w, w) for w in words]
    seit = ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port), "-m", "seit"]
    return [sys.executable, *seit, {"main_seit": "train", "evaluate_on_images": "eval"}[script], *words]


def _run(argv, cwd):
    env = {**os.environ, "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_seit_readme_train_and_eval_commands_run_unchanged(tmp_path):
    from seit.interop.seit_checkpoints import to_seit_state_dict
    from seit.models import load_classifier

    tokens = FIXTURES / "tokens"
    data = {
        "$DATA_DIR/codebook.ckpt": tokens / "codebook.ckpt",
        "$DATA_DIR/imagenet1k-train-token.data.bin.gz": tokens / "tiny-train-token.data.bin.gz",
        "$DATA_DIR/imagenet1k-train-label.txt": tokens / "tiny-train-label.txt",
        "$DATA_DIR/imagenet1k-val-token.data.bin.gz": tokens / "tiny-val-token.data.bin.gz",
        "$DATA_DIR/imagenet1k-val-label.txt": tokens / "tiny-val-label.txt",
        "$DATA_DIR/synonyms.json": tokens / "synonyms.json",
        "path/to/save": tmp_path / "run",
        "128": "8",
    }
    argv = _as_seit(SEIT_TRAIN, {k: str(v) for k, v in data.items()}, 29541)
    argv += ["--max-steps", "2", "--embed-dim", "192", "--depth", "1", "--num-heads", "3", "--input-size", "48"]
    _run(argv, tmp_path)
    trained = load_classifier(tmp_path / "run")
    assert trained.meta.grid_size == 6 and trained.meta.num_classes == 10 and trained.codebook.shape == (391, 32)

    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save({"model": to_seit_state_dict(trained.model.state_dict()), "epoch": 0}, weights / "trained-vit.ckpt")
    images = tmp_path / "test"
    pixels = np.load(FIXTURES / "tokenizer" / "vitvq-tiny-expected.npz")["images"]  # [4, 3, 64, 64] in [0, 1]
    for i, image in enumerate(pixels):
        (images / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(
            images / f"class{i % 2}/{i}.png"
        )
    files = {
        "WEIGHT_DIR/trained-vit.ckpt": weights / "trained-vit.ckpt",
        "WEIGHT_DIR/codebook.ckpt": tokens / "codebook.ckpt",
        "WEIGHT_DIR/tokenizer.ckpt": FIXTURES / "tokenizer" / "vitvq-tiny.ckpt",
        "path/to/test/dataset": images,
    }
    proc = _run(_as_seit(SEIT_EVAL, {k: str(v) for k, v in files.items()}, 29542), tmp_path)
    summary = proc.stdout[proc.stdout.index("{") :]
    assert '"count": 4' in summary  # every image once across the two processes
