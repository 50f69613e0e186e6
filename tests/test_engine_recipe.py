"""seit train: SeiT's recipe pinned (defaults, scaled lr, per-rank draws), resume refusals, SIGKILL, TensorBoard."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seit.cli import main
from seit.engine import train as train_module
from seit.engine.config import TrainConfig
from seit.engine.pipeline import build_pipeline
from seit.engine.train import _scaled_lr, step_seed
from seit.runtime.metrics import MetricsLogger, read_metrics
from seit.utils import dist as seit_dist
from seit.utils.dist import DistInfo
from test_engine import FAST, TINY, losses, run_cli, train_args

SCALED = [a for a in FAST if a != "--unscale-lr"]  # SeiT's default: lr x global batch / 512


@pytest.fixture(scope="module")
def stores(tmp_path_factory, class_token_store):
    root = tmp_path_factory.mktemp("stores")
    return (class_token_store(root / "train", 96, seed=0), class_token_store(root / "val", 37, seed=1))


def test_defaults_are_seits_recipe():
    """The values of SeiT's main_seit.py (DeiT's recipe) for every setting both have."""
    cfg = TrainConfig()
    optim, aug = cfg.optim, cfg.augment
    assert (optim.epochs, optim.batch_size, optim.opt, optim.lr, optim.unscale_lr) == (300, 64, "adamw", 7.5e-4, False)
    assert (optim.weight_decay, optim.warmup_epochs, optim.warmup_lr, optim.min_lr) == (0.1, 5, 1e-6, 1e-5)
    assert (optim.clip_grad, optim.model_ema, optim.model_ema_decay) == (None, True, 0.99996)
    assert (cfg.model.drop_path, cfg.run.seed) == (0.1, 0)
    assert (aug.smoothing, aug.mixup, aug.cutmix, aug.cutmix_minmax) == (0.1, 0.0, 1.0, None)
    assert (aug.mixup_prob, aug.mixup_switch_prob, aug.mixup_mode) == (1.0, 0.5, "batch")
    assert (aug.crop, aug.crop_ratio, aug.rrc_scale, aug.rrc_aspect) == ("rrc", 0.875, (0.08, 1.0), (3 / 4, 4 / 3))
    assert (aug.synonym_prob, aug.synonym_token_prob, aug.synonym_topk) == (0.25, 0.25, 5)  # Token-EDA
    assert (aug.swap_prob, aug.swap_scale, aug.noise_scale, aug.noise_std) == (0.25, 0.25, 1.0, 1.0)
    assert aug.hflip_prob == 0.0  # SeiT does not flip token maps


@pytest.mark.parametrize("batch, world", [(64, 1), (64, 8), (16, 2), (128, 4)])
def test_the_learning_rate_scales_with_the_global_batch(batch, world):
    cfg = TrainConfig()
    cfg.optim.batch_size = batch
    assert _scaled_lr(cfg, world) == pytest.approx(7.5e-4 * batch * world / 512)
    cfg.optim.unscale_lr = True
    assert _scaled_lr(cfg, world) == 7.5e-4


@pytest.fixture
def as_rank(monkeypatch):
    """Run ``train`` in this process as rank ``r`` of a 2-process job (no process group: DDP is a no-op)."""

    def use(rank):
        @contextlib.contextmanager
        def group(device=None, timeout_s=1800):
            yield DistInfo(rank=rank, world_size=2)

        monkeypatch.setattr(seit_dist, "process_group", group)
        monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda model, **kw: model)
        seeds = []
        seed_everything = train_module.seed_everything
        monkeypatch.setattr(train_module, "seed_everything", lambda s: (seeds.append(s), seed_everything(s)))
        return seeds

    return use


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_seeds_the_step_alike_and_the_lr_is_scaled(stores, tmp_path, as_rank, rank):
    """2 processes x 16: the base lr the run uses is 7.5e-4 x 32 / 512; step s is seeded (seed, s) on every
    rank (each keeps its own rows of the draws: the next test)."""
    seeds = as_rank(rank)
    out = tmp_path / "run"
    args = ["train", "--store", str(stores[0]), "--output", str(out), *TINY, *SCALED]
    assert main([*args, "--max-steps", "2", "--warmup-epochs", "0", "--seed", "7"]) == 0
    assert seeds == [7] + [step_seed(7, step) for step in (0, 1)]  # the run's seed, then one per step
    assert step_seed(7, 0) != step_seed(7, 1) != step_seed(8, 1)
    if rank == 0:  # the main process logs; cosine without warm-up starts at the base lr
        first = read_metrics(out / "metrics.jsonl", "train")[0]
        assert first["step"] == 1 and first["lr"] == pytest.approx(7.5e-4 * 32 / 512)


def _pipelines(store, drop_path=0.0):
    """A 1 x 16 pipeline and the two of a 2 x 8 job on the same data."""
    cfgs = [TrainConfig(), TrainConfig()]
    for cfg, batch in zip(cfgs, (16, 8), strict=True):
        cfg.data.store, cfg.data.num_workers, cfg.optim.batch_size = str(store), 0, batch
        cfg.model.drop_path, cfg.model.model = drop_path, "deit_tiny_token_4"
        cfg.model.embed_dim, cfg.model.depth, cfg.model.num_heads = 32, 2, 2
    one = build_pipeline(cfgs[0], DistInfo(), torch.device("cpu"))
    return one, [build_pipeline(cfgs[1], DistInfo(rank=r, world_size=2), torch.device("cpu")) for r in (0, 1)]


def _at_step(pipe, step, fn, *args):
    train_module.seed_everything(step_seed(0, step))  # what the loop does before each step
    pipe.reseed(step_seed(0, step))
    return fn(*args)


def test_two_ranks_of_one_step_draw_different_augmentations_and_together_what_one_process_draws(stores):
    one, ranks = _pipelines(stores[0])
    ids, labels = next(iter(one.train_loader(0, 0)))  # a global batch of 16
    halves = [(ids[r * 8 : (r + 1) * 8], labels[r * 8 : (r + 1) * 8]) for r in (0, 1)]

    def draw(pipe, batch, step=3):
        return _at_step(pipe, step, pipe.train_batch, *batch)

    # the same samples on both ranks: different draws for every sample (each rank keeps other rows)
    (x0, _), (x1, _) = draw(ranks[0], halves[0]), draw(ranks[1], halves[0])
    assert all(not torch.allclose(a, b) for a, b in zip(x0, x1, strict=True))
    # each rank its half: the global batch one process draws, exactly; a rerun the same, another step not
    whole, parts = draw(one, (ids, labels)), [draw(ranks[r], halves[r]) for r in (0, 1)]
    for i in (0, 1):
        assert torch.equal(torch.cat([p[i] for p in parts]), whole[i])
        assert torch.equal(draw(one, (ids, labels))[i], whole[i])
    assert not torch.equal(draw(one, (ids, labels), step=4)[0], whole[0])


def test_drop_path_drops_a_sample_alike_on_any_number_of_ranks(stores):
    import timm
    from timm.layers import DropPath

    from seit.engine.pipeline import SlicedDropPath

    one, ranks = _pipelines(stores[0], drop_path=0.5)
    models = [p.create_model(timm).train() for p in (one, *ranks)]
    for model in models[1:]:
        model.load_state_dict(models[0].state_dict())
    assert not any(isinstance(m, DropPath) for model in models for m in model.modules())
    assert sum(isinstance(m, SlicedDropPath) for m in models[0].modules()) == 2  # block 2 (block 1 drops at rate 0)
    x = torch.randn(16, one.codebook.shape[1], one.grid_size, one.grid_size)
    with torch.no_grad():
        whole = _at_step(one, 5, models[0], x)
        parts = [_at_step(ranks[r], 5, models[1 + r], x[r * 8 : (r + 1) * 8]) for r in (0, 1)]
        same_rows = [_at_step(ranks[r], 5, models[1 + r], x[:8]) for r in (0, 1)]
        undropped = models[0].eval()(x)
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(same_rows[0], same_rows[1])  # the ranks' rows of the draw differ
    assert not torch.allclose(whole, undropped)  # paths really dropped


@pytest.fixture(scope="module")
def uninterrupted(stores, tmp_path_factory):
    """12 steps (2 epochs), TensorBoard on: the reference for the SIGKILL resume."""
    out = tmp_path_factory.mktemp("straight")
    assert (
        main(train_args(stores, out, "--epochs", "2", "--warmup-epochs", "1", "--ckpt-every", "0", "--tensorboard"))
        == 0
    )
    return out


def test_resume_refuses_another_seed(stores, uninterrupted, capsys):
    args = train_args(stores, uninterrupted, "--epochs", "2", "--warmup-epochs", "1", "--tensorboard")
    assert main([*args, "--seed", "1", "--resume", "auto"]) == 1
    err = capsys.readouterr().err.strip()
    assert "last.pt was written with --seed 0, now --seed 1" in err and "resume with --seed 0" in err
    assert len(err.splitlines()) == 1
    assert main([*args, "--shuffle", "chunk", "--resume", "auto"]) == 1  # the data order's other setting
    assert "--shuffle: checkpoint 'global', now 'chunk'" in capsys.readouterr().err


# Runs `seit train` and SIGKILLs it from inside right after the metrics line of step KILL_AT is written:
# a hard kill at a known point (checkpoints every 2 steps: the last one is at step KILL_AT - 1).
KILL_AT = 5
KILLED_RUN = f"""
import os, signal, sys
from seit.runtime import metrics
log = metrics.MetricsLogger.log
def log_then_die(self, kind, step, values):
    log(self, kind, step, values)
    if kind == "train" and step == {KILL_AT}:
        if self._tb is not None:  # the worst case: TensorBoard holds the steps past the checkpoint too
            self._tb.flush()
        os.kill(os.getpid(), signal.SIGKILL)
metrics.MetricsLogger.log = log_then_die
from seit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def tensorboard_scalars(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(out) / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags}


def test_a_resumed_log_drops_what_the_interrupted_run_logged_after_the_checkpoint(tmp_path):
    killed = MetricsLogger(tmp_path)
    for step in range(1, 6):
        killed.log("train", step, {"loss": float(step)})
    killed.close()
    resumed = MetricsLogger(tmp_path, resume_step=3)
    for step in range(4, 7):
        resumed.log("train", step, {"loss": 10.0 + step})
    resumed.close()
    expected = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 14.0), (5, 15.0), (6, 16.0)]
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == expected
    assert tensorboard_scalars(tmp_path)["train/loss"] == expected


def test_sigkill_then_resume_continues_the_same_run_and_logs_each_step_once(stores, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    args = train_args(stores, out, "--epochs", "2", "--warmup-epochs", "1", "--ckpt-every", "2", "--tensorboard")
    env = {**os.environ, "SEIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, *args], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert torch.load(out / "last.pt", weights_only=True)["global_step"] == KILL_AT - 1
    assert [s for s, _ in losses(out)] == list(range(1, KILL_AT + 1))  # a line past the checkpoint
    resumed = run_cli([*args, "--resume", "auto"], timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert losses(out) == losses(uninterrupted)  # each step once, with the uninterrupted run's loss
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl")]
    assert steps == sorted(steps)

    scalars = tensorboard_scalars(out)
    assert scalars.keys() == tensorboard_scalars(uninterrupted).keys()
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, 13))
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([v for _, v in losses(uninterrupted)], rel=1e-6)
    assert [s for s, _ in scalars["train/lr"]] == list(range(1, 13))
    evals = read_metrics(uninterrupted / "metrics.jsonl", "eval")
    for tag in ("eval/top1", "eval_ema/top1"):
        assert [s for s, _ in scalars[tag]] == [6, 12]
    assert [v for _, v in scalars["eval/top1"]] == pytest.approx([e["top1"] for e in evals])
