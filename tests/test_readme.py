"""The README's Python blocks run as written, so a snippet that drifts from the code fails here.

A block names the files it reads in a first-line comment (``# files: tokens/train photos/val``); the test makes
exactly those in a fresh folder (small stand-ins: a token store, the fixture tokenizer, a few images) and runs
the block there in a fresh interpreter. (The bash blocks' commands are parsed in test_config_validation.py.)
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_class_token_store
from tokenizer_testdata import FIXTURES, write_image_folder

ROOT = Path(__file__).parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def _tokenizer(path: Path) -> None:
    from seit.tokenizer.checkpoint import load_tokenizer, save_tokenizer

    path.parent.mkdir(parents=True)
    save_tokenizer(load_tokenizer(FIXTURES / "vitvq-tiny.ckpt"), path)


MAKERS = {
    "tokens/train": lambda path: write_class_token_store(path, 300),
    "runs/tok/tokenizer.safetensors": _tokenizer,
    "photos/val": lambda path: write_image_folder(path, 4, 64, classes=2),
}


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2 and all(block.startswith("# files:") or "open(" not in block for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs_as_written(block, tmp_path):
    first = block.splitlines()[0]
    files = first.removeprefix("# files:").split() if first.startswith("# files:") else []
    for name in files:
        assert name in MAKERS, f"README block needs {name}: teach tests/test_readme.py to make it"
        MAKERS[name](tmp_path / name)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_package_table_names_every_package_once():
    """The README's "package | what it owns" table: each package and module of src/seit once, nothing else."""
    table = (ROOT / "README.md").read_text().split("| package | what it owns |", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `seit\.(\w+)` \|", table, flags=re.M)
    src = ROOT / "src" / "seit"
    packages = [p.name for p in src.iterdir() if (p / "__init__.py").exists()]
    modules = [p.stem for p in src.glob("*.py") if p.stem not in ("__init__", "__main__")]
    assert sorted(listed) == sorted(packages + modules)
