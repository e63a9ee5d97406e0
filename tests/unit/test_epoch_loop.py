"""The shared loop's own parts: the data path to the device, its accounting of train metrics, and the GPU's
system metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gen_platform.config import parse_params
from gen_platform.data.arrays import to_tensor
from gen_platform.models import vae
from gen_platform.training.feed import device_batches
from gen_platform.training.loop import EpochLoop, gpu_metrics

CPU = torch.device("cpu")


def _uint8(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)


def test_batches_arrive_in_order_as_floats_converted_on_the_device():
    batches = [_uint8(4, seed) for seed in range(5)]
    arrived = list(device_batches(iter(batches), CPU, channels_last=True))
    assert [torch.equal(a, to_tensor(b)) for a, b in zip(arrived, batches)] == [True] * 5
    assert all(a.is_contiguous(memory_format=torch.channels_last) for a in arrived)


def test_a_reader_error_reaches_the_training_thread():
    def failing():
        yield _uint8(4)
        raise OSError("shard images-00003.npy: input/output error")

    feed = device_batches(failing(), CPU)
    next(feed)
    with pytest.raises(OSError, match="images-00003.npy"):
        next(feed)


def test_train_metrics_are_means_over_images_and_unknown_keys_are_refused(monkeypatch):
    params = parse_params({"model": {"family": "vae", "vae": {"latent_dim": 4, "hidden_channels": 8}}})
    loop = EpochLoop(vae.FAMILY, params, CPU)
    losses = iter([2.0, 5.0])
    monkeypatch.setattr(loop.recipe, "train_step", lambda batch, step: {"loss": torch.tensor(next(losses))})
    stats = loop.train_epoch([_uint8(3), _uint8(1)])
    assert stats["images"] == 4 and stats["loss"] == pytest.approx((2.0 * 3 + 5.0 * 1) / 4)
    assert np.isnan(stats["kl"])  # never returned: no value, rather than a made-up one
    monkeypatch.setattr(loop.recipe, "train_step", lambda batch, step: {"los": torch.tensor(1.0)})
    with pytest.raises(ValueError, match=r"train_step returned \['los'\], not among train_metrics"):
        loop.train_epoch([_uint8(3)])


def test_gpu_metrics_are_system_metrics_of_rank_0(monkeypatch):
    assert gpu_metrics(CPU) == {}
    # No GPU here: the CUDA queries are stood in for (bench/gpu_check.py records them on a real one).
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 2_000_000_000)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: type("Properties", (), {"total_memory": 8_000_000_000})())
    monkeypatch.setattr(torch.cuda, "utilization", lambda device=None: 87)
    assert gpu_metrics(torch.device("cuda", 0)) == {"system/gpu_0_memory_usage_megabytes": 2000.0,
                                                    "system/gpu_0_memory_usage_percentage": 25.0,
                                                    "system/gpu_0_utilization_percentage": 87.0}
