"""The classifier file: one format, one writer (:func:`save_classifier`), one reader (:func:`load_classifier`).

A token classifier is only usable together with its codebook (ids -> vectors) and its input geometry (token
crop size, the grid it was trained on), and, to classify images, with the tokenizer ids its codebook rows
came from (after pruning). All of it travels in one safetensors file, no pickle:

- tensors ``model.<state dict key>`` (timm names) and ``codebook`` (float [K, D]; absent for pixel models);
- metadata ``format`` = ``seit.classifier/2`` and ``seit.classifier`` = :class:`ClassifierMeta` as JSON.

:func:`load_classifier` also reads every other classifier file a user may hold: a ``seit train`` run folder
(the file its ``best.json`` names), its ``last.pt``, the two older layouts of seit's own files
(``seit.classifier`` metadata without ``format``; ``seit.classifier/1`` from ``save_model``), and foreign
checkpoints, SeiT's (``trained-vit.ckpt``, ``checkpoint.pth``) or a bare state dict in safetensors, through
``seit.interop.seit_checkpoints.checkpoint_filter_fn`` (their architecture inferred from the shapes).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from seit.errors import SeitError
from seit.utils.serialization import CheckpointError, read_safetensors, safe_torch_load, save_weights

FORMAT = "seit.classifier/2"
_OLD_FORMAT = "seit.classifier/1"  # save_model's: architecture in metadata "config", no codebook, no "model." prefix
MODEL_FILE, EMA_FILE = "model.safetensors", "model_ema.safetensors"
BEST_FILE = "best.json"  # in a run folder: which of the two classifiers to use, and why


@dataclass
class ClassifierMeta:
    model: str
    num_classes: int
    input: str = "tokens"  # "tokens" (ids -> codebook vectors) or "pixels"
    grid_size: int = 28  # token crop (or pixel crop) side the model sees
    train_grid: tuple[int, ...] | None = None  # token grid of the training store (eval center-crops it)
    in_chans: int = 32
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # size overrides of the named architecture
    class_names: list[str] = field(default_factory=list)
    code_ids: list[int] | None = None  # tokenizer id of each codebook row, when the codebook was pruned
    train_config: dict[str, Any] = field(default_factory=dict)

    def create_model(self) -> nn.Module:
        import timm

        import seit.models  # noqa: F401  (registers the token ViTs with timm)

        return timm.create_model(
            self.model,
            num_classes=self.num_classes,
            img_size=self.grid_size,
            in_chans=self.in_chans,
            **self.model_kwargs,
        )


class Classifier(NamedTuple):
    """What :func:`load_classifier` returns: the timm model (eval mode), its codebook (None: pixels or not
    known) and its metadata."""

    model: nn.Module
    codebook: torch.Tensor | None
    meta: ClassifierMeta


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_classifier(path: str | Path, model: nn.Module, meta: ClassifierMeta, codebook: torch.Tensor | None) -> None:
    """Write the classifier file (atomically)."""
    tensors = {f"model.{k}": v for k, v in unwrap(model).state_dict().items()}
    if codebook is not None:
        tensors["codebook"] = codebook.float()
    save_weights(tensors, path, metadata={"format": FORMAT, "seit.classifier": json.dumps(asdict(meta))})


def load_classifier(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    codebook: str | os.PathLike | torch.Tensor | None = None,
    model_name: str | None = None,
    **model_kwargs: Any,
) -> Classifier:
    """Any classifier file seit writes or SeiT released, as ``(model, codebook, meta)``.

    ``codebook``: the codebook for a file that holds none (SeiT's checkpoints: ``codebook.ckpt`` or a tensor).
    ``model_name`` / ``model_kwargs`` (e.g. ``num_heads``, ``img_size``): the architecture of a checkpoint
    whose shapes do not tell it all; seit's own files record theirs, so these are refused for them.
    """
    path = Path(path)
    if path.is_dir():
        path = best_classifier(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such classifier file")
    read = _read_safetensors if path.suffix == ".safetensors" else _read_torch_checkpoint
    state, own_codebook, meta = read(path)
    if meta is None:  # a foreign checkpoint: SeiT's, or a bare state dict
        state, meta = _foreign(path, state, model_name, model_kwargs)
    else:
        _check_agrees(path, meta, model_name, model_kwargs)
    model = meta.create_model()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = [line.strip() for line in str(e).splitlines() if line.strip()][-1][:300]  # the first is a header
        raise CheckpointError(f"{path}: weights do not fit {meta.model} ({meta.model_kwargs}): {detail}") from e
    if codebook is not None:
        own_codebook = _codebook(codebook)
    if own_codebook is not None and meta.input == "tokens" and own_codebook.shape[1] != meta.in_chans:
        raise CheckpointError(
            f"{path}: the classifier reads {meta.in_chans}-dim codes, the codebook has {own_codebook.shape[1]}-dim rows"
        )
    return Classifier(model.to(device).eval(), None if own_codebook is None else own_codebook.to(device), meta)


def _check_agrees(path: Path, meta: ClassifierMeta, model_name: str | None, model_kwargs: dict[str, Any]) -> None:
    """A file that records its architecture takes no other: a given name or size must be the recorded one."""
    recorded = {"img_size": meta.grid_size, "in_chans": meta.in_chans, "num_classes": meta.num_classes}
    recorded.update(meta.model_kwargs)
    if model_name is not None and model_name != meta.model:
        raise CheckpointError(f"{path}: is a {meta.model}, not a {model_name} (it records its own architecture)")
    for key, value in model_kwargs.items():
        if recorded.get(key) != value:
            raise CheckpointError(f"{path}: records {key} {recorded.get(key)}, not {value}")


def _codebook(source: str | os.PathLike | torch.Tensor) -> torch.Tensor:
    if torch.is_tensor(source):
        return source.detach().float()
    from seit.interop.seit_release import read_codebook

    return torch.from_numpy(read_codebook(source))


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, ClassifierMeta | None]:
    """(state, codebook, meta) of a classifier file; (tensors, None, None) for a bare state dict."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") == _OLD_FORMAT:  # save_model's layout (seit < 0.2)
        config = json.loads(metadata["config"])
        meta = ClassifierMeta(
            model=config.pop("architecture"),
            num_classes=config.pop("num_classes"),
            input="pixels" if config["in_chans"] == 3 else "tokens",
            grid_size=config.pop("img_size")[0],
            in_chans=config.pop("in_chans"),
            model_kwargs=config,
        )
        return tensors, None, meta
    raw = metadata.get("seit.classifier")
    if raw is None and "format" not in metadata:
        return tensors, None, None
    if raw is None or metadata.get("format", FORMAT) != FORMAT:  # (no tag: seit train before the tag)
        raise CheckpointError(
            f"{path}: not a seit classifier file (format {metadata.get('format')!r}, expected {FORMAT!r}); "
            "seit.models.load_classifier reads seit train's model.safetensors, model_ema.safetensors, last.pt "
            "and SeiT's checkpoints"
        )
    data = json.loads(raw)
    if data.get("train_grid") is not None:
        data["train_grid"] = tuple(data["train_grid"])
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    return state, tensors.get("codebook"), ClassifierMeta(**data)


def _read_torch_checkpoint(path: Path) -> tuple[Any, torch.Tensor | None, ClassifierMeta | None]:
    """seit train's last.pt as (state, codebook, meta); anything else as (the loaded object, None, None)."""
    with torch.serialization.safe_globals([argparse.Namespace]):  # SeiT's training checkpoints hold their args
        obj = safe_torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("classifier"), dict):  # seit train's last.pt
        entry = obj["classifier"]
        meta = json.loads(entry["meta"])
        if meta.get("train_grid") is not None:
            meta["train_grid"] = tuple(meta["train_grid"])
        return obj["model"], entry.get("codebook"), ClassifierMeta(**meta)
    return obj, None, None


def _foreign(
    path: Path, checkpoint: Any, model_name: str | None, model_kwargs: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], ClassifierMeta]:
    """A checkpoint that does not record its architecture: weights through the filter, shapes give the rest."""
    from seit.interop.seit_checkpoints import checkpoint_filter_fn, infer_architecture

    state = checkpoint_filter_fn(checkpoint, name=str(path))
    inferred, args = infer_architecture(state)
    args.update(model_kwargs)
    model_name = model_name or inferred
    if model_name is None or "num_heads" not in args:
        raise CheckpointError(
            f"{path}: width {args['embed_dim']} is not a DeiT size (192/384/768): name the model family and the "
            "head count, e.g. load_classifier(path, model_name='deit_tiny_token_32', num_heads=...)"
        )
    _check_model_name(path, model_name, args["in_chans"], "in_chans" in model_kwargs)
    num_classes, img_size, in_chans = args.pop("num_classes"), args.pop("img_size"), args.pop("in_chans")
    meta = ClassifierMeta(
        model=model_name,
        num_classes=num_classes,
        input="pixels" if "_pixel_" in model_name else "tokens",
        grid_size=img_size,
        in_chans=in_chans,
        model_kwargs=args,
    )
    return state, meta


def _check_model_name(path: Path, model_name: str, in_chans: int, chans_given: bool) -> None:
    import timm

    import seit.models

    if not timm.is_model(model_name):
        raise CheckpointError(f"{model_name}: unknown model; token models: {', '.join(seit.models.TOKEN_MODELS)}")
    channels = timm.models.get_pretrained_cfg(model_name).input_size[0]
    if not chans_given and in_chans != channels:
        raise CheckpointError(
            f"{path}: holds a stem for {in_chans} input channels but {model_name} takes {channels}; leave the "
            f"model name out to infer it, or name the matching *_{in_chans} model"
        )


def classifier_entry(meta: ClassifierMeta, codebook: torch.Tensor | None) -> dict[str, Any]:
    """What ``last.pt`` carries besides the training state, so it is a classifier file too (plain values)."""
    return {"meta": json.dumps(asdict(meta)), "codebook": None if codebook is None else codebook.float().cpu()}


def write_best(run: str | Path, weights: str, chosen_by: str, **figures: Any) -> Path:
    """Record in ``run/best.json`` which weights ("model" or "ema") a run hands on; returns that file."""
    from seit.utils.io import atomic_write_json

    name = EMA_FILE if weights == "ema" else MODEL_FILE
    atomic_write_json(Path(run) / BEST_FILE, {"file": name, "weights": weights, "chosen_by": chosen_by, **figures})
    return Path(run) / name


def best_classifier(run: str | Path) -> Path:
    """The classifier file a training run's ``best.json`` names (only ever one of the run's own two files)."""
    pointer = Path(run) / BEST_FILE
    fix = f"give the classifier file instead ({Path(run) / MODEL_FILE} or {EMA_FILE})"
    try:
        name = json.loads(pointer.read_text())["file"]
    except FileNotFoundError:
        raise SeitError(f"{run}: a folder without {BEST_FILE} (not a finished seit train run); {fix}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SeitError(f"{pointer}: unreadable ({e}); {fix}") from None
    if name not in (MODEL_FILE, EMA_FILE):
        raise SeitError(f"{pointer}: names {name!r}, not {MODEL_FILE} or {EMA_FILE}; {fix}")
    return Path(run) / name
