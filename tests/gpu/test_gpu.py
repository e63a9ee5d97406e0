"""Checks that need a CUDA GPU (run by `python -m bench.gpu` on a GPU machine; deselected where none is, see
tests/conftest.py): the shared loop's device path, precision and system metrics, and a Ray Train fit on the GPU,
whose process group is NCCL (no CPU tensor may reach its collectives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gen_platform.config import parse_params
from gen_platform.data.arrays import ImageArrays
from gen_platform.models import get_family
from gen_platform.training.loop import EpochLoop, gpu_metrics

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def _data(n=512, size=8):
    rng = np.random.default_rng(0)
    return ImageArrays(rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8), np.arange(n) % 10)


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_auto_precision_trains_both_families_on_the_gpu(family):
    params = parse_params({"model": {"family": family}})
    loop = EpochLoop(get_family(family), params, CUDA)
    expected = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    assert loop.precision == expected
    images = _data().images
    stats = loop.train_epoch(images[i:i + 64] for i in range(0, len(images), 64))
    assert stats["images"] == 512 and all(np.isfinite(v) for v in stats.values())
    scores = loop.validate(torch.rand(100, 1, 8, 8, device=CUDA), seed=0, features=torch.nn.Flatten())
    assert scores and all(np.isfinite(v) for v in scores.values())
    assert gpu_metrics(CUDA)["system/gpu_0_memory_usage_megabytes"] > 0


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_a_ray_train_fit_validates_on_the_gpu(family, tmp_path):
    pytest.importorskip("ray")
    from gen_platform.training.launcher import fit

    params = parse_params({"model": {"family": family}, "train": {"epochs": 2, "use_gpu": True, "max_failures": 0}})
    data = _data()
    result = fit(params, data, data.subset(np.arange(100)), run_name=f"gpu-{family}", root=Path(tmp_path))
    assert [record["epoch"] for record in result.history] == [1, 2]
    assert any(key.startswith("system/gpu_") for key in result.history[-1])
