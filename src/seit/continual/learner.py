"""Class-incremental training with a replay memory, on the shared runtime (one run per memory kind).

The classes are split into T groups in a seeded order; step t trains on its new classes' data plus the memory,
with the head's logits restricted to the classes seen so far. Then it evaluates on every class seen, and the
memory takes exemplars of the new classes (herding on the current model's features, or random) while every
class's share of the byte budget shrinks. Both memory kinds train the same number of optimizer steps per
step (epochs x new samples / batch, batches drawn from new data and memory together), so only what the
memory holds differs.

Resume is exact: every random draw of an optimizer step (data fetch, augmentation, mixing, drop-path) is
seeded from (seed, step), the data order of a pass over the pool from (seed, task, pass), and the checkpoint
holds the memory, so a run stopped anywhere repeats the uninterrupted run's losses and accuracies.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seit import runtime
from seit.config import to_dict
from seit.continual.config import ContinualConfig
from seit.continual.memory import (
    ReplayMemory,
    herding_order,
    pixel_exemplar_bytes,
    random_order,
    token_exemplar_bytes,
    token_memory_reserve,
)
from seit.engine.config import OptimConfig, TrainConfig
from seit.engine.evaluate import Accumulator
from seit.engine.train import seed_everything, step_seed
from seit.errors import SeitError
from seit.models.checkpoint import MODEL_FILE, save_classifier
from seit.runtime.metrics import MetricsLogger
from seit.store.order import GlobalBatches
from seit.utils import dist as seit_dist
from seit.utils.serialization import CheckpointError, atomic_torch_save, safe_torch_load

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"
MASKED_LOGIT = -1e4  # logits of classes not seen yet: exp() is 0 in float32, and 0 x this is 0 (not NaN)


def class_order(num_classes: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).permutation(num_classes).tolist()


def task_classes(num_classes: int, tasks: int, seed: int, classes: int | None = None) -> list[list[int]]:
    """The classes of each incremental step: the seeded order (its first ``classes``) split into ``tasks`` groups."""
    if classes is not None and classes > num_classes:
        raise SeitError(f"--classes {classes} exceeds the {num_classes} classes of the data; give at most that")
    used = num_classes if classes is None else classes
    if tasks > used:
        raise SeitError(f"--tasks {tasks} exceeds the {used} classes used; give at most {used}")
    return [g.tolist() for g in np.array_split(np.array(class_order(num_classes, seed)[:used]), tasks)]


def train_config(cfg: ContinualConfig, kind: str) -> TrainConfig:
    """The `seit train` config a memory kind's pipeline is built from: only data and model name differ by kind."""
    t = TrainConfig()
    d = cfg.data
    if kind == "tokens":
        t.data.store, t.data.val_store, t.model.model = d.store, d.val_store, cfg.model.token_model
    else:
        t.data.images, t.data.val_images, t.model.model = d.images, d.val_images, cfg.model.pixel_model
        t.data.image_size = d.image_size
    t.data.num_workers = d.num_workers
    m = cfg.model
    t.model.embed_dim, t.model.depth, t.model.num_heads, t.model.drop_path = (
        m.embed_dim,
        m.depth,
        m.num_heads,
        m.drop_path,
    )
    t.optim = OptimConfig(**asdict(cfg.optim), unscale_lr=True, model_ema=False)
    t.augment = cfg.augment
    t.run.device, t.run.seed = cfg.run.device, cfg.run.seed
    return t


def recipe(cfg: ContinualConfig, t: TrainConfig) -> dict[str, Any]:
    """What must be the same for every memory kind: model size, optimisation, augmentation, protocol, seed."""
    return {
        "model": {k: v for k, v in asdict(t.model).items() if k != "model"},
        "optim": asdict(t.optim),
        "augment": asdict(t.augment),
        "protocol": asdict(cfg.protocol),
        "seed": t.run.seed,
    }


@dataclass
class Position:
    """Where a run is: the incremental step (task), the pass over its pool, samples of that pass, steps."""

    task: int = 0
    epoch: int = 0
    samples: int = 0
    task_step: int = 0
    step: int = 0


@dataclass
class KindResult:
    kind: str
    output: Path
    preempted: bool
    steps: list[dict[str, Any]] = field(default_factory=list)  # one record per finished incremental step
    recipe: dict[str, Any] = field(default_factory=dict)
    global_step: int = 0


class ContinualLearner:
    """One memory kind's class-incremental run; the run (output, signals) comes from :mod:`seit.runtime`."""

    def __init__(self, cfg: ContinualConfig, kind: str, run: runtime.Run) -> None:
        import timm

        from seit.engine.pipeline import build_pipeline
        from seit.engine.train import _autocast

        self.cfg, self.kind, self.run = cfg, kind, run
        self.out = run.output / kind
        if run.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.device = seit_dist.resolve_device(cfg.run.device)
        seed_everything(cfg.run.seed)
        self.tcfg = train_config(cfg, kind)
        self.pipe = build_pipeline(self.tcfg, run.info, self.device)
        self.model = self.pipe.create_model(timm).to(self.device)
        self.autocast, _ = _autocast(self.device, "auto")
        self.num_classes = self.pipe.num_classes
        p = cfg.protocol
        self.tasks = task_classes(self.num_classes, p.tasks, p.class_order_seed, p.classes)
        self.train_labels, self.val_labels, self.features_set = self._labels_and_views()
        self.memory = ReplayMemory(p.memory_bytes, self._reserve())
        self.at = Position()
        self.steps: list[dict[str, Any]] = []
        self.optimizer = self.scheduler = None
        self._optimizer_state = None
        resume_from = runtime.resume_checkpoint(cfg.run.resume, self.out / CHECKPOINT)
        if resume_from is not None:
            self._load(resume_from)
        resume_step = self.at.step if cfg.run.resume is not None else None
        self.logger = MetricsLogger(
            self.out, enabled=run.info.is_main, tensorboard=cfg.run.tensorboard, resume_step=resume_step
        )

    def _labels_and_views(self):
        """Train and val labels, and the train data seen as at evaluation (centre crop) for herding."""
        pipe = self.pipe
        if self.kind == "tokens":
            return pipe.train_set.store.labels, pipe.val_set.store.labels, pipe.train_set
        from seit.engine.pixels import PixelDataset

        view = PixelDataset(self.tcfg.data.images, self.tcfg.data.image_size)
        return pipe.train_set.labels, pipe.val_set.labels, view

    def _reserve(self) -> int:
        """Bytes the memory needs whatever it holds: a token store's decoding tables; refused above the budget."""
        if self.kind != "tokens":
            return 0
        reserve = token_memory_reserve(self.pipe.train_set.store)
        if reserve > self.cfg.protocol.memory_bytes:
            raise SeitError(
                f"--memory-bytes {self.cfg.protocol.memory_bytes} is below the {reserve} bytes a token memory of "
                f"{self.cfg.data.store} needs once (its codec state and tables): raise --memory-bytes"
            )
        return reserve

    # --- the steps -----------------------------------------------------------------------------------------

    def task_steps(self, task: int) -> int:
        """Optimizer steps of an incremental step: epochs over its new data, the same for every memory kind."""
        new = int(np.isin(self.train_labels, self.tasks[task]).sum())
        return self.cfg.optim.epochs * (new // self.cfg.optim.batch_size)

    def seen(self, task: int) -> torch.Tensor:
        mask = torch.zeros(self.num_classes, dtype=torch.bool, device=self.device)
        mask[[c for group in self.tasks[: task + 1] for c in group]] = True
        return mask

    def _begin_task(self, task: int) -> None:
        from timm.optim import create_optimizer_v2
        from timm.scheduler import CosineLRScheduler

        o = self.cfg.optim
        total = self.task_steps(task)
        self.optimizer = create_optimizer_v2(self.model, o.opt, lr=o.lr, weight_decay=o.weight_decay)
        warmup = int(o.warmup_epochs * total / o.epochs)
        self.scheduler = CosineLRScheduler(
            self.optimizer,
            t_initial=total,
            lr_min=o.min_lr,
            warmup_t=warmup,
            warmup_lr_init=o.lr * 1e-3,
            t_in_epochs=False,
        )
        if self._optimizer_state is not None:  # resumed inside this task
            self.optimizer.load_state_dict(self._optimizer_state)
            self._optimizer_state = None

    def pool(self, task: int) -> np.ndarray:
        """Training indices of a step: its new classes' samples, then the memory's exemplars."""
        new = np.flatnonzero(np.isin(self.train_labels, self.tasks[task]))
        return np.concatenate([new, np.asarray(self.memory.indices(), dtype=np.int64)])

    def _batches(self, pool: np.ndarray, task: int):
        batch = self.cfg.optim.batch_size
        if len(pool) < batch:
            raise SeitError(
                f"incremental step {task + 1} has {len(pool)} training samples (new data and memory), fewer than "
                f"one batch: lower --batch-size below {len(pool)}"
            )
        order_seed = step_seed(self.cfg.run.seed, task) % (1 << 31)
        plan = GlobalBatches(len(pool), batch, seed=order_seed, epoch=self.at.epoch, start=self.at.samples)
        batches = [pool[plan.batch(g)].tolist() for g in range(len(plan))]
        return iter(self._loader(self.pipe.train_set, batches)), len(plan)

    def _loader(self, dataset, batches: list[list[int]]):
        """A loader of exactly these batches of ``dataset`` (indices), with the pipeline's workers and collate."""
        return self.pipe._loader(dataset, batches, self.pipe.collate)

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor, seen: torch.Tensor) -> float:
        self.scheduler.step_update(self.at.task_step)
        x, targets = self.pipe.train_batch(inputs, labels)
        targets = targets * seen  # smoothing and mixing spread mass over the classes seen so far only
        targets = targets / targets.sum(1, keepdim=True)
        with self.autocast:
            logits = self.model(x)
        logits = logits.float().masked_fill(~seen, MASKED_LOGIT)
        loss = -(targets * logits.log_softmax(-1)).sum(-1).mean()
        if not torch.isfinite(loss):
            raise SeitError(f"{self.kind}: loss is {loss.item()} at step {self.at.step}: lower --lr or set --clip-grad")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
        self.optimizer.step()
        self.at.step += 1
        self.at.task_step += 1
        self.at.samples += self.cfg.optim.batch_size
        return loss.item()

    def train_task(self, bar: runtime.RunProgress) -> bool:
        """Steps to the end of the current incremental step; True when a stop signal ended it (checkpoint saved)."""
        task, total = self.at.task, self.task_steps(self.at.task)
        self._begin_task(task)
        seen, pool = self.seen(task), self.pool(task)
        self.model.train()
        bar.start_epoch(task, total - self.at.task_step)
        bar.bar.set_description(f"{self.kind} memory, step {task + 1}/{len(self.tasks)}")
        while self.at.task_step < total:
            batches, count = self._batches(pool, task)
            for _ in range(count):
                seed = step_seed(self.cfg.run.seed, self.at.step)
                seed_everything(seed)  # before the fetch: a pixel crop drawn in-process is then seeded too
                self.pipe.reseed(seed)
                inputs, labels = next(batches)
                loss = self.train_step(inputs, labels, seen)
                stopping = self.run.stop.agreed(self.device)
                at = self.at.step
                if at == 1 or at % self.cfg.run.log_every == 0 or self.at.task_step == total or stopping:
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.logger.log("train", at, {"loss": loss, "lr": lr, "task": task, "pass": self.at.epoch})
                bar.step(loss=f"{loss:.4f}")
                if stopping or self._max_steps_reached():
                    self.checkpoint()
                    return True
                if self.cfg.run.ckpt_every and at % self.cfg.run.ckpt_every == 0:
                    self.checkpoint()
                if self.at.task_step == total:
                    return False
            self.at.epoch, self.at.samples = self.at.epoch + 1, 0
        return False

    def _max_steps_reached(self) -> bool:
        return self.cfg.run.max_steps is not None and self.at.step >= self.cfg.run.max_steps

    # --- end of an incremental step ----------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, task: int) -> dict[str, Any]:
        """Top-1 on the val samples of every class seen so far (logits restricted to those), and per step."""
        self.model.eval()
        seen = self.seen(task)
        classes = seen.nonzero().flatten().cpu().numpy()
        idx = np.flatnonzero(np.isin(self.val_labels, classes))
        batch = self.cfg.optim.batch_size
        acc = Accumulator(self.num_classes, self.device)
        for inputs, labels in self._loader(self.pipe.val_set, _in_batches(idx, batch)):
            with self.autocast:
                logits = self.model(self.pipe.eval_batch(inputs))
            acc.add(logits.float().masked_fill(~seen, MASKED_LOGIT), labels.to(self.device))
        conf = acc.result(self.pipe.class_names).confusion
        per_task = [_top1(conf, group) for group in self.tasks[: task + 1]]
        self.model.train()
        return {"top1": _top1(conf, classes.tolist()), "per_task_top1": per_task, "val_samples": len(idx)}

    @torch.no_grad()
    def features(self, indices: np.ndarray) -> torch.Tensor:
        """The model's pre-logit features of training samples seen as at evaluation (herding's input)."""
        self.model.eval()
        batch, out = self.cfg.optim.batch_size, []
        for inputs, _ in self._loader(self.features_set, _in_batches(indices, batch)):
            with self.autocast:
                tokens = self.model.forward_features(self.pipe.eval_batch(inputs))
                out.append(self.model.forward_head(tokens, pre_logits=True).float().cpu())
        self.model.train()
        return torch.cat(out)

    def exemplar_bytes(self, indices: np.ndarray) -> np.ndarray:
        if self.kind == "tokens":
            return token_exemplar_bytes(self.pipe.train_set.store, indices)
        return pixel_exemplar_bytes([self.pipe.train_set.samples[i].path for i in indices.tolist()])

    def update_memory(self, task: int) -> None:
        """Rank each new class's samples (herding or random) and keep what fits in every class's new share."""
        share = self.memory.share_of(len(self.memory.ranked) + len(self.tasks[task]))
        for label in self.tasks[task]:
            idx = np.flatnonzero(self.train_labels == label)
            sizes = self.exemplar_bytes(idx)
            most = min(len(idx), share // max(int(sizes.min()), 1)) if len(idx) else 0
            if self.cfg.protocol.selection == "herding" and most:
                order = herding_order(self.features(idx), most)
            else:
                order = random_order(len(idx), self.cfg.run.seed, label)[:most]
            self.memory.add(label, idx[order], sizes[order])

    def finish_task(self) -> None:
        task = self.at.task
        result = {"task": task, "classes": self.tasks[task], "classes_seen": int(self.seen(task).sum())}
        result.update(self.evaluate(task))
        self.update_memory(task)
        result.update(
            exemplars=len(self.memory.indices()),
            memory_bytes=self.memory.used_bytes(),
            memory_reserved_bytes=self.memory.reserved,
            steps=self.at.step,
        )
        self.logger.log("task", self.at.step, {k: v for k, v in result.items() if k != "classes"})
        if self.run.info.is_main:
            log.info(
                "%s memory, step %d/%d: top-1 %.2f%% on %d classes; memory %d exemplars, %d bytes",
                self.kind,
                task + 1,
                len(self.tasks),
                result["top1"],
                result["classes_seen"],
                result["exemplars"],
                result["memory_bytes"],
            )
        self.steps.append(result)
        self.at = Position(task + 1, 0, 0, 0, self.at.step)
        self.checkpoint()

    def fit(self) -> KindResult:
        total = sum(self.task_steps(t) for t in range(len(self.tasks)))
        if min(self.task_steps(t) for t in range(len(self.tasks))) == 0:
            raise SeitError(
                f"{self.kind}: an incremental step has fewer new samples than one batch: lower --batch-size "
                f"(now {self.cfg.optim.batch_size}) or --tasks"
            )
        bar = runtime.RunProgress(total, self.at.step, len(self.tasks))
        preempted = False
        while self.at.task < len(self.tasks):
            preempted = self.train_task(bar)
            if preempted:
                break
            self.finish_task()
        bar.close()
        if not preempted and self.run.info.is_main:
            save_classifier(
                self.out / MODEL_FILE, self.model, self.pipe.meta(self.tcfg), self.pipe.codebook_for_artifact()
            )
        self.logger.close()
        return KindResult(self.kind, self.out, preempted, self.steps, recipe(self.cfg, self.tcfg), self.at.step)

    # --- checkpoints -------------------------------------------------------------------------------------

    def checkpoint(self) -> None:
        if not self.run.info.is_main:
            return
        state = {
            "kind": "seit.continual",
            "memory_kind": self.kind,
            "config": _resumed_config(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.at.task_step else None,
            "position": asdict(self.at),
            "memory": self.memory.state_dict(),
            "steps": self.steps,
        }
        atomic_torch_save(state, self.out / CHECKPOINT)

    def _load(self, path: Path) -> None:
        try:
            ckpt = safe_torch_load(path)
        except CheckpointError as e:
            raise SeitError(f"{e}; cannot resume from it: start over with --restart") from None
        if ckpt.get("kind") != "seit.continual" or ckpt.get("memory_kind") != self.kind:
            raise SeitError(
                f"{path}: not a seit continual checkpoint of the {self.kind} memory; start over with --restart"
            )
        saved, now = ckpt["config"], _resumed_config(self.cfg)
        if saved != now:
            diffs = [
                f"{section}.{key}: checkpoint {saved.get(section, {}).get(key)!r}, now {value!r}"
                for section in now
                for key, value in now[section].items()
                if saved.get(section, {}).get(key) != value
            ]
            raise SeitError(
                f"{path} was written with other settings; resuming would not continue the same run: "
                + "; ".join(diffs)
                + ". Use the checkpoint's settings, or start over with --restart"
            )
        self.model.load_state_dict(ckpt["model"])
        self._optimizer_state = ckpt["optimizer"]
        self.at = Position(**ckpt["position"])
        self.memory.load_state_dict(ckpt["memory"])
        self.steps = list(ckpt["steps"])
        if self.run.info.is_main:
            log.info("resumed %s at incremental step %d, optimizer step %d", path, self.at.task + 1, self.at.step)


def _resumed_config(cfg: ContinualConfig) -> dict[str, Any]:
    """The settings a resumed run must share with its checkpoint: all but how the run is run (output, logging)."""
    d = to_dict(cfg)
    d["run"] = {"seed": cfg.run.seed}
    d["data"] = {k: v for k, v in d["data"].items() if k != "num_workers"}
    return d


def _in_batches(indices: np.ndarray, size: int) -> list[list[int]]:
    return [indices[i : i + size].tolist() for i in range(0, len(indices), size)]


def _top1(confusion: np.ndarray, classes: list[int]) -> float:
    """Top-1 over the val samples of ``classes`` (rows of the confusion matrix), in percent."""
    correct = sum(int(confusion[c, c]) for c in classes)
    return 100.0 * correct / max(int(confusion[classes].sum()), 1)
