"""Every tensor that reaches a collective is on a device the process group serves, for every family.

There is no GPU here, so the mistake is made visible another way. On a GPU worker, a tensor created without
naming a device lands on the CPU while the NCCL group serves only CUDA. Here the group is gloo (CPU) and the
default device is set to `meta`: a tensor created without naming a device then lands on `meta`, a device the
group does not serve, and the checking collective refuses it. Both families train and validate one epoch
through the shared loop in a real (one-member) gloo process group under that rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from gen_platform.config import parse_params
from gen_platform.models import gan, vae
from gen_platform.training.collectives import CollectiveDeviceError, all_reduce_sum, served_device_types
from gen_platform.training.loop import EpochLoop

CPU = torch.device("cpu")


@pytest.fixture()
def gloo_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _batches(n=4, size=8):
    return [np.random.default_rng(i).integers(0, 256, (16, size, size, 1), dtype=np.uint8) for i in range(n)]


@pytest.mark.parametrize(("family", "settings"), [
    (vae.FAMILY, {"latent_dim": 4, "hidden_channels": 8}),
    (gan.FAMILY, {"latent_dim": 4, "hidden_channels": 8, "fd_samples": 20, "d_steps_per_g_step": 2}),
])
def test_both_families_reduce_only_tensors_on_the_training_device(gloo_group, family, settings):
    params = parse_params({"model": {"family": family.name, family.name: settings},
                           "evaluate": {"batch_size": 16}})
    loop = EpochLoop(family, params, CPU)
    val = torch.rand(40, 1, 8, 8)
    with torch.device("meta"):  # from here on, a tensor created without a device is on one the group refuses
        stats = loop.train_epoch(_batches())
        scores = loop.validate(val, seed=0, features=torch.nn.Flatten())
    assert stats["images"] == 64 and all(np.isfinite(value) for value in stats.values())
    assert family.selection_metric.removeprefix("val_") in scores


def test_a_tensor_on_a_device_the_group_does_not_serve_is_refused(gloo_group):
    with torch.device("meta"):
        totals = torch.zeros(3)  # what the VAE's validation did before the shared loop (a tensor without a device)
    with pytest.raises(CollectiveDeviceError, match=r"validation: a tensor on meta reached a collective of the "
                                                    r"gloo process group, which serves \['cpu'\]"):
        all_reduce_sum(totals, "validation")
    assert all_reduce_sum(torch.ones(2, device=CPU)).tolist() == [1.0, 1.0]  # the right device goes through


def test_a_group_with_a_backend_per_device_serves_each(monkeypatch):
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "cpu:gloo,cuda:nccl")
    assert served_device_types() == {"cpu", "cuda"}
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    assert served_device_types() == {"cuda"}
