"""Training throughput: the Ray Train path against a plain single-process PyTorch loop.

Both do the same work per epoch (the VAE `Recipe`'s `train_epoch` on the same model, data, batch size and
thread count, then the validation score and a checkpoint written to disk), in one process run, interleaved
in rounds (plain, Ray, Ray DDP, plain, ...) so that machine drift hits both. Two views of the same runs:

- step throughput: median images/s of the training passes after a warm-up (what the GPU/CPU sustains);
- epoch throughput: images per second of wall time per whole epoch, including validation, checkpointing and,
  for Ray, reporting to the controller. For Ray it is derived from two fits of different lengths,
  (wall(N) - wall(W)) / (N - W), which also separates Ray's start-up cost.

    python -m bench.train_throughput        # writes bench/results/train_throughput.json
"""

from __future__ import annotations

from dataclasses import asdict
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
from gen_platform.models import vae
from gen_platform.checkpoint import save_checkpoint

LONG, SHORT, WARMUP, ROUNDS = 40, 10, 5, 3
THREADS = os.cpu_count() or 1
RESULT = Path(__file__).parent / "results" / "train_throughput.json"


def plain_loop(params: PipelineParams, train: ImageArrays, val: ImageArrays) -> tuple[list[float], float]:
    """Returns per-epoch training images/s and whole-epoch seconds (median after warm-up)."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(params.train.seed)
    architecture = vae.architecture_from(params.data, params.model.settings)
    recipe = vae.Recipe(vae.ConvVAE(architecture), params.model.settings, wrap=lambda model: model,
                        device=torch.device("cpu"))
    loader = DataLoader(TensorDataset(to_tensor(train.images)), batch_size=params.train.batch_size, shuffle=True)
    val_images = to_tensor(val.images)
    rates, cycles = [], []
    with tempfile.TemporaryDirectory() as directory:
        for epoch in range(LONG):
            started = time.perf_counter()
            stats = recipe.train_epoch(batch for (batch,) in loader)
            rates.append(stats["images"] / (time.perf_counter() - started))
            recipe.validate(val_images, params.evaluate.batch_size, 0, 1, params.train.seed)
            save_checkpoint(directory, recipe.state_dict() | {"epoch": epoch}, asdict(architecture), "vae")
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


def main() -> None:
    import ray

    def params(workers: int, cpus: int) -> PipelineParams:
        return parse_params({"train": {"num_workers": workers, "cpus_per_worker": cpus, "max_failures": 0}})

    paths = {"ray_train": params(1, THREADS), "ray_train_ddp": params(THREADS, 1)}
    splits = split_dataset(digits(), 0, 0.1, 0.1)
    train, val = splits["train"], splits["val"]

    # Rounds of plain | Ray | DDP | plain: each Ray measurement is compared with the plain runs on either
    # side of it, so a shared machine's drift does not land on one side only.
    plain = [plain_loop(paths["ray_train"], train, val)]
    fits: dict[str, list[tuple[list[float], float]]] = {name: [] for name in paths}
    for _ in range(ROUNDS):
        for name, path in paths.items():
            fits[name].append(ray_fit(path, train, val, LONG))
        plain.append(plain_loop(paths["ray_train"], train, val))
    short_walls = {name: ray_fit(path, train, val, SHORT)[1] for name, path in paths.items()}
    ray.shutdown()

    plain_steps = [statistics.median(rates[WARMUP:]) for rates, _ in plain]
    plain_epoch = len(train) / statistics.median(cycle for _, cycle in plain)

    def summary(name: str) -> dict:
        steps = [statistics.median(rates[WARMUP:]) for rates, _ in fits[name]]
        ratios = [step / statistics.mean(plain_steps[i:i + 2]) for i, step in enumerate(steps)]
        long_wall = statistics.median(wall for _, wall in fits[name])
        epoch_seconds = (long_wall - short_walls[name]) / (LONG - SHORT)
        workers = paths[name].train.num_workers
        return {"workers": workers, "threads_per_worker": THREADS // workers,
                "step_images_per_second": round(statistics.median(steps), 1),
                "step_ratio": round(statistics.median(ratios), 3),
                "step_ratio_per_round": [round(r, 3) for r in ratios],
                "epoch_images_per_second": round(len(train) / epoch_seconds, 1),
                "epoch_ratio": round(len(train) / epoch_seconds / plain_epoch, 3),
                "startup_seconds": round(short_walls[name] - SHORT * epoch_seconds, 2)}

    summaries = {name: summary(name) for name in paths}
    result = {
        "benchmark": "train_throughput",
        "dataset": f"digits ({len(train)} training images, 8x8)", "model": "beta-VAE (params.yaml defaults)",
        "batch_size": paths["ray_train"].train.batch_size, "threads": THREADS,
        "epochs": {"long": LONG, "short": SHORT, "warmup": WARMUP}, "rounds": ROUNDS,
        "plain": {"step_images_per_second": round(statistics.median(plain_steps), 1),
                  "step_images_per_second_per_run": [round(step, 1) for step in plain_steps],
                  "epoch_images_per_second": round(plain_epoch, 1)},
        **summaries,
        "ratio": summaries["ray_train"]["step_ratio"], "target_ratio": 0.95,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
