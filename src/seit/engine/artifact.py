"""The trained classifier as one safetensors file: weights, the codebook it reads, and what it needs to run.

A token classifier is only usable together with its codebook (ids -> vectors) and its input geometry
(token crop size, the grid it was trained on), and, to classify images, with the tokenizer ids its codebook
rows came from (after pruning). All of it travels in one file, no pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from seit.errors import SeitError
from seit.utils.serialization import load_weights, save_weights


@dataclass
class ClassifierMeta:
    model: str
    num_classes: int
    input: str = "tokens"  # "tokens" (ids -> codebook vectors) or "pixels"
    grid_size: int = 28  # token crop (or pixel crop) side the model sees
    train_grid: tuple[int, ...] | None = None  # token grid of the training store (eval center-crops it)
    in_chans: int = 32
    model_kwargs: dict[str, int] = field(default_factory=dict)  # size overrides of the named architecture
    class_names: list[str] = field(default_factory=list)
    code_ids: list[int] | None = None  # tokenizer id of each codebook row, when the codebook was pruned
    train_config: dict[str, Any] = field(default_factory=dict)

    def create_model(self) -> torch.nn.Module:
        import timm

        import seit.models  # noqa: F401  (registers the token ViTs with timm)

        return timm.create_model(
            self.model,
            num_classes=self.num_classes,
            img_size=self.grid_size,
            in_chans=self.in_chans,
            **self.model_kwargs,
        )


def save_classifier(
    path: str | Path, model: torch.nn.Module, meta: ClassifierMeta, codebook: torch.Tensor | None
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if codebook is not None:
        tensors["codebook"] = codebook.float()
    save_weights(tensors, path, metadata={"seit.classifier": json.dumps(asdict(meta))})


def load_classifier(path: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, codebook or None, meta) from a file written by :func:`save_classifier`."""
    from safetensors import safe_open

    path = Path(path)
    tensors = load_weights(path, device="cpu")
    with safe_open(str(path), "pt") as f:
        raw = (f.metadata() or {}).get("seit.classifier")
    if raw is None:
        raise SeitError(f"{path}: a safetensors file without seit classifier metadata (not written by seit train)")
    data = json.loads(raw)
    if data.get("train_grid") is not None:
        data["train_grid"] = tuple(data["train_grid"])
    meta = ClassifierMeta(**data)
    model = meta.create_model()
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SeitError(f"{path}: weights do not fit {meta.model}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    codebook = tensors.get("codebook")
    return model.to(device).eval(), (codebook.to(device) if codebook is not None else None), meta


def read_classifier_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Classifier weights from any file a user may start from, in timm >= 1.0 names.

    Our ``model.safetensors`` (keys ``model.*``) or any safetensors state dict; our ``last.pt``; SeiT's
    ``checkpoint.pth`` / ``trained-vit.ckpt`` (``{"model": ...}``, timm 0.5.4 names). No pickle of code.
    """
    from seit.interop.seit_checkpoints import convert_seit_state_dict, read_seit_state_dict

    path = Path(path)
    if path.suffix == ".safetensors":
        tensors = load_weights(path)
        if any(k.startswith("model.") for k in tensors):
            return {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        return tensors
    return convert_seit_state_dict(read_seit_state_dict(path))


MODEL_FILE, EMA_FILE = "model.safetensors", "model_ema.safetensors"
BEST_FILE = "best.json"  # in a run folder: which of the two classifiers to use, and why


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
