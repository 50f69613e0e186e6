"""SeiT's released ``tokenizer.ckpt``: a pickled enhancing-transformers module, read without its code.

SeiT loads it with a bare ``torch.load`` after putting enhancing-transformers on ``sys.path``, which runs
whatever the pickle names. Here the pickle goes through an unpickler that admits an allow-list of class
paths only: the tokenizer's module classes (and the loss modules a Lightning module carries along) become
inert records of their pickled state, tensors are rebuilt by torch's own rebuild functions, and anything
else stops the load with an error naming the refused class, before any of it runs. The tensors are then
collected from the records' ``_parameters`` / ``_buffers`` into an ordinary state dict.

Use only with an explicit opt-in (``allow_legacy_pickle=True``, CLI ``--allow-legacy-pickle``).
"""

from __future__ import annotations

import collections
import os
import pickle
import types
from pathlib import Path
from typing import Any

import torch

from seit.utils.serialization import CheckpointError, check_torch_archive

# Class (and function) paths that appear inside pickled enhancing-transformers modules. They are never
# imported: each becomes an inert class that only stores the state it is given.
INERT_PATHS: dict[str, tuple[str, ...]] = {
    "enhancing.modules.stage1.vitvqgan": ("ViTVQ",),
    "enhancing.modules.stage1.layers": (
        "ViTEncoder",
        "ViTDecoder",
        "Transformer",
        "PreNorm",
        "Attention",
        "FeedForward",
    ),
    "enhancing.modules.stage1.quantizers": ("VectorQuantizer", "BaseQuantizer"),
    "enhancing.losses.vqperceptual": ("VQLPIPS", "VQLPIPSWithDiscriminator", "DummyLoss"),
    "enhancing.losses.layers": (
        "PatchDiscriminator",
        "StyleDiscriminator",
        "StyleBlock",
        "EqualConv2d",
        "EqualLinear",
        "Blur",
        "ActNorm",
        "hinge_d_loss",
        "vanilla_d_loss",
        "least_square_d_loss",
    ),
    "lpips.lpips": ("LPIPS", "ScalingLayer", "NetLinLayer"),
    "lpips.pretrained_networks": ("vgg16",),
    "torchvision.models.vgg": ("VGG",),
    "einops.layers.torch": ("Rearrange",),
    "pytorch_lightning.utilities.parsing": ("AttributeDict",),
    "functools": ("partial",),
    "torch.nn.functional": ("normalize",),
    "torch.nn.modules.module": ("Module",),
    "torch.nn.modules.linear": ("Linear", "Identity"),
    "torch.nn.modules.conv": ("Conv2d", "ConvTranspose2d"),
    "torch.nn.modules.normalization": ("LayerNorm", "GroupNorm"),
    "torch.nn.modules.sparse": ("Embedding",),
    "torch.nn.modules.container": ("Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"),
    "torch.nn.modules.activation": ("Softmax", "Tanh", "GELU", "ReLU", "LeakyReLU", "SiLU", "Sigmoid"),
    "torch.nn.modules.dropout": ("Dropout",),
    "torch.nn.modules.batchnorm": ("BatchNorm2d",),
    "torch.nn.modules.pooling": ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"),
}


class Inert:
    """Stands in for an allowed class: keeps constructor arguments and pickled state, has no behaviour."""

    path = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state[0] if isinstance(state, tuple) and len(state) == 2 else state

    def __repr__(self) -> str:
        return f"<inert {self.path}>"


_INERT: dict[tuple[str, str], type[Inert]] = {
    (module, name): type(name, (Inert,), {"path": f"{module}.{name}", "__module__": __name__})
    for module, names in INERT_PATHS.items()
    for name in names
}


def _reconstructor(cls: type, base: type, state: Any) -> Inert:
    """``copyreg._reconstructor`` (protocol 0/1 objects) restricted to the inert classes."""
    if not (isinstance(cls, type) and issubclass(cls, Inert)):
        raise pickle.UnpicklingError(f"copyreg._reconstructor called on {cls!r}")
    return cls.__new__(cls)


# Real objects the pickle may name: containers, and torch's tensor-rebuild functions (those that torch's
# own weights_only unpickler admits).
_REAL: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch", "Tensor"): torch.Tensor,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
}


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


# Python 2 module names that protocol-2 pickles use (the base find_class would map them itself).
_PY2_NAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_NAMES.get(module, module)
        if (module, name) in _INERT:
            return _INERT[module, name]
        if (module, name) in _REAL:
            return _REAL[module, name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise RefusedGlobal(f"{module}.{name}")


def _restricted_load(f: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(f, **kwargs).load()


# What torch.load expects of a pickle module.
RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="seit.interop.legacy", Unpickler=RestrictedUnpickler, load=_restricted_load
)


def load_legacy_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a torch file through the allow-list; module objects come back as :class:`Inert` records."""
    path = Path(path)
    check_torch_archive(path)
    try:
        return torch.load(path, map_location="cpu", pickle_module=RESTRICTED_PICKLE, weights_only=False)
    except RefusedGlobal as e:
        raise CheckpointError(
            f"{path}: refused to unpickle {e.path}: it is not on the allow-list of classes found in SeiT / "
            "enhancing-transformers tokenizer pickles, so nothing in the file was run and it was not loaded. "
            "If you trust the file, load it with the code that wrote it, save its state_dict() with torch.save, "
            "and use that instead."
        ) from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable torch pickle ({type(e).__name__}: {e})") from e


def module_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The persistent parameters and buffers of an inert module record, keyed like ``state_dict()``.

    A dict (e.g. ``{"model": module}``) is searched for the first module record or tensor entries.
    """
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
        for value in obj.values():
            found = module_state_dict(value)
            if found:
                return found
        return {}
    out: dict[str, torch.Tensor] = {}
    _collect(obj, "", out)
    return out


def _collect(record: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = getattr(record, "state", None)
    if not isinstance(state, dict):
        return
    hidden = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if isinstance(tensor, torch.Tensor) and name not in hidden:
                out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        _collect(child, f"{prefix}{name}.", out)


def root_class_path(obj: Any) -> str:
    return obj.path if isinstance(obj, Inert) else type(obj).__name__
