"""Training throughput: the Ray Train path against a plain single-process PyTorch loop.

Both do the same work per epoch (the shared `EpochLoop`'s `train_epoch` of the VAE on the same model, data,
batch size and thread count, then the validation score and a checkpoint written to disk), in one process run, interleaved
in rounds (plain, Ray, Ray DDP, plain, ...) so that machine drift hits both; each Ray fit starts and stops
its own runtime, so the plain loop never runs beside Ray's daemons. Two views of the same runs:

- step throughput: median images/s of the training passes after a warm-up (what the GPU/CPU sustains);
- epoch throughput: images per second of wall time per whole epoch, including validation, checkpointing and,
  for Ray, reporting to the controller: the median time between the starts of consecutive epochs after the
  warm-up, clocked inside the worker by an epoch hook (the plain loop: train + validate + checkpoint). Ray's
  start-up is the rest of the fit's wall time.
- where the CPU goes during a Ray fit's epochs after the warm-up (`bench/_cpu_share.py`): the cores the
  training workers got and the cores every other process took (Ray's controller and agents, the dashboard,
  this benchmark's own driver and sampler), the median over rounds.

Each Ray path is compared with the mean of the plain runs on either side of it, per round, in both views:
the median of per-round ratios (the verdict statistic), the ratio of medians and the per-round ratios with their
min and max. Targets: step >= 0.98x the plain loop, whole epoch >= 0.90x.

Two datasets, each its own block of the result (`digits`, `fashion-mnist`) with the same layout: on 8×8 digits an
epoch takes a few hundredths of a second and fixed per-batch and per-epoch costs dominate; Fashion-MNIST (28×28,
its first 10,000 training images) is compute-bound, the case the verdict is about.

    python -m bench.train_throughput        # writes bench/results/train_throughput.json
    python -m bench.train_throughput --quick --output /tmp/tt.json   # smoke run: a few epochs, one round
"""

from __future__ import annotations

from dataclasses import asdict
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psutil
import torch

from gen_platform.checkpoint import save_checkpoint
from gen_platform.config import PipelineParams, parse_params
from gen_platform.data.arrays import ImageArrays
from gen_platform.data.sources import builtin
from gen_platform.data.splits import split_dataset
from gen_platform.models import vae
from gen_platform.training.feed import on_device
from gen_platform.training.hooks import EpochHook, WorkerState
from gen_platform.training.loop import EpochLoop

from bench._cpu_share import CpuSampler, process_name
from bench._plain import shuffled_batches
from bench._results import add_quick_arguments, output_path, write_result
from bench._stats import speed_ratios


class Schedule(NamedTuple):
    long: int  # epochs of every run
    warmup: int  # epochs left out of the medians
    rounds: int
    images: int | None = None  # training images (None: the whole split; quick runs take fewer)
    ddp: bool = True  # also the DDP path (quick runs leave it out: each Ray fit starts its own runtime)


class EpochClock(EpochHook):
    """Appends the wall-clock start of each epoch of rank 0 to a file (hooks run in the Ray worker)."""

    def __init__(self, path: Path):
        self.path = path

    def on_epoch_start(self, state: WorkerState) -> None:
        if state.rank == 0:
            with open(self.path, "a") as clock:
                clock.write(f"{time.time()}\n")


# The warm-up covers the start-up of the helper actors each fit starts beside its workers (controller, dataset
# manager, placement-group cleaner: a few seconds of imports that take CPU from the first epochs).
# A Fashion-MNIST epoch of 10,000 images (as bench/profile_epoch.py) is ~50x longer than digits': fewer of them,
# fewer rounds, the same verdicts.
FULL = {"digits": Schedule(80, 30, 5), "fashion-mnist": Schedule(8, 3, 3, images=10000)}
QUICK = {"digits": Schedule(3, 1, 1, ddp=False), "fashion-mnist": Schedule(3, 1, 1, images=1000, ddp=False)}
IMAGE_SIZES = {"digits": 8, "fashion-mnist": 28}
TARGETS = {"step": 0.98, "epoch": 0.90}
THREADS = os.cpu_count() or 1
RESULT = Path(__file__).parent / "results" / "train_throughput.json"
CPU = torch.device("cpu")


class PlainRun(NamedTuple):
    rates: list[float]  # training images/s per epoch
    cycle: float  # whole-epoch seconds, the median after the warm-up
    cpu: dict[str, float]  # cores per process name after the warm-up


def plain_loop(params: PipelineParams, train: ImageArrays, val: ImageArrays, schedule: Schedule) -> PlainRun:
    torch.set_num_threads(THREADS)
    torch.manual_seed(params.train.seed)
    loop = EpochLoop(vae.FAMILY, params, CPU)
    rng = np.random.default_rng(params.train.seed)
    val_images = on_device(val.images, CPU)
    rates, cycles, starts = [], [], []
    with tempfile.TemporaryDirectory() as directory, CpuSampler() as sampler:
        for epoch in range(schedule.long):
            starts.append(time.time())
            started = time.perf_counter()
            stats = loop.train_epoch(shuffled_batches(train.images, params.train.batch_size, rng))
            rates.append(stats["images"] / (time.perf_counter() - started))
            loop.validate(val_images, params.train.seed)
            save_checkpoint(directory, loop.state_dict() | {"epoch": epoch}, asdict(loop.architecture), "vae")
            cycles.append(time.perf_counter() - started)
        ended = time.time()
    return PlainRun(rates, statistics.median(cycles[schedule.warmup:]), sampler.shares(starts[schedule.warmup], ended))


class RayFit(NamedTuple):
    rates: list[float]  # training images/s per epoch
    cycles: list[float]  # seconds from the start of each epoch to the start of the next
    wall: float  # the whole fit, Ray's start-up and shutdown included
    cpu: dict[str, float]  # cores per process name from the end of the warm-up to the last epoch's start


TRAIN_WORKER, BENCHMARK_PROCESS = "ray::RayTrainWorker", process_name(psutil.Process().cmdline())


def ray_fit(params: PipelineParams, train: ImageArrays, val: ImageArrays, schedule: Schedule) -> RayFit:
    from gen_platform.training.launcher import fit

    params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": schedule.long})})
    with tempfile.TemporaryDirectory() as root, CpuSampler() as sampler:
        clock = Path(root) / "epoch_starts.txt"
        started = time.perf_counter()
        result = fit(params, train, val, run_name=f"bench-{schedule.long}", root=Path(root),
                     hooks=(EpochClock(clock),))
        wall = time.perf_counter() - started
        starts = [float(line) for line in clock.read_text().split()]
    return RayFit([record["images_per_second"] for record in result.history],
                  [after - before for before, after in zip(starts, starts[1:])], wall,
                  sampler.shares(starts[schedule.warmup], starts[-1]))


def cpu_summary(rounds: list[dict[str, float]], trained_by: str = TRAIN_WORKER, largest: int = 6) -> dict:
    """Median over rounds of the cores the training processes (`trained_by`) got, of all the other processes'
    cores, and of the largest other processes."""
    names = {name for shares in rounds for name in shares if name != trained_by}
    others = {name: statistics.median(shares.get(name, 0.0) for shares in rounds) for name in names}
    return {"cores": THREADS, "training_process": trained_by,
            "training_cores": round(statistics.median(shares.get(trained_by, 0.0) for shares in rounds), 3),
            "all_other_processes": round(statistics.median(
                sum(cores for name, cores in shares.items() if name != trained_by) for shares in rounds), 3),
            "largest_others": {name: round(cores, 3) for name, cores in
                               sorted(others.items(), key=lambda item: -item[1])[:largest]}}


def measure(dataset: str, schedule: Schedule) -> dict:
    import ray

    def params(workers: int, cpus: int) -> PipelineParams:
        return parse_params({"data": {"dataset": dataset, "image_size": IMAGE_SIZES[dataset]},
                             "train": {"num_workers": workers, "cpus_per_worker": cpus, "max_failures": 0}})

    paths = {"ray_train": params(1, THREADS)} | ({"ray_train_ddp": params(THREADS, 1)} if schedule.ddp else {})
    splits = split_dataset(builtin(dataset), 0, 0.1, 0.1)
    train, val = splits["train"], splits["val"]
    if schedule.images is not None:
        train = ImageArrays(train.images[:schedule.images], train.labels[:schedule.images])

    # Rounds of plain | Ray | DDP | plain: each Ray measurement is compared with the plain runs on either
    # side of it, so a shared machine's drift does not land on one side only. Each fit starts its own Ray
    # runtime and stops it, so that every plain run has the machine to itself, as a loop without Ray would
    # (an idle runtime's daemons and the last fit's lingering actors took 0.19 cores from the plain runs).
    plain = [plain_loop(paths["ray_train"], train, val, schedule)]
    fits: dict[str, list[RayFit]] = {name: [] for name in paths}
    for _ in range(schedule.rounds):
        for name, path in paths.items():
            fits[name].append(ray_fit(path, train, val, schedule))
            ray.shutdown()
        plain.append(plain_loop(paths["ray_train"], train, val, schedule))

    plain_steps = [statistics.median(run.rates[schedule.warmup:]) for run in plain]
    plain_epochs = [len(train) / run.cycle for run in plain]
    # per round: the mean of the plain runs before and after it
    step_references = [statistics.mean(plain_steps[i:i + 2]) for i in range(schedule.rounds)]
    epoch_references = [statistics.mean(plain_epochs[i:i + 2]) for i in range(schedule.rounds)]

    def summary(name: str) -> dict:
        steps = [statistics.median(run.rates[schedule.warmup:]) for run in fits[name]]
        epoch_seconds = [statistics.median(run.cycles[schedule.warmup:]) for run in fits[name]]
        epochs = [len(train) / seconds for seconds in epoch_seconds]
        # the fit's wall time less its epochs (the last epoch has no successor: counted at the median)
        startups = [run.wall - sum(run.cycles) - seconds for run, seconds in zip(fits[name], epoch_seconds)]
        workers = paths[name].train.num_workers
        return {"workers": workers, "threads_per_worker": THREADS // workers,
                "step_images_per_second": round(statistics.median(steps), 1),
                "epoch_images_per_second": round(statistics.median(epochs), 1),
                "epoch_seconds_per_round": [round(seconds, 4) for seconds in epoch_seconds],
                "step": speed_ratios(steps, step_references, TARGETS["step"]),
                "epoch": speed_ratios(epochs, epoch_references, TARGETS["epoch"]),
                "startup_seconds": round(statistics.median(startups), 2),
                "cpu_during_epochs": cpu_summary([run.cpu for run in fits[name]])}

    image_size = IMAGE_SIZES[dataset]
    return {
        "dataset": f"{dataset} ({len(train)} training images, {image_size}x{image_size})",
        "epochs": {"per_run": schedule.long, "warmup": schedule.warmup}, "rounds": schedule.rounds,
        "plain": {"step_images_per_second": round(statistics.median(plain_steps), 1),
                  "step_images_per_second_per_run": [round(step, 1) for step in plain_steps],
                  "epoch_images_per_second": round(statistics.median(plain_epochs), 1),
                  "epoch_images_per_second_per_run": [round(epoch, 1) for epoch in plain_epochs],
                  "cpu_during_epochs": cpu_summary([run.cpu for run in plain], trained_by=BENCHMARK_PROCESS)},
        **{name: summary(name) for name in paths},
    }


def main(quick: bool = False, output: Path | None = None) -> dict:
    schedules = QUICK if quick else FULL
    output = output_path(RESULT, quick, output)
    result = {
        "benchmark": "train_throughput", "quick": quick, "model": "beta-VAE (params.yaml defaults)",
        "batch_size": parse_params({}).train.batch_size, "threads": THREADS,
        "comparison": "per round, each Ray path against the mean of the plain runs on either side of it; "
                      "ratio_of_medians uses those per-round plain references",
        "targets": TARGETS, "verdict_statistic": "median_of_round_ratios",
        **{dataset: measure(dataset, schedule) for dataset, schedule in schedules.items()},
    }
    return write_result(output, result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_arguments(parser, RESULT, "a few epochs, one round per dataset")
    arguments = parser.parse_args()
    main(arguments.quick, arguments.output)
