"""``seit tokenize``: images -> a token store; resumable, and the same store from any number of processes.

Each rank of a torchrun job encodes a contiguous share of the sorted image list into its own part of the
store; rank 0 merges the parts into one manifest, so N processes write exactly the store one process
would. The job runs on :mod:`seit.runtime`: it refuses a used output folder unless ``--resume auto``
continues it (durable shards are kept and their images are not encoded again) or ``--restart`` moves it
aside; a stop signal keeps the durable shards. Images that cannot be used are skipped and listed with the reason in
``STORE/skipped.jsonl``. With ``prune`` or ``codes_from`` the full-codebook store is written to
``STORE/.unpruned`` first and then renumbered into STORE by :func:`seit.store.codes.prune_store`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seit import runtime
from seit.config import config_differences, to_dict
from seit.images import ImageList, list_images, shard
from seit.runtime import StopSignal
from seit.store import StoreWriter, TokenStore, merge_parts
from seit.store.codes import PruneResult, add_synonyms, codes_onto, prune_store
from seit.store.files import is_url
from seit.store.format import MANIFEST, part_of, part_records
from seit.tokenizer.amp import resolve_precision
from seit.tokenizer.checkpoint import FILE_NAME, load_tokenizer
from seit.tokenizer.config import TokenizeConfig, TokenizerError
from seit.tokenizer.encode import (
    SkipRecord,
    cpu_count,
    encode_images,
    read_skip_report,
    summarize_skips,
    write_skip_report,
)
from seit.tokenizer.model import Tokenizer
from seit.utils import dist
from seit.utils.io import sha256_file

SKIP_REPORT = "skipped.jsonl"
UNPRUNED = ".unpruned"
log = logging.getLogger(__name__)

DIST_TIMEOUT_S = 24 * 3600  # ranks meet only at the end; after a resume one rank may be far behind the others


@dataclass
class TokenizeResult:
    store: Path
    images: int  # entries listed: the images found plus those left out while listing
    samples: int  # samples in the finished store
    encoded: int  # images this run encoded (all ranks)
    resumed: int  # samples already durable when this run started
    skipped: list[SkipRecord]  # every image left out, with its reason (as in STORE/skipped.jsonl)
    seconds: float  # wall time of the whole run
    images_per_s: float  # images this run read (encoded or skipped) per second of encoding, all ranks together
    codebook_size: int
    prune: PruneResult | None = None
    finished: bool = True  # False: a stop signal ended the run; its durable shards stay for a rerun

    @property
    def skip_report(self) -> Path:
        return self.store / SKIP_REPORT

    def summary(self) -> str:
        if self.encoded or self.resumed < self.samples:
            head = (
                f"{self.samples:,} samples in {self.store}: {self.encoded:,} encoded by this run at "
                f"{self.images_per_s:.1f} images/s, {self.resumed:,} kept from an earlier run; {self.seconds:.1f} s"
            )
        else:
            head = f"{self.samples:,} samples in {self.store}: already complete, nothing left to encode"
        lines = [
            head,
            summarize_skips(self.skipped, self.images) + (f", listed in {self.skip_report}" if self.skipped else ""),
        ]
        if self.prune is not None:
            lines.append(self.prune.summary())
        return "\n".join(lines)


def default_num_workers() -> int:
    """Image-decoding workers per process: all cores, shared by the ranks torchrun started on this node."""
    return max(1, cpu_count() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def tokenize(cfg: TokenizeConfig) -> TokenizeResult:
    """Encode the images of ``cfg.images`` into the token store ``cfg.out`` (one process or a torchrun job).

    Runs on :mod:`seit.runtime`: a non-empty ``cfg.out`` is refused unless ``cfg.resume`` continues it (or
    ``cfg.restart`` moves it aside); a stop signal keeps the durable shards and returns ``finished=False``.
    """
    _check_options(cfg)
    started = time.perf_counter()
    runtime.check_output(cfg.out, resume=cfg.resume, restart=cfg.restart)  # before the slow set-up below
    job = _Job.prepare(cfg)  # every input checked before the output folder is touched
    with runtime.start(
        cfg.out, device=cfg.device, resume=cfg.resume, restart=cfg.restart, timeout_s=DIST_TIMEOUT_S
    ) as run:
        run.announce("seit tokenize")
        return job.run(run.info, run.stop, started)


def _check_options(cfg: TokenizeConfig) -> None:
    problems = []
    if cfg.prune and cfg.codes_from:
        problems.append("give --prune (codes of this split) or --codes-from TRAIN_STORE (codes of another), not both")
    if is_url(cfg.out):
        problems.append(f"--output {cfg.out}: write to a local or mounted directory, then copy the store")
    if problems:
        raise TokenizerError("; ".join(problems))


@dataclass
class _Job:
    """One tokenize run: its inputs, loaded and checked, and where it writes (``work``: the full-codebook store)."""

    cfg: TokenizeConfig
    listing: ImageList
    tokenizer: Tokenizer
    codebook: np.ndarray
    device: torch.device
    config: dict[str, Any]  # what the ids depend on (see _job_config)

    @classmethod
    def prepare(cls, cfg: TokenizeConfig) -> _Job:
        listing = list_images(cfg.images, root=cfg.root)
        device = dist.resolve_device(cfg.device)
        tokenizer = load_tokenizer(cfg.tokenizer, config=cfg.config, allow_legacy_pickle=cfg.allow_legacy_pickle)
        codebook = tokenizer.classifier_codebook().float().numpy()
        if cfg.codes_from:
            main = os.environ.get("RANK", "0") == "0"  # the process group is not up yet: warn from rank 0 only
            _check_codes_from(cfg.codes_from, codebook, cfg.tokenizer, listing.classes if main else None)
        return cls(cfg, listing, tokenizer, codebook, device, _job_config(cfg, tokenizer, device))

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def post(self) -> bool:
        """Whether the ids are renumbered after encoding (--prune, --codes-from)."""
        return self.cfg.prune or self.cfg.codes_from is not None

    @property
    def work(self) -> Path:
        return self.out / UNPRUNED if self.post else self.out

    def run(self, info: dist.DistInfo, stop: StopSignal, started: float) -> TokenizeResult:
        # a finished store, or (pruning) a finished full-codebook store of which only the renumbering is left
        finished = next((path for path in (self.out, self.work) if (path / MANIFEST).exists()), None)
        if finished is not None:  # only with --resume: the runtime refused a used output without it
            _check_same_job(finished, self.config)
            counts = _Counts()
            skipped = read_skip_report(self.out / SKIP_REPORT)
        else:
            skipped, counts = _encode(self, info, stop)
            if stop.received is not None:  # every rank reached the gather in _encode: none merges, all keep shards
                return self._result(counts, skipped, started)
            skipped = sorted(self.listing.skipped + skipped, key=lambda r: r.key)  # listing, then decoding
            if info.is_main:
                write_skip_report(self.out / SKIP_REPORT, skipped)  # before the manifest: a finished store has it
                merge_parts(self.work, info.world_size)
        if info.is_main:
            _complete(self.cfg, self.out, self.work, self.post)
        dist.barrier()
        with TokenStore.open(self.out, verify=False) as store:
            resumed = len(store) if finished is not None else counts.resumed  # all encoded by an earlier run
            counts = _Counts(counts.encoded, resumed, counts.images_per_s)
            return self._result(counts, skipped, started, store)

    def _result(
        self, counts: _Counts, skipped: list[SkipRecord], started: float, store: TokenStore | None = None
    ) -> TokenizeResult:
        """The figures of this run; without the finished ``store`` a stop signal ended it."""
        return TokenizeResult(
            store=self.out,
            images=len(self.listing.samples) + len(self.listing.skipped),
            samples=counts.resumed + counts.encoded if store is None else len(store),
            encoded=counts.encoded,
            resumed=counts.resumed,
            skipped=skipped,
            seconds=time.perf_counter() - started,
            images_per_s=counts.images_per_s,
            codebook_size=self.tokenizer.codebook_size if store is None else store.codebook_size,
            prune=PruneResult.from_config(self.out, store) if self.post and store is not None else None,
            finished=store is not None,
        )


@dataclass(frozen=True)
class _Counts:
    """What the ranks of this run did together."""

    encoded: int = 0  # images encoded by this run
    resumed: int = 0  # samples already durable when it started
    images_per_s: float = 0.0  # images read (encoded or skipped) per second of encoding


def _job_config(cfg: TokenizeConfig, tokenizer: Tokenizer, device: torch.device) -> dict[str, Any]:
    """What the ids depend on, saved in the store: a resumed run must match it exactly."""
    path = Path(cfg.tokenizer)
    file = path / FILE_NAME if path.is_dir() else path
    return {
        "tokenizer": {
            "file": str(file.resolve()),
            "sha256": sha256_file(file),
            "yaml": None if cfg.config is None else str(Path(cfg.config).resolve()),
            "config": to_dict(tokenizer.config),
        },
        "tokenize": {
            "images": str(Path(cfg.images).resolve()),
            "root": None if cfg.root is None else str(Path(cfg.root).resolve()),
            "resize": cfg.resize,
            "image_size": tokenizer.config.image_size,
            "interpolation": "bicubic",
            "input_range": [0.0, 1.0],
            "max_pixels": cfg.max_pixels,
            "precision": resolve_precision(device, cfg.precision),
            "prune": cfg.prune,
            "codes_from": None if cfg.codes_from is None else str(Path(cfg.codes_from).resolve()),
        },
        "codebook": "the tokenizer's unit code rows times sqrt(dim) (Tokenizer.classifier_codebook())",
    }


def _check_same_job(path: Path, job: dict[str, Any]) -> None:
    with TokenStore.open(path, verify=False) as store:
        saved = store.config
    changed = config_differences(saved, job)
    if changed:
        raise TokenizerError(
            f"{path}: holds a store made with other settings ({'; '.join(changed[:4])}); rerun with the original "
            "settings, start over with --restart, or choose another --output"
        )


def _check_codes_from(path: str, codebook: np.ndarray, tokenizer: str, classes: list[str] | None) -> None:
    """Fail before encoding if the train store cannot take this tokenizer's ids; warn if the classes differ."""
    with TokenStore.open(path, verify=False) as train:
        code_ids, train_codebook, train_classes = train.code_ids, train.codebook, train.class_names
    if classes and train_classes and classes != train_classes:
        log.warning(
            "warning: the class folders here (%d, e.g. %r) differ from %s's (%d, e.g. %r): labels are numbered by "
            "this folder's classes, not the train store's",
            len(classes),
            classes[0],
            path,
            len(train_classes),
            train_classes[0],
        )
    if code_ids is None:
        raise TokenizerError(
            f"{path}: the store does not record which tokenizer codes its ids are (no code_ids); --codes-from "
            "needs a store written by `seit tokenize` (or `seit store prune`)"
        )
    if code_ids.max() >= len(codebook):
        raise TokenizerError(
            f"{path}: holds tokenizer codes up to {code_ids.max()}, {tokenizer} has {len(codebook)}: "
            "the store was made with another tokenizer"
        )
    codes_onto(
        np.arange(len(codebook)), codebook, code_ids, train_codebook, src_name=f"tokenizer {tokenizer}", kept_name=path
    )


def _encode(job: _Job, info: dist.DistInfo, stop: StopSignal) -> tuple[list[SkipRecord], _Counts]:
    """This rank's share into part ``rank`` of ``job.work``; returns what all ranks skipped and did."""
    if info.is_main:
        _check_parts(job.work, info.world_size)
    writer = _writer(job, info.rank)
    done = writer.done_keys
    foreign = done - {s.key for s in shard(job.listing.samples, info.rank, info.world_size)}
    if foreign:
        writer.abort()
        raise TokenizerError(
            f"{job.work}: part {info.rank} holds {len(foreign)} images that are not in this process's share of "
            f"{job.cfg.images} (e.g. {min(foreign)!r}): the run was started on other images or with another number "
            "of processes; rerun it as it was started, or start over with --restart"
        )
    cfg = job.cfg
    encoding = encode_images(
        job.tokenizer,
        job.listing.samples,
        batch_size=cfg.batch_size,
        num_workers=default_num_workers() if cfg.num_workers is None else cfg.num_workers,
        device=job.device,
        rank=info.rank,
        world_size=info.world_size,
        skip_keys=done,
        resize=cfg.resize,
        max_pixels=cfg.max_pixels,
        precision=cfg.precision,
    )
    start = time.perf_counter()
    with writer:
        for ids, labels, keys in encoding:
            writer.append_batch(ids, labels, keys)
            if stop.received is not None:  # this rank stops here; durable shards stay, the open one is dropped
                writer.abort()
                break
    ranks = dist.all_gather_objects((encoding.skipped, encoding.encoded, len(done)))
    seconds = time.perf_counter() - start
    skipped = sorted((r for rank_skipped, _, _ in ranks for r in rank_skipped), key=lambda r: r.key)
    encoded = sum(n for _, n, _ in ranks)
    rate = (encoded + len(skipped)) / max(seconds, 1e-9)
    return skipped, _Counts(encoded, sum(n for _, _, n in ranks), rate)


def _writer(job: _Job, part: int) -> StoreWriter:
    """Part ``part`` of the full-codebook store (continuing its durable shards with --resume)."""
    return StoreWriter(
        job.work,
        grid_shape=job.tokenizer.grid_shape,
        codebook_size=job.tokenizer.codebook_size,
        class_names=job.listing.classes or None,
        codebook=job.codebook,
        code_ids=np.arange(job.tokenizer.codebook_size),
        shard_bytes=max(1, int(job.cfg.shard_mb * (1 << 20))),
        part=part,
        config=job.config,
        resume=job.cfg.resume is not None,
        **({"codec": job.cfg.codec} if job.cfg.codec else {}),
    )


def _check_parts(work: Path, world_size: int) -> None:
    extra = [n for n in part_records(p.name for p in work.glob("part-*.json")) if part_of(n) >= world_size]
    if extra:
        raise TokenizerError(
            f"{work}: holds writer records {extra[:4]} of a run with more processes than this one "
            f"({world_size}); rerun it with the original number of processes, or start over with --restart"
        )


def _complete(cfg: TokenizeConfig, out: Path, work: Path, post: bool) -> None:
    """Rank 0's last steps, each one skipped when done, so a rerun after a kill finishes the job."""
    if post and not (out / MANIFEST).exists():
        prune_store(
            work,
            out,
            codes_from=cfg.codes_from,
            synonyms_k=cfg.synonyms,
            shard_bytes=max(1, int(cfg.shard_mb * (1 << 20))),
            codec=cfg.codec,
            resume=True,
            show_progress=True,
        )
    if post and work.exists():
        shutil.rmtree(work)
    if cfg.synonyms:
        with TokenStore.open(out, verify=False) as store:
            have = store.synonyms
            want = min(cfg.synonyms, store.codebook_size)
        if have is None or have.shape[1] != want:
            add_synonyms(out, cfg.synonyms)
