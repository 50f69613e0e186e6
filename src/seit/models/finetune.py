"""Fitting a checkpoint to a model of another grid size, class count or input, tokens <-> pixels (``--finetune``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from torch import nn

from seit.utils.serialization import CheckpointError


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """Position embeddings [1, prefix + h*w, D] resized to ``new_grid``, prefix (class) tokens unchanged.

    Bicubic, align_corners=False, no antialiasing: what SeiT's and DeiT's fine-tuning scripts do.
    """
    n = pos_embed.shape[1] - num_prefix_tokens
    side = round(n**0.5)
    if side * side != n:
        raise ValueError(f"pos_embed has {n} patch positions, not a square grid")
    return resample_abs_pos_embed(
        pos_embed,
        new_size=list(new_grid),
        old_size=[side, side],
        num_prefix_tokens=num_prefix_tokens,
        interpolation="bicubic",
        antialias=False,
    )


def reset_head(model: nn.Module, num_classes: int, std: float = 0.02) -> None:
    """A fresh classifier for ``num_classes`` (trunc-normal weights, zero bias as timm's ViT init)."""
    model.reset_classifier(num_classes)
    if isinstance(model.head, nn.Linear):
        trunc_normal_(model.head.weight, std=std)
        nn.init.zeros_(model.head.bias)


STEM_KEYS = ("patch_embed.proj.weight", "patch_embed.proj.bias")
HEAD_KEYS = ("head.weight", "head.bias")


@dataclass
class FinetuneLoad:
    """What ``--finetune`` did with each tensor of the model: loaded as saved, resampled to the new patch grid,
    or left at the fresh model's initialisation (stem: timm's ViT init, i.e. PyTorch's default Conv2d init;
    head: trunc-normal weights, zero bias)."""

    carried: list[str]
    resampled: list[str]
    reinitialised: list[str]

    def summary(self) -> str:
        """One line: the carried tensors grouped by module, then the resampled and re-initialised ones."""
        groups: dict[str, int] = {}
        for key in self.carried:
            top = key.split(".")[0]
            groups[top] = groups.get(top, 0) + 1
        carried = ", ".join(f"{top} ({n})" if n > 1 else top for top, n in groups.items())
        return (
            f"carried {len(self.carried)} tensors: {carried or 'none'}; resampled: "
            f"{', '.join(self.resampled) or 'nothing'}; re-initialised: {', '.join(self.reinitialised) or 'nothing'}"
        )


def adapt_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, *, new_stem: bool = False, new_head: bool = False
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A copy of ``state_dict`` that loads into ``model``: returns it and the keys dropped.

    Drops the head (other class count) and the stem (other input channels / kernel) when their shapes
    differ, as SeiT does, or when ``new_head`` / ``new_stem`` say so (other classes; tokens <-> pixels), and
    resamples ``pos_embed`` to the model's patch grid.
    """
    own = model.state_dict()
    out = dict(state_dict)
    dropped = []
    for keys, forced in ((HEAD_KEYS, new_head), (STEM_KEYS, new_stem)):
        for key in keys:
            if key in out and key in own and (forced or out[key].shape != own[key].shape):
                dropped.append(key)
                del out[key]
    if "pos_embed" in out and out["pos_embed"].shape != own["pos_embed"].shape:
        out["pos_embed"] = resample_pos_embed(
            out["pos_embed"], tuple(model.patch_embed.grid_size), model.num_prefix_tokens
        )
    return out, dropped


def load_for_finetune(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, new_stem: bool = False, new_head: bool = False
) -> FinetuneLoad:
    """Load a pretrained ``state_dict`` into ``model`` for fine-tuning; says what was carried, resampled, re-made.

    Anything missing other than the dropped head / stem is an error, so a wrong checkpoint cannot
    silently train from scratch.
    """
    adapted, dropped = adapt_state_dict(state_dict, model, new_stem=new_stem, new_head=new_head)
    try:
        result = model.load_state_dict(adapted, strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint does not fit the model: {str(e).splitlines()[0]}") from e
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if k not in dropped]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not fit the model: missing {missing[:6]}, unexpected {unexpected[:6]} "
            "(is it a classifier of the same family? SeiT checkpoints go through seit.interop.seit_checkpoints)"
        )
    if "head.weight" in dropped:
        reset_head(model, model.num_classes)
    resampled = (
        ["pos_embed"] if "pos_embed" in adapted and adapted["pos_embed"].shape != state_dict["pos_embed"].shape else []
    )
    carried = [k for k in adapted if k not in resampled]
    return FinetuneLoad(carried, resampled, dropped)


def transformer_shape(model: nn.Module) -> tuple[int, int, int] | None:
    """(width, blocks, heads) of a timm ViT; None for anything else."""
    blocks = getattr(model, "blocks", None)
    if getattr(model, "cls_token", None) is None or not blocks or not hasattr(blocks[0], "attn"):
        return None
    return model.embed_dim, len(blocks), blocks[0].attn.num_heads


def finetune_from(model: nn.Module, path: str, class_names: list[str]) -> FinetuneLoad:
    """``--finetune PATH``: any classifier seit reads, into ``model`` (token or pixel ViT) with ``class_names``,
    or a masked-token-modeling model (:func:`load_mtm_encoder`).

    The transformer (blocks, norms, class token) must match in width, depth and heads; the position embedding
    is resampled to the model's grid; the stem is re-made when the input kind changes (tokens <-> pixels)
    and the head when the classes do (another count, or other names in the checkpoint's record).
    """
    from seit.models.checkpoint import load_classifier
    from seit.models.stem import StemAdaptor

    mtm = _mtm_state(path)
    if mtm is not None:
        return load_mtm_encoder(model, mtm)
    source = load_classifier(path)
    have, want = transformer_shape(source.model), transformer_shape(model)
    if have is None:
        raise CheckpointError(
            f"--finetune {path}: not a ViT classifier (no class token or transformer blocks); give a classifier "
            "of `seit train` or SeiT"
        )
    if have != want:
        width, depth, heads = have
        raise CheckpointError(
            f"--finetune {path}: a ViT {width} wide with {depth} blocks and {heads} heads, the model {want[0]} "
            f"wide with {want[1]} and {want[2]}; train at the checkpoint's size: --embed-dim {width} --depth "
            f"{depth} --num-heads {heads}"
        )
    new_stem = isinstance(source.model.patch_embed, StemAdaptor) != isinstance(model.patch_embed, StemAdaptor)
    known = source.meta.class_names
    new_head = bool(known) and list(known) != list(class_names)
    return load_for_finetune(model, source.model.state_dict(), new_stem=new_stem, new_head=new_head)


# What a masked-token-modeling encoder gives a token ViT. The MTM model's stem reads a learned embedding of the
# ids through a kernel-2 convolution, seit's token ViTs read the codebook's vectors through the Stem-Adaptor
# (kernel 4): there is no stem to carry, so the stem and the head start fresh.
MTM_REINITIALISED = ("patch_embed.proj.weight", "patch_embed.proj.bias", "head.weight", "head.bias")


def mtm_encoder_state(mtm_state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The MTM encoder's weights in ``model``'s names: class token, position table (resampled to the model's
    grid), blocks, and the final norm as the norm after the pool (``fc_norm``, where SeiT++'s classifier applies
    it). The decoder, the token embedding, the mask token and the stem are left behind."""
    out = {k: v for k, v in mtm_state.items() if k.startswith("blocks.") or k in ("cls_token", "pos_embed")}
    pooled_norm = "fc_norm" if isinstance(getattr(model, "fc_norm", None), nn.LayerNorm) else "norm"
    out.update({f"{pooled_norm}.{k[5:]}": v for k, v in mtm_state.items() if k.startswith("norm.")})
    own = model.state_dict()
    if "pos_embed" in out and "pos_embed" in own and out["pos_embed"].shape[1] != own["pos_embed"].shape[1]:
        out["pos_embed"] = resample_pos_embed(out["pos_embed"], tuple(model.patch_embed.grid_size))
    return out


def load_mtm_encoder(model: nn.Module, mtm_state: Mapping[str, torch.Tensor]) -> FinetuneLoad:
    """Load an MTM encoder into a token ViT of the same width and depth (stem and head start fresh)."""
    encoder = mtm_encoder_state(mtm_state, model)
    try:
        result = model.load_state_dict(encoder, strict=False)
    except RuntimeError as e:
        detail = [line.strip() for line in str(e).splitlines() if line.strip()][-1][:300]
        raise CheckpointError(
            f"the pre-trained encoder does not fit the model ({detail}): fine-tune a model of the encoder's width, "
            "depth and heads (--embed-dim, --depth, --num-heads)"
        ) from None
    missing = [k for k in result.missing_keys if k not in MTM_REINITIALISED]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"the pre-trained encoder does not fit the model: missing {missing[:6]}, unexpected "
            f"{list(result.unexpected_keys)[:6]}: fine-tune a model of the encoder's depth (--depth)"
        )
    reset_head(model, model.num_classes)
    resampled = (
        ["pos_embed"] if "pos_embed" in encoder and encoder["pos_embed"] is not mtm_state.get("pos_embed") else []
    )
    carried = [k for k in encoder if k not in resampled]
    return FinetuneLoad(carried, resampled, list(MTM_REINITIALISED))


def _mtm_state(path: str) -> dict[str, torch.Tensor] | None:
    """The encoder weights of an MTM model file (`seit pretrain`'s last.pt, SeiT++'s pre-training checkpoint),
    or None when ``path`` is something else (a classifier)."""
    import argparse
    from pathlib import Path

    from seit.interop.seitpp_checkpoints import mtm_checkpoint_filter_fn
    from seit.utils.serialization import safe_torch_load

    file = Path(path)
    if not file.is_file() or file.suffix == ".safetensors":
        return None
    with torch.serialization.safe_globals([argparse.Namespace]):  # SeiT++'s checkpoints hold their args
        obj = safe_torch_load(file)
    if isinstance(obj, Mapping) and (obj.get("kind") == "seit.pretrain" or "mask_token_label" in _weights(obj)):
        return mtm_checkpoint_filter_fn(obj, name=str(file))
    return None


def _weights(obj: Mapping) -> Mapping:
    inner = obj.get("model")
    return inner if isinstance(inner, Mapping) else obj
