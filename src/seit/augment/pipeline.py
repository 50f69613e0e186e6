"""``TokenAugment``: DataLoader batches of ids -> model inputs and soft targets, on the training device.

Workers ship only the id grids (int16, 2 KB per 32x32 sample); everything else runs here, batched, with
per-sample randomness from one ``torch.Generator``:

  train: Token-EDA on ids (synonym replacement | patch swap | nothing) -> codebook lookup -> random
         resized crop to m x m (bicubic, computed on embeddings) -> ColorAdapt | Emb-Noise | nothing
         -> Mixup/CutMix with label smoothing
  eval:  centre crop to m x m -> codebook lookup

This is SeiT's order (token_transform.py, datasets.py, engine_seit.py), except that a sample's partner (for
ColorAdapt and Mixup/CutMix) is its neighbour i ^ 1 rather than B-1-i. For multi-process training seed every
rank alike and pass each its ``BatchSlice`` of the global batch: the draws are made for the global batch and
each rank keeps its rows, so the result does not depend on the number of processes (and ranks never share a
draw). Save ``state_dict()`` with the checkpoint to resume the same stream.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from seit.augment.color import color_adapt, emb_noise
from seit.augment.config import AugmentConfig, AugmentError, BatchSlice
from seit.augment.crop import center_box, resized_crop, sample_train_crops
from seit.augment.eda import replace_synonyms, sample_swaps, sample_synonyms, swap_patches
from seit.augment.mix import SoftTargets, partners
from seit.augment.tables import synonyms_from_codebook

_SEED_RANGE = 2**31 - 1


def _tensor(value, name: str) -> torch.Tensor:
    """A torch tensor from a tensor or numpy array; anything else is refused in one line naming ``name``."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if not torch.is_tensor(value):
        raise AugmentError(f"{name} must be a torch tensor or numpy array, got {type(value).__name__}")
    return value


class TokenAugment:
    """SeiT's token augmentation for whole batches on the training device.

    ``codebook`` [K, D] float; ``synonyms`` [K, n] int (SeiT's ``synonyms.json`` via
    ``seit.interop.seit_release.read_synonyms``; if None and synonym replacement is on, computed from the
    codebook by cosine similarity, as SeiT built it). Both as torch tensors or numpy arrays (what a store's
    ``codebook`` / ``synonyms`` are).
    """

    def __init__(
        self,
        config: AugmentConfig,
        codebook: torch.Tensor | np.ndarray,
        synonyms: torch.Tensor | np.ndarray | None = None,
        *,
        num_classes: int,
        device: str | torch.device | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        codebook = _tensor(codebook, "codebook")
        synonyms = None if synonyms is None else _tensor(synonyms, "synonyms")
        if codebook.ndim != 2 or not codebook.is_floating_point():
            raise AugmentError(f"codebook must be float [num_codes, dim], got {codebook.dtype} {tuple(codebook.shape)}")
        if num_classes < 0:
            raise AugmentError(f"num_classes must be >= 0 (0: unlabelled data, train_inputs only), got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.device = torch.device(device) if device is not None else codebook.device
        self.codebook = codebook.detach().float().to(self.device)
        if synonyms is None and config.synonym_prob > 0:
            synonyms = synonyms_from_codebook(self.codebook, config.synonym_topk)
        if synonyms is not None and (synonyms.ndim != 2 or synonyms.is_floating_point()):
            raise AugmentError(f"synonyms must be int [num_codes, n], got {synonyms.dtype} {tuple(synonyms.shape)}")
        if synonyms is not None and synonyms.shape[0] != self.num_codes:
            raise AugmentError(f"synonym table has {synonyms.shape[0]} rows but the codebook {self.num_codes} codes")
        self.synonyms = None if synonyms is None else synonyms[:, : config.synonym_topk].long().to(self.device)
        self.targets = SoftTargets(config, num_classes)
        if generator is None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        if generator.device.type != self.device.type:
            raise AugmentError(f"generator is on {generator.device}, augmentation runs on {self.device}")
        self.generator = generator

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    def crop_side(self, height: int, width: int) -> int:
        """Side m of the model input for this grid (``img_size`` of the model)."""
        return self.config.crop_side(height, width)

    @torch.no_grad()
    def train(
        self, ids: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, part: BatchSlice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B, H, W] (int16/int64), labels [B] -> (x [B, D, m, m] float32, soft targets [B, C]).

        Tensors or numpy arrays (``TokenStore.get_batch``). ``x`` is in channels_last memory format (what the
        crop produces; convolutions take it as is). ``part``: where the batch sits in the step's global batch
        (default: it is the whole batch); every draw is made for the global batch and this batch's rows kept.
        """
        labels = _tensor(labels, "labels").to(self.device, non_blocking=True).long()
        part = part or BatchSlice.whole(len(labels))
        x, mix_seed = self._augment(ids, labels, part)
        return self.targets(x, labels, mix_seed, part)

    @torch.no_grad()
    def train_inputs(self, ids: torch.Tensor | np.ndarray, part: BatchSlice | None = None) -> torch.Tensor:
        """ids [B, H, W] -> x [B, D, m, m] as :meth:`train` augments them (the same draws), without labels or
        mixing: what self-supervised pre-training reads from unlabelled data."""
        if self.targets.mixup is not None:
            raise AugmentError("Mixup/CutMix mix labels too: unlabelled data trains with --mixup 0 --cutmix 0")
        return self._augment(ids, None, part or BatchSlice.whole(len(ids)))[0]

    def _augment(
        self, ids: torch.Tensor | np.ndarray, labels: torch.Tensor | None, part: BatchSlice
    ) -> tuple[torch.Tensor, int]:
        """Token-EDA, crop and colour of :meth:`train` (checking ``labels`` if given) -> (x [B, D, m, m], the
        seed of this batch's mixing draw)."""
        cfg, gen = self.config, self.generator
        ids = self._ids(ids)
        batch, height, width = ids.shape
        if part.size != batch:
            raise AugmentError(f"batch of {batch} samples given as rows {part.start}:{part.stop} of the global batch")
        side = self.crop_side(height, width)
        mine = slice(part.start, part.stop)

        # per-sample choices: Token-EDA (synonyms | swap | none) and colour (ColorAdapt | noise | none)
        mix_seed = torch.randint(0, _SEED_RANGE, (1,), generator=gen, device=self.device)[0]
        u, v = torch.rand(2, part.total, generator=gen, device=self.device)
        synonym, swap = u < cfg.synonym_prob, (u >= cfg.synonym_prob) & (u < cfg.synonym_prob + cfg.swap_prob)
        noise = v < cfg.noise_prob
        adapt = (v >= cfg.noise_prob) & (v < cfg.noise_prob + cfg.color_adapt_prob)
        stats = [ids.min(), ids.max(), mix_seed]
        stats += [m.sum() for m in (synonym, swap, noise)] + [m[mine].sum() for m in (synonym, swap, noise, adapt)]
        stats += [] if labels is None else [labels.min(), labels.max()]
        lo, hi, mix_seed, *counts = torch.stack(stats).tolist()  # one sync
        all_syn, all_swap, all_noise, n_syn, n_swap, n_noise, n_adapt, *label_range = counts
        self._check_range(lo, hi)
        if labels is not None and (
            labels.shape != (batch,) or label_range[0] < 0 or label_range[1] >= self.num_classes
        ):
            lab_lo, lab_hi = label_range
            raise AugmentError(
                f"labels must be [B] class ids in [0, {self.num_classes}), got shape {tuple(labels.shape)} "
                f"with range {lab_lo}..{lab_hi}: the training data has labels outside its own classes (check the label "
                "file, or a store with `seit store verify`)"
            )

        # a draw of the global batch's selected samples is made whenever any is selected (on every rank alike)
        if all_syn:
            topk = self.synonyms.shape[1]
            picks = sample_synonyms(all_syn, height, width, topk, cfg.synonym_token_prob, gen, self.device)
            if n_syn:
                rows, drawn = _rows_and_draws(synonym, mine, n_syn)
                ids = ids.index_copy(0, rows, replace_synonyms(ids[rows], self.synonyms, picks[drawn]))
        if all_swap:
            swaps = sample_swaps(all_swap, height, width, cfg.swap_scale, gen, self.device)
            if n_swap:
                rows, drawn = _rows_and_draws(swap, mine, n_swap)
                ids = ids.index_copy(0, rows, swap_patches(ids[rows], swaps[drawn]))

        boxes, flip = sample_train_crops(cfg, part.total, height, width, gen, self.device)
        x = resized_crop(ids, self.codebook, boxes[mine], side, None if flip is None else flip[mine])  # [B, m, m, D]

        if n_adapt:  # before the noise, so a partner's statistics are un-noised
            rows = _rows(adapt[mine], n_adapt)
            x.index_copy_(0, rows, color_adapt(x[rows], x[partners(part, self.device)[rows]]))
        if all_noise:
            offsets = emb_noise((all_noise, *x.shape[1:]), cfg.noise_scale, cfg.noise_std, gen)
            if n_noise:
                rows, drawn = _rows_and_draws(noise, mine, n_noise)
                x.index_add_(0, rows, offsets[drawn])
        return x.permute(0, 3, 1, 2), int(mix_seed)

    @torch.no_grad()
    def eval(self, ids: torch.Tensor | np.ndarray) -> torch.Tensor:
        """ids [B, H, W] -> centre-cropped embeddings [B, D, m, m] (deterministic, SeiT's ``CC``)."""
        ids = self._ids(ids)
        self._check_range(*torch.stack([ids.min(), ids.max()]).tolist())
        _, height, width = ids.shape
        side = self.crop_side(height, width)
        top, left = center_box(height, width, side)
        crop = ids[:, top : top + side, left : left + side]
        return F.embedding(crop, self.codebook).permute(0, 3, 1, 2)

    def state_dict(self) -> dict[str, object]:
        """The generator state (a uint8 tensor, loadable with weights_only=True) for checkpoints."""
        return {"generator": self.generator.get_state(), "device_type": self.device.type}

    def load_state_dict(self, state: dict[str, object]) -> None:
        saved = state["generator"]
        if state.get("device_type") == self.device.type:
            self.generator.set_state(saved)
            return
        # CPU and CUDA generators keep different state formats: continue from a seed derived from the saved one
        seed = int.from_bytes(hashlib.sha256(bytes(saved.tolist())).digest()[:8], "little") % _SEED_RANGE
        warnings.warn(
            f"augmentation RNG state was saved on {state.get('device_type')} and is resumed on {self.device.type}: "
            "the random stream continues from a derived seed, not bit-identically",
            stacklevel=2,
        )
        self.generator.manual_seed(seed)

    def _ids(self, ids: torch.Tensor | np.ndarray) -> torch.Tensor:
        ids = _tensor(ids, "ids")
        if ids.ndim != 3 or ids.is_floating_point() or ids.is_complex():
            raise AugmentError(f"expected integer token ids [B, H, W], got {ids.dtype} of shape {tuple(ids.shape)}")
        return ids.to(self.device, non_blocking=True).long()

    def _check_range(self, lo: int, hi: int) -> None:
        if lo < 0 or hi >= self.num_codes:
            raise AugmentError(
                f"token ids range {lo}..{hi} but the codebook has {self.num_codes} codes; the token store and the "
                "codebook do not belong together (check --codebook)"
            )


def _rows_and_draws(selected: torch.Tensor, mine: slice, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This part's ``count`` selected rows, and their indices among the global batch's selected samples
    (the rows of a draw made for those)."""
    rows = _rows(selected[mine], count)
    return rows, (torch.cumsum(selected, 0) - 1)[mine][rows]


def _rows(mask: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` True entries of ``mask``, without another device sync."""
    return torch.argsort((~mask).to(torch.uint8), stable=True)[:count]
