"""The only place a tensor crosses workers. Every collective checks first that its tensor is on a device the
process group serves: NCCL has no CPU path (a CPU tensor handed to an NCCL group fails, or hangs, only on a GPU
cluster), and gloo serves the CPU. Outside a process group (one worker, a Tune trial) the collectives are no-ops,
so the same loop runs with and without data parallelism."""

from __future__ import annotations

import torch
import torch.distributed as dist

from gen_platform.errors import GenPlatformError

# What each backend serves; a multi-device group is named like "cpu:gloo,cuda:nccl".
_BACKEND_DEVICES = {"gloo": {"cpu"}, "nccl": {"cuda"}, "xccl": {"xpu"}}


class CollectiveDeviceError(GenPlatformError):
    """A tensor reached a collective on a device its process group does not serve."""


def in_process_group() -> bool:
    # A group of one counts (Ray Train creates one for a single worker): the device rule does not depend on the
    # worker count, so neither does its check.
    return dist.is_available() and dist.is_initialized()


def served_device_types() -> set[str]:
    backend = str(dist.get_backend())
    if ":" in backend:
        return {pair.split(":")[0] for pair in backend.split(",")}
    return _BACKEND_DEVICES.get(backend, {"cpu", "cuda"})


def _checked(tensor: torch.Tensor, what: str) -> torch.Tensor:
    served = served_device_types()
    if tensor.device.type not in served:
        raise CollectiveDeviceError(
            f"{what}: a tensor on {tensor.device} reached a collective of the {dist.get_backend()} process group, "
            f"which serves {sorted(served)}; create it on the training device")
    return tensor


def all_reduce_sum(tensor: torch.Tensor, what: str = "all_reduce") -> torch.Tensor:
    """Sum over data-parallel workers, in place; `what` names the caller in the error."""
    if in_process_group():
        dist.all_reduce(_checked(tensor, what))
    return tensor


def all_reduce_sum_differentiable(tensor: torch.Tensor, what: str = "all_reduce") -> torch.Tensor:
    """Sum over workers whose backward pass sums the gradients over workers too (synchronised batch norm)."""
    if not in_process_group():
        return tensor
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(_checked(tensor, what))
