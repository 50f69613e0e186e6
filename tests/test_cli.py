import subprocess
import sys

import pytest

from cli_util import all_parsers
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
        (["tokenize", "imgs", "--tokenizer", "t", "--output", "o"], "--no-resume", "--resume", "resume", [], None),
        (["store", "prune", "a", "b"], "--resume", "--resume", "resume", [], "auto"),
        (["store", "import-seit", "o"], "--no-resume", "--resume", "resume", [], None),
        (["bench", "store"], "--out", "--output", "out", ["keep"], "keep"),
    ],
)
def test_one_spelling_per_idea_and_former_spellings_still_parse_hidden(
    command, former, flag, field, given, expected, capsys
):
    from seit.cli import build_parser

    parser = build_parser()
    assert getattr(parser.parse_args([*command, former, *given]), field) == expected  # --resume alone: auto
    with pytest.raises(SystemExit):
        parser.parse_args([*command[: 2 if command[0] in ("tokenizer", "store", "bench") else 1], "--help"])
    options = capsys.readouterr().out.split("examples:")[0]
    assert flag in options and (former == flag or f"{former} " not in options)


FORMER_SPELLINGS = {"--out", "--precision", "--grad-clip", "--no-resume", "--out-dir", "--outdir"}


def _visible_options(parser):
    """(action, its option strings shown in --help) of every option of ``parser``."""
    for action in parser._actions:
        hidden = set(getattr(action, "hidden_option_strings", ()))
        shown = [o for o in action.option_strings if o not in hidden]
        if shown and action.help != "==SUPPRESS==":
            yield action, shown


def test_every_command_spells_each_idea_one_way():
    """Walks every sub-command: no former spelling in --help; --json [PATH] and --resume [auto|PATH] alike."""
    for parser in all_parsers(build_parser()):
        for action, shown in _visible_options(parser):
            assert not FORMER_SPELLINGS & set(shown), f"{parser.prog}: {shown}"
            assert not [o for o in shown if o.startswith("--out") and o not in ("--output", "--output_dir")], shown
            if "--json" in shown:
                assert (action.nargs, action.const, action.metavar) == ("?", "-", "PATH"), parser.prog
            if "--resume" in shown:
                assert (action.nargs, action.const, action.metavar) == ("?", "auto", "auto|PATH"), parser.prog


def test_the_readme_flag_table_names_exactly_the_commands_that_have_each_flag():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = readme.split("## Command-line flags")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and "`" in line]
    having: dict[str, set[str]] = {}
    for parser in all_parsers(build_parser()):
        for _, shown in _visible_options(parser):
            for option in shown:
                having.setdefault(option, set()).add(parser.prog.removeprefix("seit").strip())
    assert len(rows) == 8
    for _, flag, commands in rows:
        option = flag.strip("`").split("`")[0].split()[0]
        listed = {c.strip(" `|") for c in commands.split(",")}
        if listed == {"every command"}:
            assert having[option] >= set(GROUPS), option
        else:
            assert having[option] == listed, option
