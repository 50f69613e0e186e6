"""`seit eval`: a classifier file on a token store, SeiT's token files, or images tokenized on the fly.

The counting itself (exact, across processes) is :mod:`seit.engine.evaluate`, shared with training.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from seit.engine.evaluate import Accumulator, EvalResult, evaluate, save_confusion_png
from seit.utils import dist as seit_dist

log = logging.getLogger(__name__)


class _TokenEval:
    """Token ids -> centre crop -> codebook vectors, the interface ``evaluate`` reads."""

    def __init__(
        self,
        dataset,
        codebook: torch.Tensor,
        side: int,
        class_names: list[str],
        batch_size: int,
        num_workers: int,
        device: torch.device,
    ) -> None:
        from seit.augment import AugmentConfig, TokenAugment

        self.val_set, self.class_names, self.num_classes = dataset, class_names, len(class_names)
        self.batch_size, self.num_workers, self.device = batch_size, num_workers, device
        config = AugmentConfig(crop_size=side, synonym_prob=0.0)
        self.augment = TokenAugment(config, codebook, None, num_classes=self.num_classes, device=device)

    def eval_loader(self):
        from torch.utils.data import DataLoader

        from seit.store import EvalBatchSampler, collate

        info = seit_dist.current()
        sampler = EvalBatchSampler(len(self.val_set), self.batch_size, rank=info.rank, world_size=info.world_size)
        return DataLoader(self.val_set, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate)

    def eval_batch(self, ids: torch.Tensor) -> torch.Tensor:
        return self.augment.eval(ids)


class _PixelEval:
    """The pixel baseline's eval geometry (resize, centre crop, normalise) over an image folder."""

    def __init__(self, cfg, meta, device: torch.device) -> None:
        from seit.engine.pixels import PixelDataset

        self.val_set = PixelDataset(cfg.images, meta.grid_size)
        self.class_names = meta.class_names or self.val_set.class_names
        if self.val_set.class_names != self.class_names:
            from seit.errors import SeitError

            raise SeitError(f"{cfg.images}: classes {self.val_set.class_names[:5]}... differ from the classifier's")
        self.num_classes, self.cfg, self.device = len(self.class_names), cfg, device

    def eval_loader(self):
        from torch.utils.data import DataLoader

        from seit.store import EvalBatchSampler

        info = seit_dist.current()
        sampler = EvalBatchSampler(len(self.val_set), self.cfg.batch_size, rank=info.rank, world_size=info.world_size)
        return DataLoader(self.val_set, batch_sampler=sampler, num_workers=self.cfg.num_workers)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        from seit.engine.pixels import normalise

        return normalise(images, self.device)


def run_eval(cfg) -> EvalResult:
    """`seit eval`: a classifier on a token store, SeiT's token files, or images through a tokenizer.

    A training run's folder stands for the classifier its best.json names (model or EMA weights).
    """
    if Path(cfg.checkpoint).is_dir():
        from seit.models.checkpoint import best_classifier

        cfg = dataclasses.replace(cfg, checkpoint=str(best_classifier(cfg.checkpoint)))
    with seit_dist.process_group(cfg.device) as info:
        return _run_eval(cfg, info)


@torch.no_grad()
def _run_eval(cfg, info) -> EvalResult:
    from seit.errors import SeitError
    from seit.models import load_classifier
    from seit.utils.io import atomic_write_json

    device = seit_dist.resolve_device(cfg.device)
    shape = {"img_size": cfg.crop_size} if cfg.crop_size else {}
    model, codebook, meta = load_classifier(
        cfg.checkpoint, device, codebook=cfg.codebook_path, model_name=cfg.model, **shape
    )
    if codebook is None and meta.input == "tokens":
        raise SeitError(f"{cfg.checkpoint}: a SeiT checkpoint carries no codebook; pass --codebook-path codebook.ckpt")
    sources = [s for s in (cfg.store, cfg.token_file, cfg.images) if s]
    if len(sources) != 1:
        raise SeitError("give exactly one of --store, --token-file (with --label-file) or --images (with --tokenizer)")
    if cfg.images:
        result = evaluate_images(model, codebook, meta, cfg, device, info)
    else:
        if meta.input != "tokens":
            raise SeitError(f"{cfg.checkpoint} classifies pixels; evaluate it with --images")
        if cfg.store:
            from seit.store import TokenDataset, TokenStore

            dataset, size = TokenDataset(cfg.store), TokenStore.open(cfg.store).codebook_size
        else:
            from seit.interop.seit_release import SeitReleaseDataset

            if not cfg.label_file:
                raise SeitError("--token-file needs --label-file")
            dataset, size = SeitReleaseDataset(cfg.token_file, labels=cfg.label_file), len(codebook)
        if size != len(codebook):
            raise SeitError(
                f"the tokens index a codebook of {size} codes, the classifier's codebook has {len(codebook)}: "
                "they do not belong together"
            )
        names = meta.class_names or [str(i) for i in range(meta.num_classes)]
        pipe = _TokenEval(dataset, codebook, meta.grid_size, names, cfg.batch_size, cfg.num_workers, device)
        result = evaluate(model, pipe, device)
    if info.is_main and cfg.output:
        out = Path(cfg.output)
        atomic_write_json(out / "eval.json", {"checkpoint": str(cfg.checkpoint), **result.to_json()})
        save_confusion_png(
            result,
            out / "confusion.png",
            title=f"{Path(cfg.checkpoint).name}: top-1 {result.top1:.1f}% on {result.count}",
        )
    return result


def evaluate_images(model, codebook, meta, cfg, device: torch.device, info) -> EvalResult:
    """SeiT's evaluate_on_images: tokenize each image, map its ids into the classifier's codebook, centre-crop."""
    from seit.errors import SeitError
    from seit.images import list_images
    from seit.store.codes import code_lookup, nearest_codes
    from seit.tokenizer import encode_images, load_tokenizer, summarize_skips

    if meta.input == "pixels":
        return evaluate(model, _PixelEval(cfg, meta, device), device)
    if not cfg.tokenizer:
        raise SeitError("--images needs --tokenizer (the tokenizer the classifier's training tokens came from)")
    tokenizer = load_tokenizer(cfg.tokenizer, allow_legacy_pickle=cfg.allow_legacy_pickle, device=str(device))
    vectors = tokenizer.codebook_vectors().to(device)
    if vectors.shape[1] != codebook.shape[1]:
        raise SeitError(
            f"the tokenizer makes {vectors.shape[1]}-dim codes, the classifier reads {codebook.shape[1]}-dim ones: "
            "was it trained on tokens of this tokenizer?"
        )
    if meta.code_ids is not None:
        lookup = code_lookup(torch.as_tensor(meta.code_ids), vectors).to(device)
    else:  # no record of which tokenizer codes the rows are (SeiT's checkpoints): the nearest row, as SeiT does
        lookup = nearest_codes(vectors, codebook)
    listing = list_images(cfg.images)
    # without class names (SeiT's checkpoints), class i is the i-th sorted folder, as torchvision's ImageFolder
    names = meta.class_names or [*listing.classes, *map(str, range(len(listing.classes), meta.num_classes))]
    if len(names) > meta.num_classes:
        raise SeitError(f"{cfg.images}: {len(names)} classes, more than the classifier's {meta.num_classes}")
    unknown = sorted(set(listing.classes) - set(names))
    if unknown:
        raise SeitError(f"{cfg.images}: classes {unknown[:5]} are not among the classifier's {len(names)} classes")
    remap = torch.tensor([names.index(c) for c in listing.classes] or [0], device=device)
    pipe = _TokenEval(None, codebook, meta.grid_size, names, cfg.batch_size, cfg.num_workers, device)
    acc = Accumulator(len(names), device)
    job = encode_images(
        tokenizer,
        listing.samples,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        device=device,
        rank=info.rank,
        world_size=info.world_size,
        resize=cfg.resize,
    )
    for ids, labels, _keys in job:
        ids = lookup[torch.as_tensor(ids, device=device).long()]
        acc.add(model(pipe.eval_batch(ids)), remap[torch.as_tensor(labels, device=device)])
    if job.skipped and info.is_main:
        log.warning(summarize_skips(job.skipped, len(listing.samples)))
    return acc.result(names)
