"""Flag values, devices, environment errors and exit statuses: one line naming the flag or path, never a traceback."""

import argparse
import ast
import dataclasses
import errno
import importlib
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch

import seit.config
from cli_util import all_parsers
from seit import cli
from seit.augment.config import AugmentConfig
from seit.cli import GROUPS, build_parser, main
from seit.cli.store import ImportSeitConfig, PruneConfig, StatsConfig
from seit.cli.synonyms import SynonymsConfig
from seit.config import Checked, at_least, between, each, positive, probability
from seit.demo.config import DemoConfig
from seit.engine import config as engine
from seit.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PREEMPTED, EXIT_USAGE, ConfigError, SeitError
from seit.tokenizer import config as tokenizer
from seit.utils.io import atomic_write_bytes

SRC = Path(__file__).parent.parent / "src" / "seit"
README = Path(__file__).parent.parent / "README.md"
NAN, INF = float("nan"), float("inf")


def tok(cls, **kw):
    required = {
        tokenizer.TrainConfig: dict(images="i", out="o"),
        tokenizer.EvalConfig: dict(images="i", tokenizer="t"),
        tokenizer.TokenizeConfig: dict(images="i", tokenizer="t", out="o"),
        tokenizer.DecodeConfig: dict(store="s", tokenizer="t"),
    }[cls]
    return cls(**required, **kw)


BAD = [
    # seit train / seit eval
    (engine.OptimConfig, dict(batch_size=0), "--batch-size must be >= 1, got 0"),
    (engine.OptimConfig, dict(batch_size=-4), "--batch-size must be >= 1, got -4"),
    (engine.OptimConfig, dict(lr=NAN), "--lr must be > 0, got nan"),
    (engine.OptimConfig, dict(lr=-1e-3), "--lr must be > 0"),
    (engine.OptimConfig, dict(lr=INF), "--lr must be > 0, got inf"),
    (engine.OptimConfig, dict(epochs=0), "--epochs must be >= 1, got 0"),
    (engine.OptimConfig, dict(warmup_epochs=-1), "--warmup-epochs must be >= 0"),
    (engine.OptimConfig, dict(model_ema_decay=2), r"--model-ema-decay must be in \[0, 1\], got 2"),
    (engine.OptimConfig, dict(weight_decay=NAN), "--weight-decay"),
    (engine.OptimConfig, dict(min_lr=-1), "--min-lr"),
    (engine.OptimConfig, dict(clip_grad=-1), "--clip-grad"),
    (engine.OptimConfig, dict(layer_decay=0), r"--layer-decay must be in \(0, 1\], got 0"),
    (engine.OptimConfig, dict(layer_decay=1.5), r"--layer-decay must be in \(0, 1\], got 1.5"),
    (engine.OptimConfig, dict(layer_decay=NAN), "--layer-decay"),
    (engine.RunConfig, dict(max_steps=-1), "--max-steps must be >= 1, got -1"),
    (engine.RunConfig, dict(max_steps=0), "--max-steps must be >= 1, got 0"),
    (engine.RunConfig, dict(seed=-1), "--seed must be >= 0"),
    (engine.RunConfig, dict(log_every=0), "--log-every"),
    (engine.RunConfig, dict(eval_every=0), "--eval-every"),
    (engine.RunConfig, dict(ckpt_every=-1), "--ckpt-every"),
    (engine.ModelConfig, dict(drop_path=2), r"--drop-path must be in \[0, 1\), got 2"),
    (engine.ModelConfig, dict(embed_dim=100, num_heads=3), "--embed-dim 100 must be divisible by --num-heads 3"),
    (engine.ModelConfig, dict(depth=0), "--depth"),
    (engine.DataConfig, dict(num_workers=-1), "--num-workers must be >= 0"),
    (engine.DataConfig, dict(image_size=0), "--image-size"),
    (engine.EvalConfig, dict(checkpoint="c", batch_size=0), "--batch-size"),
    # token augmentation
    (AugmentConfig, dict(smoothing=NAN), "--smoothing"),
    (AugmentConfig, dict(mixup=-1), "--mixup must be >= 0"),
    (AugmentConfig, dict(noise_std=INF), "--noise-std"),
    (AugmentConfig, dict(crop_ratio=0), "--crop-ratio"),
    (AugmentConfig, dict(rrc_aspect=(0.75, INF)), "--rrc-aspect"),
    # seit tokenizer / tokenize / decode
    (tokenizer.TrainConfig, dict(steps=0), "--steps must be >= 1"),
    (tokenizer.TrainConfig, dict(lr=NAN), "--lr must be > 0, got nan"),
    (tokenizer.TrainConfig, dict(batch_size=0), "--batch-size"),
    (tokenizer.TrainConfig, dict(save_every=0), "--save-every"),
    (tokenizer.TrainConfig, dict(codebook_size=0), "--codebook-size"),
    (tokenizer.EvalConfig, dict(max_images=0), "--max-images"),
    (tokenizer.TokenizeConfig, dict(shard_mb=0.0), "--shard-mb must be > 0"),
    (tokenizer.TokenizeConfig, dict(synonyms=0), "--synonyms"),
    (tokenizer.DecodeConfig, dict(indices=[3, -1]), r"--indices values must be >= 0, got \[3, -1\]"),
    (tokenizer.DecodeConfig, dict(count=0), "--count"),
    # seit store / synonyms / demo
    (ImportSeitConfig, dict(out="o", grid=(32, 0)), r"--grid values must be >= 1, got \[32, 0\]"),
    (ImportSeitConfig, dict(out="o", shard_mb=-1.0), "--shard-mb"),
    (PruneConfig, dict(store="s", out="o", synonyms=0), "--synonyms"),
    (StatsConfig, dict(store="s", max_samples=0), "--max-samples"),
    (SynonymsConfig, dict(store="s", k=0), "--k must be >= 1"),
    (DemoConfig, dict(num_workers=-2), "--num-workers"),
]


@pytest.mark.parametrize("cls, bad, message", BAD, ids=[f"{c.__name__}-{m[:24]}" for c, _, m in BAD])
def test_bad_value_is_a_config_error_naming_the_flag(cls, bad, message):
    with pytest.raises(ConfigError, match=message) as e:
        tok(cls, **bad) if cls.__module__ == tokenizer.__name__ else cls(**bad)
    assert "\n" not in str(e.value)


def test_defaults_pass():
    for cls in (engine.TrainConfig, DemoConfig, AugmentConfig):
        cls()
    for cls in (tokenizer.TrainConfig, tokenizer.EvalConfig, tokenizer.TokenizeConfig, tokenizer.DecodeConfig):
        tok(cls)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "train", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
        (["bench", "pipeline", "--batch-size", "-1"], "argument --batch-size: must be >= 1, got -1"),
        (["bench", "store", "--sensitivity", "0.5", "nan"], r"argument --sensitivity: must be in [0, 1], got nan"),
        (["bench", "tokenize", "--num-workers", "-1"], "argument --num-workers: must be >= 0, got -1"),
    ],
)
def test_benchmark_flags_outside_dataclasses_are_checked_too(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == EXIT_USAGE and message in capsys.readouterr().err


def test_predicates_refuse_nan_inf_and_bools():
    for check in (at_least(0), positive, probability, between(0, 1, include_hi=False)):
        for bad in (NAN, INF, -INF, True, "1", None):
            assert check(bad), (check, bad)
    assert at_least(1)(1) is None and positive(1e-9) is None and probability(1) is None
    assert between(0, 1, include_hi=False)(1) == "must be in [0, 1)"
    assert between(0, 1, include_lo=False)(0) == "must be in (0, 1]" and between(0, 1, include_lo=False)(1) is None
    assert each(at_least(1))((1, 2)) is None and each(at_least(1))([1, 0]) == "values must be >= 1"


def _cli_configs(monkeypatch) -> set[type]:
    """Every dataclass the CLI builds flags from (nested ones too), recorded while the parser is built."""
    seen: set[type] = set()
    original = seit.config.add_dataclass_args

    def record(parser, cls, *aliases):
        seen.add(cls)
        return original(parser, cls, *aliases)

    monkeypatch.setattr(seit.config, "add_dataclass_args", record)
    for group in GROUPS:
        module = importlib.import_module(f"seit.cli.{group}")
        if hasattr(module, "add_dataclass_args"):
            monkeypatch.setattr(module, "add_dataclass_args", record)
    build_parser()
    return seen


def _is_numeric(tp) -> bool:
    tp = seit.config._unwrap_optional(tp)[0]
    if typing.get_origin(tp) in (list, tuple):
        return all(_is_numeric(a) for a in typing.get_args(tp) if a is not Ellipsis)
    return tp in (int, float)


# Numeric flags whose every value works: seeds of the demo datasets are free, tuples have cross-field checks.
UNCHECKED = {("AugmentConfig", "rrc_scale"), ("AugmentConfig", "rrc_aspect"), ("AugmentConfig", "cutmix_minmax")}
UNCHECKED |= {("PretrainAugmentConfig", name) for name in ("rrc_scale", "rrc_aspect")}  # AugmentConfig's checks


def test_every_numeric_flag_of_every_command_is_checked(monkeypatch):
    configs = _cli_configs(monkeypatch)
    assert {engine.TrainConfig, engine.OptimConfig, tokenizer.TokenizeConfig, SynonymsConfig} <= configs
    missing = []
    for cls in configs:
        assert issubclass(cls, Checked), f"{cls.__name__} builds flags but does not check them (subclass Checked)"
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if _is_numeric(hints[f.name]) and "check" not in f.metadata and (cls.__name__, f.name) not in UNCHECKED:
                missing.append(f"{cls.__name__}.{f.name}")
    assert not missing, f"numeric flags without check=: {sorted(missing)}"


def _all_options(parser) -> set[str]:
    return {option for p in all_parsers(parser) for action in p._actions for option in action.option_strings}


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]")  # (SeiT's spellings hold underscores)


def _error_strings(tree: ast.AST):
    """String literals (f-string parts too) inside ``raise`` statements and ``...Error(...)`` calls."""
    for node in ast.walk(tree):
        name = getattr(getattr(node, "func", None), "id", None) or getattr(getattr(node, "func", None), "attr", "")
        is_error_call = isinstance(node, ast.Call) and name.endswith("Error")
        if isinstance(node, ast.Raise) or is_error_call:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    yield inner.lineno, inner.value


def test_error_messages_name_only_flags_that_exist():
    known = _all_options(build_parser())
    bad = set()
    for path in SRC.rglob("*.py"):
        for line, text in _error_strings(ast.parse(path.read_text())):
            bad |= {f"{path.relative_to(SRC)}:{line}: {flag}" for flag in FLAG.findall(text) if flag not in known}
    assert not bad, sorted(bad)
    assert "--num-classes" not in known and "--batch-size" in known and "--allow-legacy-pickle" in known


# Flags of another program that help texts mention on purpose: torchrun's (SeiT's are seit's own, seit_flags).
FOREIGN_FLAGS = {"--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-backend"}


def test_help_texts_name_only_flags_that_exist():
    known = _all_options(build_parser())
    texts = []
    for parser in all_parsers(build_parser()):
        texts += [parser.description or "", parser.epilog or "", *(action.help or "" for action in parser._actions)]
    mentioned = {flag for text in texts for flag in FLAG.findall(text)}
    assert not mentioned - known - FOREIGN_FLAGS, sorted(mentioned - known - FOREIGN_FLAGS)


def test_device_errors_are_one_line():
    from seit.utils.dist import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"--device 'gpu0' is not a device; use cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    count = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=f"--device cuda:{count}"):
        resolve_device(f"cuda:{count}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_one_line():
    from seit.utils.dist import resolve_device

    with pytest.raises(ConfigError, match="--device cuda: no CUDA GPU is usable here"):
        resolve_device("cuda")


def test_unknown_model_gets_a_did_you_mean():
    from seit.models import check_model_args

    with pytest.raises(ConfigError, match=r"--model 'deit_smal_token_32' .* did you mean deit_small_token_32"):
        check_model_args("deit_smal_token_32")
    with pytest.raises(ConfigError, match=r"--embed-dim 384 must be divisible by --num-heads 5 \(deit_small"):
        check_model_args("deit_small_token_32", num_heads=5)
    check_model_args("deit_tiny_token_4", embed_dim=32, num_heads=2)


# --- environment errors and exit statuses, through the CLI's one error handler


def _cli(args, tmp_path):
    env = {**os.environ, "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC.parent)}
    return subprocess.run(
        [sys.executable, "-m", "seit", *args], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300
    )


def _one_line_error(proc, code, *fragments):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seit: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_bad_flag_values_exit_2_in_one_line(tmp_path):
    proc = _cli(["train", "--batch-size", "0"], tmp_path)
    _one_line_error(proc, EXIT_USAGE, "--batch-size must be >= 1, got 0")
    proc = _cli(["tokenize", "imgs", "--tokenizer", "t", "--out", "o", "--batch-size", "-1"], tmp_path)
    _one_line_error(proc, EXIT_USAGE, "--batch-size must be >= 1, got -1")


def test_cli_output_that_is_a_file_exits_1_naming_it(tmp_path):
    output = tmp_path / "a-file"
    output.write_text("")
    proc = _cli(["train", "--model", "deit_tiny_token_4", "--device", "cpu", "--output", str(output)], tmp_path)
    _one_line_error(proc, EXIT_ERROR, str(output), "a file is in the way")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "deit_smal_token_32"], "--model 'deit_smal_token_32' is not a registered model; did you mean"),
        (["--device", "bogus"], "--device 'bogus' is not a device"),
        (["--num-heads", "5"], "--embed-dim 384 must be divisible by --num-heads 5"),
    ],
)
def test_train_refuses_bad_model_and_device_before_reading_data(flags, message, tmp_path, capsys):
    assert main(["train", "--store", str(tmp_path / "absent"), "--output", str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_disk_full_names_the_file(tmp_path, monkeypatch, capsys):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "run" / "last.pt"
    with pytest.raises(OSError) as e:
        atomic_write_bytes(target, b"x" * 100)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert not target.exists() and os.listdir(target.parent) == []  # no temporary file left behind
    assert cli.os_error_message(e.value) == (
        f"{target}: No space left on device; the disk is full: free space or write somewhere else, then rerun "
        "(finished work is kept)"
    )


def test_disk_full_inside_torch_save_names_the_checkpoint(tmp_path, monkeypatch):
    from seit.utils.serialization import atomic_torch_save

    real_fdopen = os.fdopen

    class FullDisk:  # a file on a full disk: the first writes fit, then ENOSPC
        def __init__(self, f):
            self.f, self.room = f, 4096

        def write(self, data):
            self.room -= len(data)
            if self.room < 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    target = tmp_path / "last.pt"
    with pytest.raises(OSError) as e:  # torch itself raises RuntimeError("unexpected pos ...") here
        atomic_torch_save({"w": torch.zeros(10_000)}, target)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as e:
            atomic_write_bytes(folder / "x.bin", b"x")
    finally:
        folder.chmod(0o755)
    assert e.value.filename == str(folder) and "permissions" in cli.os_error_message(e.value)


def _handler_raising(monkeypatch, exc=None, result=None):
    """`seit synonyms` with its handler replaced: what the CLI makes of an exception or a return value."""
    import seit.cli.synonyms

    def run(args):
        if exc is not None:
            raise exc
        return result

    monkeypatch.setattr(seit.cli.synonyms, "run", run)


@pytest.mark.parametrize(
    "exc, code, message",
    [
        (ConfigError("--k must be >= 1, got 0"), EXIT_USAGE, "seit: error: --k must be >= 1, got 0"),
        (SeitError("store: damaged"), EXIT_ERROR, "seit: error: store: damaged"),
        (PermissionError(errno.EACCES, "Permission denied", "/data/out"), EXIT_ERROR, "/data/out: Permission denied"),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro"), EXIT_ERROR, "/mnt/ro: Read-only file system; "),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "seit: interrupted"),
    ],
)
def test_exit_statuses(monkeypatch, capsys, exc, code, message):
    _handler_raising(monkeypatch, exc)
    monkeypatch.setattr(sys, "argv", ["seit"])
    assert main(["synonyms", "store"]) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_oserror_without_errno_is_a_bug_and_keeps_its_traceback(monkeypatch):
    _handler_raising(monkeypatch, OSError("library's own message"))
    with pytest.raises(OSError):
        main(["synonyms", "store"])


def test_tokenizer_train_stopped_by_a_signal_exits_75(monkeypatch):
    import seit.tokenizer.train

    class Stopped:
        finished, step, checkpoint = False, 3, Path("o/checkpoint.pt")

    monkeypatch.setattr(seit.tokenizer.train, "train", lambda cfg: Stopped())
    assert main(["tokenizer", "train", "imgs", "--out", "o"]) == EXIT_PREEMPTED


def test_exit_statuses_are_documented_in_help_and_readme(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    readme = README.read_text()
    section = readme[readme.index("## Exit status") :].split("\n## ")[0]
    for code in (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PREEMPTED, EXIT_INTERRUPTED):
        assert re.search(rf"^  {code} ", help_text, re.M), code
        assert f"| {code} |" in section, code


# --- messages that used to mislead: what is non-finite, damaged checkpoints, pickles


def test_non_finite_codebook_is_refused_before_training(tmp_path, class_token_store):
    from seit.engine.pipeline import build_pipeline
    from seit.utils.dist import DistInfo

    store = class_token_store(tmp_path / "train", 8)
    book = torch.randn(16, 4)
    book[3, 1] = float("nan")
    torch.save(book, tmp_path / "codebook.ckpt")
    cfg = engine.TrainConfig(data=engine.DataConfig(store=str(store), codebook_path=str(tmp_path / "codebook.ckpt")))
    with pytest.raises(SeitError, match=r"codebook\.ckpt: the codebook holds NaN or infinite values"):
        build_pipeline(cfg, DistInfo(), torch.device("cpu"))


def test_non_finite_loss_says_what_is_non_finite_and_names_only_existing_checkpoints(tmp_path):
    from seit.engine.train import _non_finite_loss

    model = torch.nn.Linear(2, 2)
    last = tmp_path / "last.pt"
    bad_inputs = torch.tensor([[1.0, float("nan")]])
    message = _non_finite_loss(float("nan"), "at epoch 0, step 0", bad_inputs, model, last)
    assert "inputs hold NaN or infinite values" in message and "--lr" not in message and "last.pt" not in message
    message = _non_finite_loss(float("inf"), "at epoch 3, step 70", torch.ones(1, 2), model, last)
    assert "training diverged" in message and "--lr" in message and "last.pt" not in message
    last.write_bytes(b"")
    message = _non_finite_loss(float("inf"), "at epoch 3, step 70", torch.ones(1, 2), model, last)
    assert f"--finetune {last}" in message


def test_damaged_checkpoint_says_damaged_not_legacy_pickle(tmp_path):
    from seit.utils.serialization import LEGACY_PICKLE_HINT, CheckpointError, safe_torch_load

    torch.save({"model": {"w": torch.zeros(64)}, "epoch": 1}, tmp_path / "last.pt")
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt: damaged or not a torch\.save file") as e:
        safe_torch_load(tmp_path / "last.pt", code_hint=LEGACY_PICKLE_HINT)
    assert "--allow-legacy-pickle" not in str(e.value)
    torch.save({"args": argparse.Namespace(lr=1)}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match=r"code\.pt: holds pickled objects .*\(argparse\.Namespace\)") as e:
        safe_torch_load(tmp_path / "code.pt")
    assert "--allow-legacy-pickle" not in str(e.value)  # only the tokenizer readers, which have the flag, offer it


def test_resume_from_a_truncated_last_pt_is_one_line_with_the_way_out(tmp_path, class_token_store, capsys):
    store = class_token_store(tmp_path / "train", 32)
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model": {"w": torch.zeros(64)}, "kind": "seit.train"}, out / "last.pt")
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:100])
    tiny = ["--model", "deit_tiny_token_4", "--embed-dim", "32", "--depth", "1", "--num-heads", "2"]
    args = ["train", "--store", str(store), "--output", str(out), "--resume", "auto", "--num-workers", "0", *tiny]
    assert main([*args, "--no-tensorboard", "--device", "cpu"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-legacy-pickle" not in err
    assert f"{out / 'last.pt'}: damaged" in err and "--resume PATH" in err and "start over" in err


def _example_commands(text: str):
    """The `seit ...` / `torchrun ... -m seit ...` lines of a help text or README, as argv after `seit`.

    Continuation lines are joined; shell comments, redirections and a literal ``...`` (elsewhere-given flags)
    are dropped; torchrun's own flags are torchrun's.
    """
    import shlex

    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = line.strip()
        if not re.match(r"(seit|torchrun) ", line):
            continue
        words = shlex.split(line, comments=True)
        words = words[: words.index(">")] if ">" in words else words
        start = words.index("seit") + 1 if words[0] == "seit" else words.index("-m") + 2
        yield line, [w for w in words[start:] if w != "..."]


def _help_examples():
    for parser in all_parsers(build_parser()):
        for line, argv in _example_commands(f"{parser.description or ''}\n{parser.epilog or ''}"):
            yield pytest.param(argv, id=line[:60])
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line, argv in _example_commands(block):
            yield pytest.param(argv, id="README " + line[:60])


@pytest.mark.parametrize("argv", list(_help_examples()))
def test_every_example_in_help_and_readme_parses(argv):
    """Each example command line parses with the real parser; seit train/eval/pretrain's also build their config."""
    from seit.engine.pretrain_config import PretrainConfig
    from seit.interop import seit_flags

    args = build_parser().parse_args(argv)  # argparse exits (SystemExit 2) on an unknown flag or bad value
    configs = {
        "train": (seit_flags.TRAIN, engine.TrainConfig),
        "eval": (seit_flags.EVAL, engine.EvalConfig),
        "pretrain": (seit_flags.PRETRAIN, PretrainConfig),
    }
    if argv[0] in configs:
        table, config = configs[argv[0]]
        seit_flags.apply_reference_flags(args, table, args.group_parser)
        seit.config.from_args(config, args)


def test_examples_are_found():
    examples = [p.values[0] for p in _help_examples()]
    assert len(examples) > 30 and ["train", "--output", "runs/b32", "--resume", "auto"] in examples


def test_disk_full_while_writing_a_store_shard_names_the_shard(tmp_path):
    from seit.store.shard import ShardWriter

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writer = ShardWriter(tmp_path, "part-00000-00000.bin")
    writer._file = FullDisk()
    with pytest.raises(OSError) as e:
        writer.add(b"ids", 0, "key")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "part-00000-00000.bin")
    assert cli.os_error_message(e.value).startswith(f"{tmp_path / 'part-00000-00000.bin'}: No space left on device")
    writer.discard()
    assert os.listdir(tmp_path) == []
