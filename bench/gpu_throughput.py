"""GPU training throughput: the Ray Train path (with the GPU switches) against a plain PyTorch loop with the
same networks, on Fashion-MNIST-sized images (28×28, synthetic pixels: throughput does not depend on them).

    python -m bench.gpu_throughput      # needs a CUDA GPU; writes bench/results/gpu_throughput.json
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from gen_platform.config import PipelineParams, parse_params
from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.models import get_family
from gen_platform.training.acceleration import accelerated

RESULT = Path(__file__).parent / "results" / "gpu_throughput.json"
EPOCHS, IMAGES = 6, 60_000


def _params(model_family: str, **train) -> PipelineParams:
    return parse_params({"data": {"image_size": 28}, "model": {"family": model_family},
                         "train": {"epochs": EPOCHS, "num_workers": 1, "use_gpu": True, "batch_size": 256,
                                   "max_failures": 0, **train}})


def plain(params: PipelineParams, data: ImageArrays) -> float:
    device = torch.device("cuda")
    family = get_family(params.model.family)
    model = family.build(family.architecture_from(params.data, params.model.settings)).to(device)
    switches = {k: getattr(params.train, k) for k in ("precision", "channels_last", "compile")}
    recipe = family.recipe(model, params.model.settings, accelerated(lambda m: m, device, **switches), device)
    loader = DataLoader(TensorDataset(to_tensor(data.images)), batch_size=params.train.batch_size, shuffle=True)
    rates = []
    for _ in range(EPOCHS):
        torch.cuda.synchronize()
        started = time.perf_counter()
        stats = recipe.train_epoch(batch for (batch,) in loader)
        torch.cuda.synchronize()
        rates.append(stats["images"] / (time.perf_counter() - started))
    return statistics.median(rates[1:])


def ray_path(params: PipelineParams, data: ImageArrays) -> float:
    from gen_platform.training.launcher import fit

    with tempfile.TemporaryDirectory() as root:
        result = fit(params, data, data.subset(np.arange(512)), run_name="gpu-bench", root=Path(root))
    return statistics.median(record["images_per_second"] for record in result.history[1:])


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this benchmark runs on a GPU machine (see README, Benchmarks)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    data = ImageArrays(rng.integers(0, 256, (IMAGES, 28, 28, 1), dtype=np.uint8), np.zeros(IMAGES, np.int64))
    rows = []
    for model_family in ("vae", "gan"):
        for switches in ({}, {"precision": "bf16"}, {"precision": "bf16", "channels_last": True},
                         {"precision": "bf16", "compile": True}):
            params = _params(model_family, **switches)
            plain_rate, ray_rate = plain(params, data), ray_path(params, data)
            rows.append({"family": model_family, "switches": switches or "fp32", "plain_images_per_second":
                         round(plain_rate), "ray_train_images_per_second": round(ray_rate),
                         "ratio": round(ray_rate / plain_rate, 3)})
            print(rows[-1], flush=True)
    RESULT.write_text(json.dumps({"benchmark": "gpu_throughput", "device": torch.cuda.get_device_name(),
                                  "epochs": EPOCHS, "images": IMAGES, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
