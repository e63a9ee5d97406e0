"""Training throughput: the Ray Train path against a plain single-process PyTorch loop.

Both do the same work per epoch (`run_epoch` on the same model, data, batch size and thread count, then the
validation score and a checkpoint written to disk), in one process run, interleaved (plain, Ray, plain) so
machine drift hits both. Two views of the same runs:

- step throughput: median images/s of the training passes after a warm-up (what the GPU/CPU sustains);
- epoch throughput: images per second of wall time per whole epoch, including validation, checkpointing and,
  for Ray, reporting to the controller. For Ray it is derived from two fits of different lengths,
  (wall(N) - wall(W)) / (N - W), which also separates Ray's start-up cost.

    python -m bench.train_throughput        # writes bench/results/train_throughput.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from gen_platform.config import PipelineParams, parse_params
from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.data.sources import digits
from gen_platform.data.splits import split_dataset
from gen_platform.evaluation.elbo import neg_elbo
from gen_platform.models import vae
from gen_platform.training.checkpoint import save_checkpoint
from gen_platform.training.loop import run_epoch

LONG, SHORT, WARMUP = 40, 10, 5
THREADS = os.cpu_count() or 1
RESULT = Path(__file__).parent / "results" / "train_throughput.json"


def plain_loop(params: PipelineParams, train: ImageArrays, val: ImageArrays) -> tuple[list[float], float]:
    """Returns per-epoch training images/s and whole-epoch seconds (median after warm-up)."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(params.train.seed)
    config = vae.config_from_params(params.data, params.model)
    model = vae.build(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.train.learning_rate)
    loader = DataLoader(TensorDataset(to_tensor(train.images)), batch_size=params.train.batch_size, shuffle=True)
    val_images = to_tensor(val.images)
    rates, cycles = [], []
    with tempfile.TemporaryDirectory() as directory:
        for epoch in range(LONG):
            started = time.perf_counter()
            stats = run_epoch(model, loader, optimizer, params.model.beta, torch.device("cpu"))
            rates.append(stats["images"] / (time.perf_counter() - started))
            neg_elbo(model, val_images, params.evaluate.batch_size)
            save_checkpoint(directory, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                        "epoch": epoch}, config.to_dict(), "vae")
            cycles.append(time.perf_counter() - started)
    return rates, statistics.median(cycles[WARMUP:])


def ray_fit(params: PipelineParams, train: ImageArrays, val: ImageArrays, epochs: int) -> tuple[list[float], float]:
    from gen_platform.training.launcher import fit

    params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": epochs})})
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        result = fit(params, train, val, run_name=f"bench-{epochs}", root=Path(root))
        wall = time.perf_counter() - started
    return [record["images_per_second"] for record in result.history], wall


def ray_path(params: PipelineParams, train: ImageArrays, val: ImageArrays) -> dict[str, float]:
    rates, long_wall = ray_fit(params, train, val, LONG)
    _, short_wall = ray_fit(params, train, val, SHORT)
    epoch_seconds = (long_wall - short_wall) / (LONG - SHORT)
    return {"step_images_per_second": statistics.median(rates[WARMUP:]),
            "epoch_images_per_second": len(train) / epoch_seconds,
            "startup_seconds": short_wall - SHORT * epoch_seconds}


def main() -> None:
    import ray

    def params(workers: int, cpus: int) -> PipelineParams:
        return parse_params({"train": {"num_workers": workers, "cpus_per_worker": cpus, "max_failures": 0}})

    same_threads, ddp = params(1, THREADS), params(THREADS, 1)
    splits = split_dataset(digits(), 0, 0.1, 0.1)
    train, val = splits["train"], splits["val"]

    plain_before = plain_loop(same_threads, train, val)
    ray_single = ray_path(same_threads, train, val)
    plain_after = plain_loop(same_threads, train, val)
    ray_ddp = ray_path(ddp, train, val)
    ray.shutdown()

    plain_step = statistics.median([statistics.median(r[WARMUP:]) for r in (plain_before[0], plain_after[0])])
    plain_epoch = len(train) / statistics.median([plain_before[1], plain_after[1]])

    def summary(measured: dict[str, float], workers: int) -> dict:
        return {"workers": workers, "threads_per_worker": THREADS // workers,
                **{k: round(v, 2) for k, v in measured.items()},
                "step_ratio": round(measured["step_images_per_second"] / plain_step, 3),
                "epoch_ratio": round(measured["epoch_images_per_second"] / plain_epoch, 3)}

    result = {
        "benchmark": "train_throughput",
        "dataset": f"digits ({len(train)} training images, 8x8)", "model": "beta-VAE (params.yaml defaults)",
        "batch_size": same_threads.train.batch_size, "threads": THREADS,
        "epochs": {"long": LONG, "short": SHORT, "warmup": WARMUP},
        "plain": {"step_images_per_second": round(plain_step, 1), "epoch_images_per_second": round(plain_epoch, 1)},
        "ray_train": summary(ray_single, 1),
        "ray_train_ddp": summary(ray_ddp, THREADS),
        "ratio": round(ray_single["step_images_per_second"] / plain_step, 3), "target_ratio": 0.95,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
