import argparse
from dataclasses import dataclass

import pytest

from seit.config import add_dataclass_args, field, from_args, from_dict, to_dict


@dataclass
class Inner:
    width: int = field(8, help="width")


@dataclass
class Job:
    data: str = field(help="input", positional=True)
    lr: float = field(1e-3, help="learning rate")
    epochs: int = field(3, help="epochs")
    amp: bool = field(True, help="mixed precision")
    crop: tuple[int, ...] = field((28, 28), help="crop size")
    model: str = field("tiny", help="model", choices=("tiny", "small"))
    resume: str | None = field(None, help="checkpoint")
    inner: Inner = field(Inner, help="inner options")


def _parse(argv):
    p = argparse.ArgumentParser()
    add_dataclass_args(p, Job, aliases={"epochs": ("--num-epochs",)})
    return from_args(Job, p.parse_args(argv))


def test_flags_map_onto_fields_with_defaults():
    job = _parse(["DATA"])
    assert job == Job(data="DATA")
    job = _parse(["D", "--lr", "0.5", "--num-epochs", "7", "--no-amp", "--crop", "14", "14", "--model", "small"])
    assert (job.lr, job.epochs, job.amp, job.crop, job.model) == (0.5, 7, False, (14, 14), "small")
    assert _parse(["D", "--width", "3"]).inner == Inner(width=3)


def test_bad_choice_is_rejected():
    with pytest.raises(SystemExit):
        _parse(["D", "--model", "huge"])


def test_dict_roundtrip_and_unknown_keys():
    job = Job(data="x", crop=(7, 7), inner=Inner(width=2))
    assert from_dict(Job, to_dict(job)) == job
    assert from_dict(Job, {**to_dict(job), "crop": [7, 7]}).crop == (7, 7)
    with pytest.raises(ValueError, match="typo"):
        from_dict(Job, {"data": "x", "typo": 1})


def test_a_job_that_continues_in_place_takes_auto_its_own_output_or_the_former_switch(tmp_path):
    from seit.cli.store import PruneConfig
    from seit.errors import ConfigError

    out = str(tmp_path / "o")
    assert [PruneConfig(store="a", out=out, resume=r).resume for r in (True, False, "auto", out)] == [
        "auto", None, "auto", "auto",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match=r"--resume .*elsewhere: this job continues in OUT \(.*o\); use --resume"):
        PruneConfig(store="a", out=out, resume=str(tmp_path / "elsewhere"))
