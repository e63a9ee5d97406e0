"""The training loop: unpack the inputs, plain PyTorch, report. It runs in every Ray Train worker, or alone
as a single-process Tune trial (a `session` says which).

Family-agnostic: a family's `Recipe` brings its maths (networks, optimizers, a train and a validation step);
`EpochLoop` owns devices, data movement, accumulation and reductions. The loop knows nothing of MLflow, DVC or
Prefect: it reports metrics and a checkpoint every epoch, and resumes from the latest checkpoint when Ray
restarts it after a worker failure.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np

import torch

from gen_platform.checkpoint import load_checkpoint, save_checkpoint
from gen_platform.config import PipelineParams
from gen_platform.data.shards import ReadCount, ShardedSplit
from gen_platform.evaluation.classifier import FeatureModule, SavedClassifier
from gen_platform.models import Family
from gen_platform.training.acceleration import Update, accelerated, resolve_precision
from gen_platform.training.batch_norm import synchronise_batch_norm
from gen_platform.training.collectives import all_reduce_sum
from gen_platform.training.feed import device_batches, on_device
from gen_platform.training.hooks import EpochHook, WorkerState


@dataclass(frozen=True)
class TrainingInputs:
    """Everything a worker needs, validated on the driver: typed params, the family, the data, the hooks."""

    params: PipelineParams
    family: Family
    train: ShardedSplit  # streamed: each worker reads its share, a shard at a time
    val: ShardedSplit
    classifier: SavedClassifier | None = None  # enables feature-space validation metrics (the GAN's FD)
    hooks: tuple[EpochHook, ...] = ()


def _progress(line: str) -> None:
    # Train V2 patches print() into a logger that echoes each line twice; write to the stream directly.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _quiet_report_log() -> None:
    # Ray 2.60 logs every report (with all metrics) at INFO through a logger named after its *file*, outside
    # the `ray.train` hierarchy, so RunConfig's log level misses it. Users see our progress line instead.
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:
        return
    train_context.logger.setLevel(logging.WARNING)


def _format(record: dict[str, float], epochs: int, keys: tuple[str, ...]) -> str:
    shown = "  ".join(f"{key} {record[key]:.3f}" for key in keys if key in record)
    return f"epoch {record['epoch']}/{epochs}  {shown}  {record['images_per_second']:.0f} img/s"


class TrainSession:
    """The loop inside a Ray Train worker group: DDP across workers, reports to the Train controller."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        _quiet_report_log()
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        self.prepare_model = ray.train.torch.prepare_model
        self.get_checkpoint = ray.train.get_checkpoint

    def report(self, record: dict[str, float], write_checkpoint: Callable[[str], None] | None = None) -> None:
        """Hand the epoch's report (and checkpoint) to Ray Train's background thread, which copies the checkpoint
        to storage and waits for the controller to take the report. A report blocks until the previous one is
        taken, and the controller takes one per poll (every 0.1 s): reported in the training thread, no epoch was
        shorter than that (`bench.train_throughput`). Ray flushes pending reports when the loop returns."""
        import ray.train

        checkpoint = None
        if write_checkpoint is not None:
            directory = tempfile.mkdtemp(prefix="genp-checkpoint-")  # Ray deletes it once it is in storage
            write_checkpoint(directory)
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(record, checkpoint=checkpoint, checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
                         delete_local_checkpoint_after_upload=checkpoint is not None)


class TuneSession:
    """The loop as a single-process Tune trial: no controller, no worker group, reports straight to Tune."""

    rank, world_size = 0, 1

    def __init__(self, use_gpu: bool) -> None:
        from ray import tune

        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.get_checkpoint = tune.get_checkpoint

    def report(self, record: dict[str, float], write_checkpoint: Callable[[str], None] | None = None) -> None:
        from ray import tune

        if write_checkpoint is None:
            tune.report(record)
            return
        with tempfile.TemporaryDirectory() as directory:  # Tune copies it before `report` returns
            write_checkpoint(directory)
            tune.report(record, checkpoint=tune.Checkpoint.from_directory(directory))

    def prepare_model(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(self.device)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Ray Train entry point."""
    run_epochs(config["inputs"], TrainSession())


class EpochLoop:
    """One worker's training of a family. The family's recipe brings the maths; this loop owns the rest: the
    device, the networks' preparation (data parallelism, precision, batch norm across workers), the data path,
    the accumulation of metrics on the device and every reduction across workers. Used by the Ray Train loop,
    the Tune trials and the benchmarks' plain loops alike."""

    def __init__(self, family: Family, params: PipelineParams, device: torch.device, rank: int = 0,
                 world_size: int = 1, prepare_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None):
        train = params.train
        self.params, self.device, self.rank, self.world_size = params, device, rank, world_size
        self.precision = resolve_precision(train.precision, device)
        self.architecture = family.architecture_from(params.data, params.model.settings)
        self.model = family.build(self.architecture).to(device)
        if world_size > 1 and train.sync_batch_norm:
            synchronise_batch_norm(self.model)
        self.recipe = family.recipe(self.model, params.model.settings, device)
        wrap = accelerated(prepare_model or (lambda module: module.to(device)), device, self.precision,
                           train.channels_last, train.compile)
        self.prepared = {name: wrap(network) for name, network in self.recipe.networks().items()}
        self.recipe.configure(self.prepared, Update(self.precision, device))

    def train_epoch(self, batches: Iterable[np.ndarray]) -> dict[str, float]:
        """One pass over this worker's uint8 batches: each train metric's mean over every worker's images, and
        `images`, the number of images all workers trained on."""
        names = self.recipe.train_metrics
        for network in self.prepared.values():
            network.train()
        # sums and weights stay on the device: no host synchronisation per step, one reduction per epoch
        sums = torch.zeros(2, len(names), dtype=torch.float64, device=self.device)
        images = 0
        for step, batch in enumerate(device_batches(iter(batches), self.device, self.params.train.channels_last), 1):
            values = self.recipe.train_step(batch, step)
            if step == 1 and (unknown := set(values) - set(names)):
                raise ValueError(f"train_step returned {sorted(unknown)}, not among train_metrics {names}")
            for index, name in enumerate(names):
                if name in values:
                    sums[0, index] += values[name].double() * len(batch)
                    sums[1, index] += len(batch)
            images += len(batch)
        counts = torch.cat([sums.flatten(), torch.tensor([images], dtype=torch.float64, device=self.device)])
        *totals, images_total = all_reduce_sum(counts, "train metrics").tolist()
        means = {name: totals[i] / totals[len(names) + i] if totals[len(names) + i] else math.nan
                 for i, name in enumerate(names)}
        return means | {"images": int(images_total)}

    @torch.no_grad()
    def validate(self, images: torch.Tensor, seed: int, features: torch.nn.Module | None = None) -> dict[str, float]:
        """The validation metrics on `images` (floats on the device): the recipe's per-image sums over this
        worker's strided share, reduced over workers, then its whole-set scores. Random draws are seeded (a model
        scores the same every time) and the caller's random state is left as it was."""
        names, batch_size = self.recipe.validation_metrics, self.params.evaluate.batch_size
        for network in self.prepared.values():
            network.eval()
        scores: dict[str, float] = {}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed + self.rank)
            if names:
                totals = torch.zeros(len(names) + 1, dtype=torch.float64, device=self.device)
                for start in range(self.rank * batch_size, len(images), self.world_size * batch_size):
                    batch = images[start:start + batch_size]
                    values = self.recipe.validation_step(batch)
                    totals[:-1] += torch.stack([values[name].double() for name in names])
                    totals[-1] += len(batch)
                *sums, count = all_reduce_sum(totals, "validation metrics").tolist()
                scores = {name: total / max(count, 1.0) for name, total in zip(names, sums)}
            scores |= self.recipe.validation_end(images, batch_size, seed, features)
        return scores

    def state_dict(self) -> dict[str, Any]:
        return self.recipe.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recipe.load_state_dict(state)


def gpu_metrics(device: torch.device) -> dict[str, float]:
    """This worker's GPU as MLflow system metrics (rank 0's, logged with its epochs): utilisation where NVML is
    installed, and the peak memory the training allocated."""
    if device.type != "cuda":
        return {}
    index = device.index if device.index is not None else torch.cuda.current_device()
    metrics = {f"system/gpu_{index}_memory_usage_megabytes": torch.cuda.max_memory_allocated(device) / 1e6,
               f"system/gpu_{index}_memory_usage_percentage":
                   100 * torch.cuda.max_memory_allocated(device) / torch.cuda.get_device_properties(device).total_memory}
    try:
        metrics[f"system/gpu_{index}_utilization_percentage"] = float(torch.cuda.utilization(device))
    except (ModuleNotFoundError, RuntimeError):  # NVML (nvidia-ml-py) not installed or not usable
        pass
    return metrics


def run_epochs(inputs: TrainingInputs, session: TrainSession | TuneSession) -> None:
    params, family, hooks = inputs.params, inputs.family, inputs.hooks
    rank, world_size, device = session.rank, session.world_size, session.device
    torch.set_num_threads(max(1, int(params.train.cpus_per_worker)))
    torch.manual_seed(params.train.seed)
    loop = EpochLoop(family, params, device, rank, world_size, session.prepare_model)
    features = FeatureModule(inputs.classifier.load()).to(device) if inputs.classifier else None

    start_epoch, history, snapshots = 0, [], []
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state, _ = load_checkpoint(directory)
        loop.load_state_dict(state)
        start_epoch, history, snapshots = state["epoch"] + 1, list(state["history"]), list(state["snapshots"])
        if rank == 0:
            _progress(f"resumed from the checkpoint of epoch {start_epoch}")
    torch.manual_seed(params.train.seed * 1000 + rank + start_epoch)  # different noise per worker and resume

    # `batch_size` is global: each worker takes its share of every step's batch.
    worker_batch = max(1, params.train.batch_size // world_size)
    val_images = on_device(inputs.val.head(params.train.validation_images).images, device)

    for epoch in range(start_epoch, params.train.epochs):
        worker = WorkerState(rank, world_size, epoch, params.train.epochs, resumed=checkpoint is not None)
        for hook in hooks:
            hook.on_epoch_start(worker)
        started, read = time.perf_counter(), ReadCount()
        train_stats = loop.train_epoch(inputs.train.batches(worker_batch, rank, world_size, params.train.seed, epoch,
                                                            read))
        seconds = time.perf_counter() - started
        val_stats = loop.validate(val_images, params.train.seed, features)
        record = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_stats.items() if k != "images"},
                  **{f"val_{k}": v for k, v in val_stats.items()},
                  "images_per_second": train_stats["images"] / seconds, "epoch_seconds": seconds,
                  "worker_read_megabytes": read.bytes / 1e6, **(gpu_metrics(device) if rank == 0 else {})}
        history.append(record)
        snapshot = loop.recipe.snapshot()
        if snapshot is not None:
            snapshots.append(snapshot)
        for hook in hooks:
            hook.on_epoch_end(worker, loop.model)
        if rank == 0:
            state = loop.state_dict() | {"epoch": epoch, "history": history, "snapshots": snapshots}
            session.report(record, lambda directory: save_checkpoint(directory, state, asdict(loop.architecture),
                                                                      family=family.name))
            _progress(_format(record, params.train.epochs, loop.recipe.progress))
        else:
            session.report(record)
        for hook in hooks:
            hook.on_epoch_reported(worker, record)
