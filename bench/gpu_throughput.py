"""GPU training throughput on Fashion-MNIST-sized images (28×28, synthetic pixels: throughput does not depend
on them): the GPU switches (bf16 autocast, channels_last, torch.compile) against fp32 in the plain PyTorch loop
with the platform's own recipes, and the Ray Train path against that loop.

Rounds: every switch setting of a family once per round, the order reversed on odd rounds, so a drifting GPU
clock hits every setting alike. Per setting: training images/s (median of epochs after the first) per round,
the median over rounds, the median of per-round ratios to fp32 with min and max, and the last epoch's training
loss (each setting must train, not only run fast). The Ray Train path (one GPU worker) runs where Ray is
installed; a GPU machine without Ray records the loop and says the Ray path was not run.

    python -m bench.gpu_throughput      # needs a CUDA GPU; writes bench/results/gpu_throughput.json
"""

from __future__ import annotations

import importlib.util
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

from bench._results import write_result

RESULT = Path(__file__).parent / "results" / "gpu_throughput.json"
EPOCHS, IMAGES, ROUNDS = 6, 60_000, 3
DEVICE = torch.device("cuda")
SWITCHES = ({}, {"precision": "bf16"}, {"channels_last": True}, {"precision": "bf16", "channels_last": True},
            {"precision": "bf16", "compile": True})


def _params(model_family: str, **train) -> PipelineParams:
    return parse_params({"data": {"image_size": 28}, "model": {"family": model_family},
                         "train": {"epochs": EPOCHS, "num_workers": 1, "use_gpu": True, "batch_size": 256,
                                   "max_failures": 0, **train}})


def plain(params: PipelineParams, data: ImageArrays) -> tuple[float, float]:
    """Training images/s (median after the first epoch) and the last epoch's training loss."""
    device = DEVICE
    torch.manual_seed(params.train.seed)
    family = get_family(params.model.family)
    model = family.build(family.architecture_from(params.data, params.model.settings)).to(device)
    switches = {k: getattr(params.train, k) for k in ("precision", "channels_last", "compile")}
    recipe = family.recipe(model, params.model.settings, accelerated(lambda m: m, device, **switches), device)
    loader = DataLoader(TensorDataset(to_tensor(data.images)), batch_size=params.train.batch_size, shuffle=True)
    rates, stats = [], {}
    for _ in range(EPOCHS):
        torch.cuda.synchronize()
        started = time.perf_counter()
        stats = recipe.train_epoch(batch for (batch,) in loader)
        torch.cuda.synchronize()
        rates.append(stats["images"] / (time.perf_counter() - started))
    loss = stats.get("loss", stats.get("g_loss", float("nan")))
    return statistics.median(rates[1:]), loss


def ray_path(params: PipelineParams, data: ImageArrays) -> float:
    from gen_platform.training.launcher import fit

    with tempfile.TemporaryDirectory() as root:
        result = fit(params, data, data.subset(np.arange(512)), run_name="gpu-bench", root=Path(root))
    return statistics.median(record["images_per_second"] for record in result.history[1:])


def _label(switches: dict) -> str:
    return "+".join(f"{k}={v}" for k, v in switches.items()) or "fp32"


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this benchmark runs on a GPU machine (see README, Benchmarks)", file=sys.stderr)
        return 2
    with_ray = importlib.util.find_spec("ray") is not None
    rng = np.random.default_rng(0)
    data = ImageArrays(rng.integers(0, 256, (IMAGES, 28, 28, 1), dtype=np.uint8), np.zeros(IMAGES, np.int64))
    families = {}
    for model_family in ("vae", "gan"):
        runs: dict[str, list[tuple[float, float]]] = {_label(s): [] for s in SWITCHES}
        for round_ in range(ROUNDS):
            for switches in SWITCHES if round_ % 2 == 0 else SWITCHES[::-1]:
                runs[_label(switches)].append(plain(_params(model_family, **switches), data))
                print(model_family, round_, _label(switches), runs[_label(switches)][-1], flush=True)
        fp32 = [rate for rate, _ in runs["fp32"]]
        rows = {}
        for label, results in runs.items():
            rates = [rate for rate, _ in results]
            ratios = [rate / base for rate, base in zip(rates, fp32)]
            rows[label] = {"images_per_second_per_round": [round(r) for r in rates],
                           "images_per_second": round(statistics.median(rates)),
                           "vs_fp32": {"median_of_round_ratios": round(statistics.median(ratios), 3),
                                       "min": round(min(ratios), 3), "max": round(max(ratios), 3)},
                           "last_epoch_train_loss": [round(loss, 4) for _, loss in results]}
        if with_ray:
            rows["fp32"]["ray_train_images_per_second"] = round(ray_path(_params(model_family), data))
        families[model_family] = rows
    write_result(RESULT, {"benchmark": "gpu_throughput", "device": torch.cuda.get_device_name(),
                          "torch": torch.__version__, "epochs": EPOCHS, "images": IMAGES, "rounds": ROUNDS,
                          "batch_size": _params("vae").train.batch_size,
                          "ray_train": "fp32 row" if with_ray else "not run: Ray is not installed on this machine",
                          "families": families})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
