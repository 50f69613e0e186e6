"""The engine's resume checks one by one, without training: which checkpoint a run may continue, and where.

The end-to-end proofs (a resumed run equals the uninterrupted one, on another number of processes too) are in
test_engine.py and test_engine_elastic.py; these pin each rule and message in milliseconds.
"""

from dataclasses import dataclass
from dataclasses import field as dc_field
from types import SimpleNamespace

import pytest
import torch

from seit.engine.config import OptimConfig, RunConfig, TrainConfig
from seit.engine.pipeline import _Pipeline
from seit.engine.train import (
    Position,
    Trainer,
    TrainingError,
    _check_resumable,
    _normalise,
    restore_run_state,
    run_state,
)
from seit.utils.dist import DistInfo


def config(batch_size=16, **changes):
    cfg = TrainConfig()
    cfg.optim.batch_size = batch_size
    for name, value in changes.items():
        section, key = name.split("__")
        setattr(getattr(cfg, section), key, value)
    return cfg


def checkpoint(cfg, world_size=1, kind="seit.train", at=None, scaler=None):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()  # so the optimizer has state to carry
    return run_state(model, optimizer, scaler, at or Position(1, 32, 5), world_size, cfg, kind)


def test_the_checkpoint_holds_the_position_weights_and_optimizer_and_restores_them():
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    ckpt = checkpoint(config(), world_size=2, at=Position(3, 48, 17), scaler=scaler)
    assert (ckpt["epoch"], ckpt["position"], ckpt["global_step"]) == (3, 48, 17)
    assert ckpt["world_size"] == 2 and ckpt["kind"] == "seit.train" and ckpt["config"]["optim"]["batch_size"] == 16
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0)
    assert restore_run_state(ckpt, model, optimizer, fresh) == Position(3, 48, 17)
    assert torch.equal(model.weight, ckpt["model"]["weight"]) and torch.equal(model.bias, ckpt["model"]["bias"])
    assert torch.equal(
        optimizer.state_dict()["state"][0]["momentum_buffer"], ckpt["optimizer"]["state"][0]["momentum_buffer"]
    )
    assert fresh.get_scale() == 1024.0
    # a checkpoint of a run without a loss scaler leaves the resuming run's scaler as it is
    plain = checkpoint(config())
    assert plain["scaler"] is None
    restore_run_state(plain, torch.nn.Linear(2, 1), torch.optim.SGD(model.parameters(), lr=0.1), fresh)
    assert fresh.get_scale() == 1024.0


def test_a_checkpoint_of_another_job_is_refused():
    cfg = config()
    with pytest.raises(
        TrainingError, match=r"^last\.pt: not a seit\.train checkpoint \(to start from weights, use --finetune\)$"
    ):
        _check_resumable(checkpoint(cfg, kind="seit.pretrain"), cfg, "last.pt", 1)
    _check_resumable(checkpoint(cfg, kind="seit.pretrain"), cfg, "last.pt", 1, kind="seit.pretrain")
    with pytest.raises(TrainingError, match=r"not a seit\.pretrain checkpoint"):
        _check_resumable(checkpoint(cfg), cfg, "last.pt", 1, kind="seit.pretrain")


@pytest.mark.parametrize(("batch_size", "world_size"), [(16, 2), (32, 1), (8, 4)])
def test_the_same_global_batch_resumes_on_any_number_of_processes(batch_size, world_size):
    _check_resumable(checkpoint(config(16), world_size=2), config(batch_size), "last.pt", world_size)


@pytest.mark.parametrize(
    ("batch_size", "world_size", "message"),
    [
        (16, 1, r"now 16 \(16 x 1\): another global batch is another run; resume with --batch-size 32$"),
        (16, 4, r"now 64 \(16 x 4\).*resume with --batch-size 8$"),
        (16, 3, r"now 48 \(16 x 3\).*resume with a number of processes dividing 32$"),
        (17, 2, r"now 34 \(17 x 2\).*resume with --batch-size 16$"),
    ],
)
def test_another_global_batch_is_refused_naming_the_fix(batch_size, world_size, message):
    with pytest.raises(
        TrainingError, match=r"^last\.pt was written with a global batch of 32 \(16 x 2 processes\), " + message
    ):
        _check_resumable(checkpoint(config(16), world_size=2), config(batch_size), "last.pt", world_size)


def test_a_checkpoint_without_a_world_size_was_written_by_one_process():
    ckpt = checkpoint(config(16), world_size=2)
    del ckpt["world_size"]
    _check_resumable(ckpt, config(16), "last.pt", 1)
    with pytest.raises(TrainingError, match=r"global batch of 16 \(16 x 1 processes\), now 32"):
        _check_resumable(ckpt, config(16), "last.pt", 2)


def test_a_checkpoint_without_its_batch_size_is_refused():
    ckpt = checkpoint(config())
    del ckpt["config"]["optim"]
    with pytest.raises(
        TrainingError, match=r"^last\.pt: its settings name no --batch-size; not a complete seit\.train"
    ):
        _check_resumable(ckpt, config(), "last.pt", 1)


def test_another_seed_is_refused():
    with pytest.raises(
        TrainingError,
        match=r"^last\.pt was written with --seed 0, now --seed 3: another seed draws another data order and "
        r"augmentation; resume with --seed 0, or start a new run with --finetune$",
    ):
        _check_resumable(checkpoint(config()), config(run__seed=3), "last.pt", 1)
    ckpt = checkpoint(config())
    del ckpt["config"]["run"]  # a checkpoint that names no seed does not match any
    with pytest.raises(TrainingError, match="written with --seed None, now --seed 0"):
        _check_resumable(ckpt, config(), "last.pt", 1)


def test_changed_settings_are_refused_one_line_each_by_flag():
    ckpt = checkpoint(config())
    changed = config(optim__lr=0.1, model__drop_path=0.0, augment__mixup_mode="elem")
    with pytest.raises(TrainingError) as e:
        _check_resumable(ckpt, changed, "last.pt", 1)
    lines = str(e.value).splitlines()
    assert lines[0] == "last.pt was written with other settings; resuming would not continue the same run:"
    assert sorted(lines[1:-1]) == [
        "  --drop-path: checkpoint 0.1, now 0.0",
        "  --lr: checkpoint 0.00075, now 0.1",
        "  --mixup-mode: checkpoint 'batch', now 'elem'",
    ]
    assert lines[-1] == "Use the checkpoint's settings, or start a new run with --finetune."
    del ckpt["config"]["model"]  # a section the checkpoint lacks: each of its settings differs from None
    with pytest.raises(TrainingError, match=r"--model: checkpoint None, now 'deit_small_token_32'"):
        _check_resumable(ckpt, config(), "last.pt", 1)


def test_the_settings_a_resume_may_change():
    ckpt = checkpoint(config(16), world_size=2)
    now = config(
        8,
        run__output="elsewhere",
        run__max_steps=7,
        run__log_every=3,
        run__ckpt_every=0,
        run__tensorboard=False,
        data__num_workers=5,
        data__pixel_cache_mb=7,
        data__streaming=True,
        data__verify_shards=True,
        optim__epochs=3,
    )
    _check_resumable(ckpt, now, "last.pt", 4)


@dataclass
class Later:
    flag: int = 0


@dataclass
class RunFirst:
    """A config whose "run" section (skipped as a whole) is not the last one."""

    run: RunConfig = dc_field(default_factory=RunConfig)
    optim: OptimConfig = dc_field(default_factory=OptimConfig)
    later: Later = dc_field(default_factory=Later)


def test_every_section_is_compared_wherever_it_stands():
    ckpt = checkpoint(RunFirst())
    changed = RunFirst(later=Later(flag=1))
    with pytest.raises(TrainingError, match="--flag: checkpoint 0, now 1"):
        _check_resumable(ckpt, changed, "last.pt", 1)


def test_floats_equal_to_12_places_and_tuples_as_lists_are_the_same_setting():
    ckpt = checkpoint(config())
    ckpt["config"]["optim"]["lr"] = 0.00075 + 3e-13  # equal to 12 decimal places
    ckpt["config"]["augment"]["rrc_aspect"] = [0.75, 4 / 3 + 1e-15]
    _check_resumable(ckpt, config(), "last.pt", 1)
    ckpt["config"]["augment"]["rrc_aspect"] = [0.75, 1.5]
    with pytest.raises(TrainingError, match=r"--rrc-aspect: checkpoint \[0\.75, 1\.5\], now \(0\.75, 1\.33"):
        _check_resumable(ckpt, config(), "last.pt", 1)
    assert _normalise(float("inf")) == float("inf")  # round() would overflow on it
    assert _normalise((0.1 + 0.2, [1, (2,)])) == [0.3, [1, [2]]]
    assert _normalise("x") == "x" and _normalise(3) == 3


def test_steps_left_in_an_epoch_follow_the_global_batch_from_the_position_on():
    cfg = config(8)
    pipe = _Pipeline(cfg, DistInfo(rank=1, world_size=2), torch.device("cpu"))
    pipe.train_set = range(100)
    assert [pipe.steps_per_epoch(p) for p in (0, 16, 84, 85, 100)] == [6, 5, 1, 0, 0]


@pytest.mark.parametrize(("samples", "ends"), [(0, False), (84, False), (85, True), (96, True)])
def test_an_epoch_ends_when_no_full_global_batch_is_left(samples, ends):
    trainer = SimpleNamespace(at=Position(2, samples, 9), batch_global=16, pipe=SimpleNamespace(num_train=100))
    assert Trainer.epoch_ends(trainer) is ends


@pytest.mark.parametrize(
    ("max_steps", "step", "reached"), [(None, 10**6, False), (5, 4, False), (5, 5, True), (5, 6, True)]
)
def test_max_steps_is_reached_at_that_step(max_steps, step, reached):
    trainer = SimpleNamespace(at=Position(0, 0, step), cfg=config(run__max_steps=max_steps))
    assert Trainer.reached_max_steps(trainer) is reached
