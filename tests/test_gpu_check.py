"""scripts/gpu_check.sh (needs a GPU): CI checks that it is valid bash and that every command in it parses."""

import os
import subprocess
import sys
from pathlib import Path

import seit

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu_check.sh"


def test_gpu_check_is_valid_bash_and_every_seit_command_in_it_parses(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    src = str(Path(seit.__file__).parents[1])
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path), "PYTHON": sys.executable, "PYTHONPATH": src}
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed = [line for line in proc.stdout.splitlines() if line.startswith("parsed: ")]
    commands = [line.split()[2] for line in parsed if line.startswith("parsed: seit ")]
    assert commands == ["demo", "train", "train", "train", "tokenizer", "tokenize", "bench", "bench"]
    assert "parsed: nccl check" in parsed
    assert "--compile" in proc.stdout and proc.stdout.count("--amp bf16") == 6  # 4 training runs, tokenize, bench
