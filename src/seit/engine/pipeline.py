"""What the training loop trains on: token ids (the method) or pixels (the baseline), behind one interface.

DataLoader workers only fetch and decode: ids (2 bytes a token) for tokens, uint8 crops for pixels. Everything
random and float happens on the training device in batches (``train_batch``), seeded by the loop per step.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from seit.engine.artifact import ClassifierMeta
from seit.engine.config import TrainConfig
from seit.errors import SeitError
from seit.utils.dist import DistInfo

EVAL_CROP_RATIO = 0.875  # SeiT: 28 of 32 tokens; the pixel baseline: 224 of 256 pixels


def default_grid_size(grid: tuple[int, ...]) -> int:
    return max(1, round(EVAL_CROP_RATIO * min(grid)))


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    out = torch.full((labels.numel(), num_classes), off, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)


class _Pipeline:
    """Shared data plumbing: elastic sampling of a map-style dataset over ranks and workers."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, device: torch.device) -> None:
        self.cfg, self.info, self.device = cfg, info, device
        self.train_set = self.val_set = None

    @property
    def num_train(self) -> int:
        return len(self.train_set)

    @property
    def has_val(self) -> bool:
        return self.val_set is not None

    def steps_per_epoch(self, position: int) -> int:
        return (self.num_train - position) // (self.cfg.optim.batch_size * self.info.world_size)

    def _loader(self, dataset, sampler, collate_fn=None) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=collate_fn,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
        )

    def train_loader(self, epoch: int, position: int):
        from seit.store import ElasticBatchSampler

        sampler = ElasticBatchSampler(
            self.num_train,
            self.cfg.optim.batch_size,
            seed=self.cfg.run.seed,
            epoch=epoch,
            start=position,
            rank=self.info.rank,
            world_size=self.info.world_size,
            shuffle=True,
            drop_last=True,
        )
        return self._loader(self.train_set, sampler, self.collate)

    def eval_loader(self):
        """This rank's unpadded share of the validation set: every sample counted exactly once overall."""
        from seit.store import EvalBatchSampler

        sampler = EvalBatchSampler(
            len(self.val_set), self.cfg.optim.batch_size, rank=self.info.rank, world_size=self.info.world_size
        )
        return self._loader(self.val_set, sampler, self.collate)

    collate = None


class TokenPipeline(_Pipeline):
    """Ids from a token store (or SeiT's release files) -> device-side token augmentation -> token ViT."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, device: torch.device) -> None:
        super().__init__(cfg, info, device)
        from seit.augment import TokenAugment
        from seit.store import collate

        self.collate = collate
        source = open_token_source(cfg.data)
        self.train_set, self.val_set = source.train, source.val
        codebook, synonyms = source.codebook, source.synonyms
        if codebook is None:
            raise SeitError(f"{source.name}: the store holds no codebook; pass --codebook-path codebook.ckpt")
        self.codebook = torch.as_tensor(np.asarray(codebook), dtype=torch.float32)
        if self.codebook.shape[0] != source.codebook_size:
            raise SeitError(
                f"codebook has {self.codebook.shape[0]} rows but {source.name} holds ids of a codebook of size "
                f"{source.codebook_size}: pass the codebook these tokens were made with"
            )
        self.synonyms = torch.as_tensor(np.asarray(synonyms), dtype=torch.long) if synonyms is not None else None
        self.class_names = list(source.class_names)
        self.num_classes = len(self.class_names)
        self.code_ids = source.code_ids
        self.train_grid = tuple(source.grid_shape)
        self.grid_size = cfg.model.grid_size or default_grid_size(self.train_grid)
        self.augment = TokenAugment(
            cfg.augment,
            codebook=self.codebook,
            synonyms=self.synonyms,
            num_classes=self.num_classes,
            crop_size=self.grid_size,
            label_smoothing=cfg.augment.smoothing,
        ).to(device)

    def create_model(self, timm):
        import seit.models  # noqa: F401  (registers the token ViTs)

        name = self.cfg.model.model
        dim = self.codebook.shape[1]
        m = re.search(r"_token_(\d+)$", name)
        if m and int(m.group(1)) != dim:
            raise SeitError(
                f"model {name} reads {m.group(1)}-dim codes but the codebook has dim {dim}: "
                f"use {name[: m.start()]}_token_{dim}"
            )
        model = timm.create_model(
            name,
            num_classes=self.num_classes,
            img_size=self.grid_size,
            in_chans=dim,
            drop_path_rate=self.cfg.model.drop_path,
        )
        if self.cfg.model.finetune:
            from seit.models import load_for_finetune

            load_for_finetune(model, self.cfg.model.finetune)
        return model

    def train_batch(self, ids: torch.Tensor, labels: torch.Tensor):
        ids = ids.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        x, targets = self.augment.train(ids, labels)
        if targets.ndim == 1:
            targets = soft_targets(targets, self.num_classes, self.cfg.augment.smoothing)
        return x, targets

    def eval_batch(self, ids: torch.Tensor) -> torch.Tensor:
        return self.augment.eval(ids.to(self.device, non_blocking=True))

    def meta(self, cfg: TrainConfig) -> ClassifierMeta:
        return ClassifierMeta(
            model=cfg.model.model,
            num_classes=self.num_classes,
            input="tokens",
            grid_size=self.grid_size,
            train_grid=self.train_grid,
            in_chans=int(self.codebook.shape[1]),
            class_names=self.class_names,
            code_ids=self.code_ids,
            train_config=asdict(cfg),
        )

    def codebook_for_artifact(self) -> torch.Tensor:
        return self.codebook


@dataclass
class TokenSource:
    """The token data of a run, from a store or from SeiT's release files, described the same way."""

    name: str
    train: Any
    val: Any
    codebook: np.ndarray | None
    synonyms: np.ndarray | None
    codebook_size: int
    class_names: list[str]
    grid_shape: tuple[int, ...]
    code_ids: list[int] | None = None


def open_token_source(d) -> TokenSource:
    from seit.interop import seit_release
    from seit.store import TokenDataset, TokenStore

    if d.store and d.train_token_file:
        raise SeitError("give either --store or --train-token-file (SeiT's release files), not both")
    if d.val_token_file and d.val_store:
        raise SeitError("give either --val-store or --val-token-file, not both")
    val = None
    if d.val_store:
        val = TokenDataset(d.val_store)
    elif d.val_token_file:
        val = seit_release.SeitReleaseDataset(d.val_token_file, labels=_required(d.val_label_file, "--val-label-file"))
    if d.store:
        store = TokenStore.open(d.store)
        codebook = seit_release.read_codebook(d.codebook_path) if d.codebook_path else store.codebook
        size = store.codebook_size
        synonyms = seit_release.read_synonyms(d.token_synonym_dict, size) if d.token_synonym_dict else store.synonyms
        names = list(store.class_names) or [str(i) for i in range(int(store.labels.max()) + 1)]
        code_ids = None if store.code_ids is None else store.code_ids.tolist()
        return TokenSource(
            str(d.store), TokenDataset(d.store), val, codebook, synonyms, size, names, tuple(store.grid_shape), code_ids
        )
    if d.train_token_file:
        train = seit_release.SeitReleaseDataset(
            d.train_token_file, labels=_required(d.train_label_file, "--train-label-file")
        )
        codebook = seit_release.read_codebook(_required(d.codebook_path, "--codebook-path"))
        size = len(codebook)
        synonyms = seit_release.read_synonyms(d.token_synonym_dict, size) if d.token_synonym_dict else None
        names = [str(i) for i in range(int(train.labels.max()) + 1)]
        return TokenSource(d.train_token_file, train, val, codebook, synonyms, size, names, train.grid_shape)
    raise SeitError("no training data: pass --store STORE (or SeiT's --train-token-file/--train-label-file)")


def _required(value: str | None, flag: str) -> str:
    if not value:
        raise SeitError(f"SeiT's release files need {flag} too")
    return value


class PixelPipeline(_Pipeline):
    """The baseline: the same ViT on pixels, with DeiT's image augmentation and the same Mixup/CutMix."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, device: torch.device) -> None:
        super().__init__(cfg, info, device)
        from timm.data import Mixup

        from seit.images import ImageFolderDataset

        d = cfg.data
        size = cfg.data.image_size
        self.grid_size = size
        self.train_set = ImageFolderDataset(d.images, size=size, train=True)
        self.val_set = ImageFolderDataset(d.val_images, size=size, train=False) if d.val_images else None
        self.class_names = self.train_set.class_names
        self.num_classes = len(self.class_names)
        a = cfg.augment
        self.mixup = (
            Mixup(
                mixup_alpha=a.mixup,
                cutmix_alpha=a.cutmix,
                prob=a.mixup_prob,
                switch_prob=a.mixup_switch_prob,
                label_smoothing=cfg.augment.smoothing,
                num_classes=self.num_classes,
            )
            if (a.mixup > 0 or a.cutmix > 0)
            else None
        )
        self.mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255

    def create_model(self, timm):
        import seit.models  # noqa: F401

        return timm.create_model(
            self.cfg.model.model,
            num_classes=self.num_classes,
            img_size=self.grid_size,
            drop_path_rate=self.cfg.model.drop_path,
        )

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.to(self.device, non_blocking=True).float() - self.mean) / self.std

    def train_batch(self, images: torch.Tensor, labels: torch.Tensor):
        x, labels = self._normalise(images), labels.to(self.device, non_blocking=True)
        if self.mixup is not None and len(labels) % 2 == 0:
            return self.mixup(x, labels)
        return x, soft_targets(labels, self.num_classes, self.cfg.augment.smoothing)

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        return self._normalise(images)

    def meta(self, cfg: TrainConfig) -> ClassifierMeta:
        return ClassifierMeta(
            model=cfg.model.model,
            num_classes=self.num_classes,
            input="pixels",
            grid_size=self.grid_size,
            in_chans=3,
            class_names=self.class_names,
            train_config=asdict(cfg),
        )

    def codebook_for_artifact(self) -> None:
        return None


def build_pipeline(cfg: TrainConfig, info: DistInfo, device: torch.device) -> _Pipeline:
    if cfg.data.images:
        return PixelPipeline(cfg, info, device)
    return TokenPipeline(cfg, info, device)
