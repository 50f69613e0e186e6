import os

import pytest
import torch

from seit.utils.io import atomic_open, atomic_write_json, sha256_file
from seit.utils.serialization import CheckpointError, load_weights, safe_torch_load, save_weights


def test_atomic_open_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("partial")
        raise RuntimeError("crash")
    assert target.read_text().strip().startswith("{")
    assert os.listdir(tmp_path) == ["a.json"]  # no temporary left behind
    assert len(sha256_file(target)) == 64


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "atomic.json", {"a": 1})
        with open(tmp_path / "plain.json", "w"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "atomic.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "atomic.json").stat().st_mode == (tmp_path / "plain.json").stat().st_mode


def test_umask_is_read_without_proc_too(monkeypatch):
    import seit.utils.io as io_module

    old = os.umask(0o027)
    try:
        with_proc = io_module._umask()

        def no_proc(*args, **kwargs):
            raise OSError("no /proc here")

        monkeypatch.setattr(io_module, "open", no_proc, raising=False)
        without_proc = io_module._umask()
        after = os.umask(old)
    finally:
        os.umask(old)
    assert with_proc == without_proc == after == 0o027  # the fallback restores the umask it read


def test_weights_roundtrip_and_safe_load_refuses_code(tmp_path):
    sd = {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(2)}
    save_weights(sd, tmp_path / "m.safetensors", metadata={"arch": "x"})
    back = load_weights(tmp_path / "m.safetensors")
    assert torch.equal(back["w"], sd["w"])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth"):
        safe_torch_load(tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        safe_torch_load(tmp_path / "missing.pth")


def test_process_group_destroys_only_the_group_it_created(tmp_path, monkeypatch):
    import torch.distributed as dist

    from seit.utils import dist as seit_dist

    def join(device=None, timeout_s=1800):  # what init_distributed does under torchrun (joins once)
        if not dist.is_initialized():
            dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
        return seit_dist.DistInfo()

    monkeypatch.setattr(seit_dist, "init_distributed", join)
    with seit_dist.process_group():
        assert dist.is_initialized()
    assert not dist.is_initialized()  # ours: destroyed on the way out

    join()
    try:
        with seit_dist.process_group():  # someone else's group (e.g. a caller's): left alone
            pass
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def _collectives_on_rank(rank: int, rendezvous: str, out: str) -> None:
    import json

    import torch.distributed as dist

    from seit.utils import dist as seit_dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        cpu = torch.device("cpu")
        figures = {
            "mean": seit_dist.mean_over_ranks({"x": torch.tensor(float(rank)), "y": torch.tensor(2.0)}, cpu),
            "any": seit_dist.any_rank(rank == 1, cpu),
            "none": seit_dist.any_rank(False, cpu),
            "max": seit_dist.all_reduce(torch.tensor([rank, 5 - rank]), op="max").tolist(),
            "sum": seit_dist.all_reduce(torch.tensor([rank + 1])).tolist(),
            "codebook_ema": _codebook_ema_rows(rank, world_size=2).tolist(),
        }
    finally:
        dist.destroy_process_group()
    with open(f"{out}.{rank}", "w") as f:
        json.dump(figures, f)


def _codebook_ema_rows(rank: int, world_size: int) -> torch.Tensor:
    """The codebook after one ``--codebook-ema`` update from this rank's share of a fixed batch."""
    from seit.tokenizer.train import CodebookEMA

    gen = torch.Generator().manual_seed(0)
    weight, latents, ids = torch.randn(4, 3, generator=gen), torch.randn(10, 3, generator=gen), torch.arange(10) % 4
    CodebookEMA(weight, decay=0.9).update(ids[rank::world_size], latents[rank::world_size], weight)
    return weight


def test_collectives_agree_across_two_ranks_and_are_identities_without_a_group(tmp_path):
    """The one set of helpers every loop uses: metric means, stop agreement, confusion sums; and the EMA
    codebook's statistics, summed over ranks so that two ranks with half a batch each get one process's rows."""
    import json

    import torch.multiprocessing as mp

    from seit.utils import dist as seit_dist

    cpu = torch.device("cpu")
    assert seit_dist.mean_over_ranks({"x": torch.tensor(3.0)}, cpu) == {"x": 3.0}
    assert seit_dist.any_rank(True, cpu) and not seit_dist.any_rank(False, cpu)
    assert seit_dist.all_reduce(torch.tensor([4]), op="max").tolist() == [4]
    mp.spawn(_collectives_on_rank, args=(str(tmp_path / "rdzv"), str(tmp_path / "out")), nprocs=2)
    whole_batch = _codebook_ema_rows(rank=0, world_size=1)
    for rank in range(2):
        figures = json.loads((tmp_path / f"out.{rank}").read_text())
        assert torch.allclose(torch.tensor(figures.pop("codebook_ema")), whole_batch, atol=1e-6)
        assert figures == {"mean": {"x": 0.5, "y": 2.0}, "any": True, "none": False, "max": [1, 5], "sum": [3]}
