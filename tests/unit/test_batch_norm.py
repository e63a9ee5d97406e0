"""Batch norm across workers: two gloo workers, each holding half a batch, normalise, backpropagate and track
running statistics exactly as one batch norm over the whole batch; the loop synchronises the families' batch
norms whenever more than one worker trains."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gen_platform.config import parse_params
from gen_platform.models import gan
from gen_platform.training.batch_norm import CrossWorkerBatchNorm2d, synchronise_batch_norm
from gen_platform.training.loop import EpochLoop

BATCH = torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1


def _reference() -> tuple[torch.Tensor, torch.Tensor, dict]:
    norm = nn.BatchNorm2d(3)
    x = BATCH.clone().requires_grad_(True)
    out = norm(x)
    (out * torch.arange(out.numel()).view_as(out)).sum().backward()  # a loss whose gradient differs per element
    return out.detach(), x.grad, norm.state_dict()


def _worker(rank: int, store: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        norm = synchronise_batch_norm(nn.Sequential(nn.BatchNorm2d(3)))[0]
        half = slice(4 * rank, 4 * rank + 4)
        x = BATCH[half].clone().requires_grad_(True)
        out = norm(x)
        weights = torch.arange(BATCH.numel()).view_as(BATCH)[half]
        (out * weights).sum().backward()
        params = parse_params({"model": {"family": "gan", "gan": {"latent_dim": 4, "hidden_channels": 8}}})
        loop = EpochLoop(gan.FAMILY, params, torch.device("cpu"), rank, world_size=2)
        kinds = {type(module).__name__ for module in loop.model.modules() if isinstance(module, nn.BatchNorm2d)}
        results[rank] = (type(norm).__name__, out.detach(), x.grad, norm.state_dict(), kinds)
    finally:
        dist.destroy_process_group()


def test_two_workers_normalise_as_one_batch(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(_worker, args=(str(tmp_path / "store"), results), nprocs=2, start_method="spawn")
        results = dict(results)
    out, grad, state = _reference()
    assert results[0][0] == "CrossWorkerBatchNorm2d"
    assert torch.allclose(torch.cat([results[0][1], results[1][1]]), out, atol=1e-5)
    assert torch.allclose(torch.cat([results[0][2], results[1][2]]), grad, atol=1e-4)
    for rank in (0, 1):
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.allclose(results[rank][3][key].double(), state[key].double(), atol=1e-5), key
        assert results[rank][4] == {"CrossWorkerBatchNorm2d"}  # the loop synchronised every batch norm of the GAN


def test_one_worker_keeps_plain_batch_norm_and_the_state_loads_either_way():
    params = parse_params({"model": {"family": "gan", "gan": {"latent_dim": 4, "hidden_channels": 8}}})
    loop = EpochLoop(gan.FAMILY, params, torch.device("cpu"))
    assert not any(isinstance(module, CrossWorkerBatchNorm2d) for module in loop.model.modules())
    synchronised = synchronise_batch_norm(gan.GAN(loop.architecture))
    synchronised.load_state_dict(loop.model.state_dict())  # same keys: a DDP checkpoint loads into one worker
    x = torch.randn(4, 3, 5, 5)
    plain, crossing = nn.BatchNorm2d(3), synchronise_batch_norm(nn.Sequential(nn.BatchNorm2d(3)))[0]
    assert torch.equal(plain(x), crossing(x))  # outside a process group it is a plain batch norm
