"""What the training loop trains on: token ids (the method) or pixels (the baseline), behind one interface.

DataLoader workers only fetch and decode: ids (2 bytes a token) for tokens, uint8 crops for pixels. Everything
random and float happens on the training device in batches (``train_batch``), seeded by the loop per step.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from seit.augment.config import BatchSlice
from seit.engine.config import TrainConfig
from seit.engine.pixels import normalise
from seit.errors import SeitError
from seit.models.checkpoint import ClassifierMeta
from seit.runtime import ignore_stop_signals
from seit.utils.dist import DistInfo

log = logging.getLogger(__name__)


class _Pipeline:
    """Shared data plumbing: elastic sampling of a map-style dataset over ranks and workers."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, device: torch.device) -> None:
        self.cfg, self.info, self.device = cfg, info, device
        self.train_set = self.val_set = None
        self.step_seed = 0
        batch = cfg.optim.batch_size  # the loader's full batches: rank r holds rows r*B:(r+1)*B of each global batch
        self.part = BatchSlice(info.rank * batch, batch, batch * info.world_size)

    def reseed(self, seed: int) -> None:
        """Seed this step's device-side randomness (the loop calls it with a seed of (seed, step), alike on
        every rank: each draws for the global batch and keeps its rows, ``self.part``)."""
        self.step_seed = seed % (1 << 31)

    def part_of(self, batch: int) -> BatchSlice:
        """Where a training batch of ``batch`` samples sits in the global batch: the loader's full batches are
        this rank's rows; any other batch (a probe, a test) stands alone."""
        return self.part if batch == self.part.size else BatchSlice.whole(batch)

    def _sliced(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` with its drop-path draws made per global batch (see :func:`slice_drop_paths`)."""
        return slice_drop_paths(model, self.part)

    @property
    def num_train(self) -> int:
        return len(self.train_set)

    @property
    def has_val(self) -> bool:
        return self.val_set is not None

    def steps_per_epoch(self, position: int) -> int:
        return (self.num_train - position) // (self.cfg.optim.batch_size * self.info.world_size)

    cpu_workers = 2  # default DataLoader workers per rank when training on CPU (2 on GPUs)

    @property
    def num_workers(self) -> int:
        """--num-workers, or the pipeline's default for the device."""
        if self.cfg.data.num_workers is not None:
            return self.cfg.data.num_workers
        return self.cpu_workers if self.device.type == "cpu" else 2

    def _loader(self, dataset, sampler, collate_fn=None) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=collate_fn,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=ignore_stop_signals,
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
        )

    def train_loader(self, epoch: int, position: int):
        """This rank's batches of the epoch from global position ``position`` on (elastic, see seit.store)."""
        from seit.store import ElasticBatchSampler

        common = dict(
            seed=self.cfg.run.seed,
            epoch=epoch,
            start=position,
            rank=self.info.rank,
            world_size=self.info.world_size,
            shuffle=self.cfg.data.shuffle,
            drop_last=True,
        )
        if self.cfg.data.streaming:
            from seit.store import TokenStream

            stream = TokenStream(
                self.cfg.data.store, self.cfg.optim.batch_size, verify=self.cfg.data.verify_shards, **common
            )
            workers = self.num_workers
            return DataLoader(
                stream,
                batch_size=None,
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                worker_init_fn=ignore_stop_signals,
                prefetch_factor=4 if workers > 0 else None,
            )
        sampler = ElasticBatchSampler(self.num_train, self.cfg.optim.batch_size, **common)
        return self._loader(self.train_set, sampler, self.collate)

    def eval_loader(self):
        """This rank's unpadded share of the validation set: every sample counted exactly once overall."""
        from seit.store import EvalBatchSampler

        sampler = EvalBatchSampler(
            len(self.val_set), self.cfg.optim.batch_size, rank=self.info.rank, world_size=self.info.world_size
        )
        return self._loader(self.val_set, sampler, self.collate)

    collate = None
    advice: str | None = None  # a warning about the model for this data, logged when training starts


class TokenPipeline(_Pipeline):
    """Ids from a token store (or SeiT's release files) -> device-side token augmentation -> token ViT.

    ``labelled=False`` (self-supervised pre-training): the data need no labels or label file, and batches go
    through :meth:`train_inputs`."""

    # Decoding ids is cheaper in-process than in workers beside the model's threads on CPU (the quick demo's
    # token ViT: 28 s with none, 60 s with 2 workers on 2 cores); so do pixels decoded into memory.
    cpu_workers = 0

    def __init__(self, cfg: TrainConfig, info: DistInfo, device: torch.device, *, labelled: bool = True) -> None:
        super().__init__(cfg, info, device)
        from seit.augment import TokenAugment
        from seit.store import collate

        self.collate = collate
        source = open_token_source(cfg.data, labelled=labelled)
        self.train_set, self.val_set = source.train, source.val
        codebook, synonyms = source.codebook, source.synonyms
        if codebook is None:
            raise SeitError(f"{source.name}: the store holds no codebook; pass --codebook-path codebook.ckpt")
        self.codebook = torch.as_tensor(np.asarray(codebook), dtype=torch.float32)
        if not torch.isfinite(self.codebook).all():
            raise SeitError(
                f"{cfg.data.codebook_path or source.name}: the codebook holds NaN or infinite values; pass the "
                "codebook these tokens were made with (--codebook-path)"
            )
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
        if len(self.train_grid) != 2:
            raise SeitError(f"{source.name}: token ViTs read 2-D token grids, this store holds {self.train_grid}")
        self.augment = TokenAugment(
            cfg.augment, self.codebook, self.synonyms, num_classes=self.num_classes, device=device
        )
        self.grid_size = self.augment.crop_side(*self.train_grid)

    def reseed(self, seed: int) -> None:
        super().reseed(seed)
        self.augment.generator.manual_seed(self.step_seed)

    def create_model(self, timm):
        from seit.models import check_token_patches  # (importing seit.models registers the token ViTs)

        name = self.cfg.model.model
        dim = self.codebook.shape[1]
        self.advice = check_token_patches(name, self.grid_size, self.train_grid)  # raises below 2x2 patches
        m = re.search(r"_token_(\d+)(?:_s1)?$", name)
        if m and int(m.group(1)) != dim and self.info.is_main:
            # the suffix names the released models' code dim; the stem always reads this codebook's
            log.info("%s: its Stem-Adaptor reads %d-dim codes (this codebook), not %s", name, dim, m.group(1))
        model = timm.create_model(
            name,
            num_classes=self.num_classes,
            img_size=self.grid_size,
            in_chans=dim,
            drop_path_rate=self.cfg.model.drop_path,
            **self.cfg.model.size_overrides(),
        )
        return self._sliced(model)

    def train_batch(self, ids: torch.Tensor, labels: torch.Tensor):
        return self.augment.train(ids, labels, self.part_of(len(ids)))

    def train_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """The augmented embeddings of ``train_batch``, labels unread (pre-training)."""
        return self.augment.train_inputs(ids, self.part_of(len(ids)))

    def eval_batch(self, ids: torch.Tensor) -> torch.Tensor:
        return self.augment.eval(ids)

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
            model_kwargs=cfg.model.size_overrides(),
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


def open_token_source(d, *, labelled: bool = True) -> TokenSource:
    """The training (and validation) token data of ``d``; ``labelled=False`` reads no labels (stores may hold none,
    SeiT's release files need no label file) and names the classes only if the store does."""
    from seit.interop import seit_release
    from seit.store import TokenDataset, TokenStore

    if d.streaming and not d.store:
        raise SeitError("--streaming reads a token store (--store URL); SeiT's release files are read whole")
    if d.verify_shards and not d.streaming:
        raise SeitError("--verify-shards is for --streaming; random access checks each shard's sha256 anyway")
    if d.store and d.train_token_file:
        raise SeitError("give either --store or --train-token-file (SeiT's release files), not both")
    if d.val_token_file and d.val_store:
        raise SeitError("give either --val-store or --val-token-file, not both")
    val = None
    if d.val_store:
        val = TokenDataset(d.val_store)
        if d.store and not d.codebook_path:
            _check_same_codebook(TokenStore.open(d.store), TokenStore.open(d.val_store))
    elif d.val_token_file:
        val = seit_release.SeitReleaseDataset(d.val_token_file, labels=_required(d.val_label_file, "--val-label-file"))
    if d.store:
        store = TokenStore.open(d.store)
        codebook = seit_release.read_codebook(d.codebook_path) if d.codebook_path else store.codebook
        size = store.codebook_size
        synonyms = seit_release.read_synonyms(d.token_synonym_dict, size) if d.token_synonym_dict else store.synonyms
        names = store.class_names or (derived_class_names(store.labels, str(d.store)) if labelled else [])
        code_ids = None if store.code_ids is None else store.code_ids.tolist()
        return TokenSource(
            str(d.store), TokenDataset(d.store), val, codebook, synonyms, size, names, tuple(store.grid_shape), code_ids
        )
    if d.train_token_file:
        label_file = _required(d.train_label_file, "--train-label-file") if labelled else None
        train = seit_release.SeitReleaseDataset(d.train_token_file, labels=label_file)
        codebook = seit_release.read_codebook(_required(d.codebook_path, "--codebook-path"))
        size = len(codebook)
        synonyms = seit_release.read_synonyms(d.token_synonym_dict, size) if d.token_synonym_dict else None
        names = derived_class_names(train.labels, d.train_label_file) if labelled else []
        return TokenSource(d.train_token_file, train, val, codebook, synonyms, size, names, train.grid_shape)
    raise SeitError("no training data: pass --store STORE (or SeiT's --train-token-file/--train-label-file)")


def derived_class_names(labels: np.ndarray, source: str) -> list[str]:
    """ "0".."K-1" for data that names no classes, K one more than the largest label present (bounded:
    a stray huge label must not size the classifier head or this list)."""
    from seit.interop.seit_release import MAX_CLASSES

    top = int(labels.max()) if len(labels) else -1
    if top < 0:
        raise SeitError(f"{source}: no sample has a label (all -1); training needs labelled data")
    if top >= MAX_CLASSES:
        raise SeitError(f"{source}: label {top} implies {top + 1} classes, above the limit of {MAX_CLASSES}")
    return [str(i) for i in range(top + 1)]


def _check_same_codebook(train, val) -> None:
    a, b = train.codebook, val.codebook
    if a is not None and b is not None and (a.shape != b.shape or not np.array_equal(a, b)):
        raise SeitError(
            f"{val.files.url}: its codebook differs from the training store's ({train.files.url}): "
            "the ids mean other codes. "
            "Tokenize both splits with the same tokenizer (and the validation split with --codes-from TRAIN)"
        )


def _required(value: str | None, flag: str) -> str:
    if not value:
        raise SeitError(f"SeiT's release files need {flag} too")
    return value


class PixelPipeline(_Pipeline):
    """The baseline: the same ViT on pixels, with the token path's crops, flips, Mixup/CutMix and smoothing.

    Token-EDA, Emb-Noise and ColorAdapt act on token ids and code vectors and have no pixel counterpart here
    (nor does DeiT's RandAugment / Random Erasing): for a like-for-like comparison switch them off on the
    token run (--synonym-prob 0 --swap-prob 0 --noise-prob 0 --color-adapt-prob 0).
    """

    def __init__(self, cfg: TrainConfig, info: DistInfo, device: torch.device) -> None:
        super().__init__(cfg, info, device)
        from seit.augment.mix import SoftTargets
        from seit.engine.pixels import PixelDataset

        d = cfg.data
        if cfg.augment.crop_size is not None:
            raise SeitError(
                "--crop-size is the token crop's side in tokens; the pixel baseline's input side is --image-size"
            )
        self.grid_size = d.image_size
        cache = d.pixel_cache_mb << 20
        self.train_set = PixelDataset(d.images, d.image_size, augment=cfg.augment, cache_bytes=cache)
        self.val_set = PixelDataset(d.val_images, d.image_size, cache_bytes=cache) if d.val_images else None
        self.class_names = self.train_set.class_names
        self.num_classes = len(self.class_names)
        self.targets = SoftTargets(cfg.augment, self.num_classes)  # the same Mixup/CutMix as the token path
        if info.is_main:
            log.info(
                f"pixel baseline: the token path's crops ({cfg.augment.crop}) and flips (p "
                f"{cfg.augment.hflip_prob}), Mixup/CutMix and label smoothing; Token-EDA, Emb-Noise and "
                "ColorAdapt are token-only"
            )

    @property
    def cpu_workers(self) -> int:
        """0 for images decoded into memory (cutting crops in-process is cheaper than workers beside the model's
        threads on CPU, as for tokens), else 2 to decode them."""
        return 0 if self.train_set.cached else 2

    def create_model(self, timm):
        import seit.models  # noqa: F401

        model = timm.create_model(
            self.cfg.model.model,
            num_classes=self.num_classes,
            img_size=self.grid_size,
            drop_path_rate=self.cfg.model.drop_path,
            **self.cfg.model.size_overrides(),
        )
        return self._sliced(model)

    def train_batch(self, images: torch.Tensor, labels: torch.Tensor):
        x = normalise(images, self.device)
        return self.targets(x, labels.to(self.device, non_blocking=True), self.step_seed, self.part_of(len(x)))

    def eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        return normalise(images, self.device)

    def meta(self, cfg: TrainConfig) -> ClassifierMeta:
        return ClassifierMeta(
            model=cfg.model.model,
            num_classes=self.num_classes,
            input="pixels",
            grid_size=self.grid_size,
            in_chans=3,
            model_kwargs=cfg.model.size_overrides(),
            class_names=self.class_names,
            train_config=asdict(cfg),
        )

    def codebook_for_artifact(self) -> None:
        return None


class SlicedDropPath(torch.nn.Module):
    """timm's ``DropPath`` drawing its per-sample keep mask for the whole global batch and keeping this
    process's rows: with every rank seeded alike, sample p of a step is dropped alike on any number of ranks."""

    def __init__(self, drop_prob: float, scale_by_keep: bool, part: BatchSlice) -> None:
        super().__init__()
        self.drop_prob, self.scale_by_keep, self.part = drop_prob, scale_by_keep, part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        part = self.part if self.part.size == x.shape[0] else BatchSlice.whole(x.shape[0])  # as _Pipeline.part_of
        mask = x.new_empty(part.total).bernoulli_(keep)[part.start : part.stop]
        if keep > 0.0 and self.scale_by_keep:
            mask.div_(keep)
        return x * mask.view(-1, *(1,) * (x.ndim - 1))

    def extra_repr(self) -> str:
        part = self.part
        return f"drop_prob={round(self.drop_prob, 3):0.3f}, rows {part.start}:{part.stop} of {part.total}"


def slice_drop_paths(model: torch.nn.Module, part: BatchSlice) -> torch.nn.Module:
    """Replace every timm ``DropPath`` of ``model`` with a :class:`SlicedDropPath` of ``part`` (in place)."""
    from timm.layers import DropPath

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, DropPath):
                setattr(module, child_name, SlicedDropPath(child.drop_prob, child.scale_by_keep, part))
    return model


def build_pipeline(cfg: TrainConfig, info: DistInfo, device: torch.device) -> _Pipeline:
    if cfg.data.images:
        return PixelPipeline(cfg, info, device)
    return TokenPipeline(cfg, info, device)
