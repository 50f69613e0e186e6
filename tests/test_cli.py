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
