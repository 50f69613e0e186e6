"""docs/robustness.md is kept true by tests: every test a row names exists, and every row names one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "robustness.md"
NAME = re.compile(r"(?:tests/)?(test_\w+\.py)?::(\w+)")


def table_rows():
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and not set(cells[0]) <= set("-: ") and cells[0] != "fault":
            yield line, cells[-1]


def test_every_row_names_tests_that_exist():
    rows = list(table_rows())
    assert len(rows) >= 60  # the faults of the hostile-input issue and more
    for line, cell in rows:
        named = NAME.findall(cell)
        if cell == "known gap":  # a fault tried and left as it is, said so in the row
            continue
        assert named, f"row names no test: {line[:100]}"
        current = None
        for file, function in named:
            current = file or current
            assert current, f"row names a test without its file: {line[:100]}"
            source = (ROOT / "tests" / current).read_text()
            assert re.search(rf"^\s*def {function}\(", source, re.M), f"{current}::{function} does not exist"


def test_the_named_faults_of_the_hostile_input_issue_are_listed():
    text = DOC.read_text().lower()
    for fault in (
        "label frame",
        "part-",
        "64 gb",
        "npy",
        "1e15",
        "gzip bomb",
        "99999999999",
        "grid_shape",
        "symlink",
        "fifo",
        "utf-8",
        "65000",
        "newline",
        "import-seit",
        "two writers",
        "--batch-size",
        "--device cuda",
        "read-only",
        "--embed-dim",
        "--max-steps -1",
        "nan/inf in the codebook",
        "--num-classes",
        "last.pt",
    ):
        assert fault in text, fault
