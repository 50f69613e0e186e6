"""Loading and saving weights without unpickling untrusted code.

Our own model weights are safetensors; training checkpoints are ``torch.save`` dicts of tensors and
plain values, read back with ``weights_only=True``. Foreign pickles (SeiT's released modules) go through
:mod:`seit.interop.legacy` and only with an explicit opt-in.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from seit.errors import SeitError
from seit.utils.io import atomic_open, atomic_write_bytes


class CheckpointError(SeitError):
    """A checkpoint file that cannot be read as asked; the message names the file and the fix."""


def check_torch_archive(path: str | os.PathLike) -> None:
    """Refuse a torch zip whose members unpack to more than the file: ``torch.save`` stores them
    uncompressed, and torch would inflate a deflated member (a zip bomb) in memory before any check."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"{path}: a damaged zip archive ({e}); re-download it") from None
    if unpacked > path.stat().st_size:
        raise CheckpointError(
            f"{path}: its members unpack to {unpacked} bytes, more than the {path.stat().st_size} of the file; "
            "torch.save stores them uncompressed, so this is not a checkpoint torch wrote (a zip bomb?)"
        )


# What to do about a pickle that needs code, where the command has the flag for it (the tokenizer commands).
LEGACY_PICKLE_HINT = (
    "If this is SeiT's released pickled tokenizer module and you trust its source, load it with "
    "--allow-legacy-pickle (seit.interop.legacy), which admits only an allow-list of known classes."
)


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu", *, code_hint: str = "") -> Any:
    """``torch.load`` with ``weights_only=True``; a damaged file or a pickle needing code is a one-line error.

    ``code_hint`` is what the caller's command offers for a pickle needing code (e.g. :data:`LEGACY_PICKLE_HINT`).
    """
    path = Path(path)
    check_torch_archive(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the content
        text = str(e)
        needs = re.search(r"GLOBAL ([\w.]+)", text)  # a class or function the pickle would import and call
        if needs:
            message = f"{path}: holds pickled objects other than tensors and plain values ({needs.group(1)}), "
            raise CheckpointError(f"{message}which seit does not load (weights_only=True). {code_hint}".rstrip()) from e
        unsupported = re.search(r"Unsupported [^\n]*", text)  # e.g. bytes that are no pickle at all
        if unsupported:
            reason = unsupported.group(0)
        else:
            reason = text.splitlines()[0].split(". ")[0] if text else f"{type(e).__name__}: it ends early"
        raise CheckpointError(f"{path}: damaged or not a torch.save file ({reason})") from e


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_open(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as e:
            # torch's zip writer turns a failed write (a full disk) into "unexpected pos": raise the OSError
            if isinstance(e.__context__, OSError) and e.__context__.errno is not None:
                raise e.__context__ from None
            raise


def save_weights(
    state_dict: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Save a state dict as safetensors, atomically (tensors made contiguous and unshared)."""
    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))


def load_weights(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    return read_safetensors(path, device)[0]


def read_safetensors(path: str | os.PathLike, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and metadata in one read; any failure is one CheckpointError naming it."""
    try:
        with safetensors.safe_open(str(path), framework="pt", device=device) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    return tensors, metadata
