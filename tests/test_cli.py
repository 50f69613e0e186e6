import subprocess
import sys

import pytest

from seit.cli import GROUPS, build_parser, main


def test_top_level_help_lists_every_group(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for group in GROUPS:
        assert group in out


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_help(group, capsys):
    with pytest.raises(SystemExit) as e:
        main([group, "--help"])
    assert e.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 3


def test_group_alone_prints_its_help_and_fails(capsys):
    assert main([GROUPS[0]]) == 2
    assert "usage: seit" in capsys.readouterr().out


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "seit", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("seit ")


def test_parser_builds_without_heavy_imports():
    code = "import sys; from seit.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert build_parser().prog == "seit"


@pytest.mark.parametrize(
    "command, former, flag, field, given, expected",
    [
        (["tokenizer", "train", "imgs"], "--out", "--output", "out", ["runs/tok"], "runs/tok"),
        (["tokenizer", "train", "imgs", "--output", "o"], "--grad-clip", "--clip-grad", "grad_clip", ["0.5"], 0.5),
        (["tokenizer", "train", "imgs", "--output", "o"], "--precision", "--amp", "precision", ["bf16"], "bf16"),
        (["tokenize", "imgs", "--tokenizer", "t"], "--out", "--output", "out", ["tokens"], "tokens"),
        (["tokenizer", "train", "imgs", "--output", "o"], "--resume", "--resume", "resume", [], "auto"),
        (["train"], "--resume", "--resume", "resume", [], "auto"),
    ],
)
def test_one_spelling_per_idea_and_former_spellings_still_parse_hidden(
    command, former, flag, field, given, expected, capsys
):
    from seit.cli import build_parser

    parser = build_parser()
    assert getattr(parser.parse_args([*command, former, *given]), field) == expected  # --resume alone: auto
    with pytest.raises(SystemExit):
        parser.parse_args([*command[: 2 if command[0] == "tokenizer" else 1], "--help"])
    options = capsys.readouterr().out.split("examples:")[0]
    assert flag in options and (former == flag or f"{former} " not in options)
