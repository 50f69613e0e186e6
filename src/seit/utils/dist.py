"""torch.distributed as torchrun sets it up: one code path for 1 process, 1 node or many nodes."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from seit.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None, timeout_s: int = 1800) -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op for one process).

    NCCL when the process drives a CUDA device, gloo otherwise (CPU runs and CI).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


@contextlib.contextmanager
def process_group(device: str | None = None, timeout_s: int = 1800) -> Iterator[DistInfo]:
    """``init_distributed`` for one job; destroys the group on the way out if this call created it.

    Leaving a gloo/NCCL group alive until interpreter exit lets its threads race the C++ destructors
    (seen as a rank dying with "terminate called without an active exception").
    """
    owns_group = not is_distributed()
    info = init_distributed(device, timeout_s)
    try:
        yield info
    finally:
        if owns_group:
            cleanup()


def is_distributed() -> bool:
    """Whether a process group is up (the collectives below are no-ops without one)."""
    return dist.is_available() and dist.is_initialized()


def current() -> DistInfo:
    if is_distributed():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def wrap_ddp(module: torch.nn.Module | None, device: torch.device) -> torch.nn.Module | None:
    """``module`` under DistributedDataParallel when a process group is up (as is otherwise, or None)."""
    if module is None or not is_distributed():
        return module
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None
    )


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced in place over all ranks (``op``: sum or max); as it is without a process group."""
    if is_distributed():
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (all ranks then take the same branch)."""
    return bool(all_reduce(torch.tensor([float(flag)], device=device), op="max").item())


def mean_over_ranks(metrics: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    """Scalar metrics averaged over all ranks, as floats (one collective for all of them)."""
    names = sorted(metrics)
    values = all_reduce(torch.stack([metrics[k].detach().double().to(device) for k in names]))
    values /= dist.get_world_size() if is_distributed() else 1
    return dict(zip(names, values.tolist()))


def all_gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def resolve_device(name: str | None) -> torch.device:
    """``--device`` as given (None: :func:`default_device`); an unknown name or a missing GPU is a one-line error."""
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(
                f"--device {name}: no CUDA GPU is usable here (torch.cuda.is_available() is False); "
                "use --device cpu or leave --device out"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type != "cpu":
        try:  # mps, xpu, ...: a tiny allocation tells whether this build and machine have it
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError):
            raise ConfigError(f"--device {name}: this machine or torch build has no {device.type} device") from None
    return device
