"""The training loop: unpack the inputs, plain PyTorch, report. It runs in every Ray Train worker, or alone
as a single-process Tune trial (a `session` says which).

Family-agnostic: the family's `Recipe` knows how to train one epoch and how to validate. The loop knows
nothing of MLflow, DVC or Prefect: it reports metrics and a checkpoint every epoch, and resumes from the
latest checkpoint when Ray restarts it after a worker failure.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from gen_platform.checkpoint import load_checkpoint, save_checkpoint
from gen_platform.config import PipelineParams
from gen_platform.data.arrays import to_tensor
from gen_platform.data.shards import ShardedSplit
from gen_platform.evaluation.classifier import FeatureModule, SavedClassifier
from gen_platform.models import Family
from gen_platform.training.acceleration import accelerated
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


def run_epochs(inputs: TrainingInputs, session: TrainSession | TuneSession) -> None:
    params, family, hooks = inputs.params, inputs.family, inputs.hooks
    rank, world_size, device = session.rank, session.world_size, session.device
    torch.set_num_threads(max(1, int(params.train.cpus_per_worker)))
    torch.manual_seed(params.train.seed)
    architecture = family.architecture_from(params.data, params.model.settings)
    model = family.build(architecture).to(device)
    wrap = accelerated(session.prepare_model, device, params.train.precision, params.train.channels_last,
                       params.train.compile)
    recipe = family.recipe(model, params.model.settings, wrap, device)
    features = FeatureModule(inputs.classifier.load()).to(device) if inputs.classifier else None

    start_epoch, history, snapshots = 0, [], []
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state, _ = load_checkpoint(directory)
        recipe.load_state_dict(state)
        start_epoch, history, snapshots = state["epoch"] + 1, list(state["history"]), list(state["snapshots"])
        if rank == 0:
            _progress(f"resumed from the checkpoint of epoch {start_epoch}")
    torch.manual_seed(params.train.seed * 1000 + rank + start_epoch)  # different noise per worker and resume

    # `batch_size` is global: results do not depend on how many workers share it.
    worker_batch = max(1, params.train.batch_size // world_size)
    val_images = to_tensor(inputs.val.head(params.train.validation_images).images)

    for epoch in range(start_epoch, params.train.epochs):
        worker = WorkerState(rank, world_size, epoch, params.train.epochs, resumed=checkpoint is not None)
        for hook in hooks:
            hook.on_epoch_start(worker)
        started = time.perf_counter()
        batches = inputs.train.batches(worker_batch, rank, world_size, params.train.seed, epoch)
        train_stats = recipe.train_epoch(to_tensor(batch) for batch in batches)
        seconds = time.perf_counter() - started
        val_stats = recipe.validate(val_images, params.evaluate.batch_size, rank, world_size, params.train.seed,
                                    features)
        record = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_stats.items() if k != "images"},
                  **{f"val_{k}": v for k, v in val_stats.items()},
                  "images_per_second": train_stats["images"] / seconds, "epoch_seconds": seconds}
        history.append(record)
        snapshot = recipe.snapshot()
        if snapshot is not None:
            snapshots.append(snapshot)
        for hook in hooks:
            hook.on_epoch_end(worker, model)
        if rank == 0:
            state = recipe.state_dict() | {"epoch": epoch, "history": history, "snapshots": snapshots}
            session.report(record, lambda directory: save_checkpoint(directory, state, asdict(architecture),
                                                                      family=family.name))
            _progress(_format(record, params.train.epochs, recipe.progress))
        else:
            session.report(record)
        for hook in hooks:
            hook.on_epoch_reported(worker, record)
