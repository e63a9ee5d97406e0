"""Launch the per-worker loop on Ray Train (DDP on CPU or GPU, one node or many)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from gen_platform.checkpoint import load_checkpoint, save_checkpoint
from gen_platform.config import PipelineParams
from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.data.shards import ShardedSplit, write_shards
from gen_platform.errors import GenPlatformError
from gen_platform.evaluation.classifier import SavedClassifier
from gen_platform.models import Family, get_family
from gen_platform.models.family import AFTER_TRAINING_IMAGES
from gen_platform.training.capacity import await_resources, cluster_capacity, worker_bundles
from gen_platform.training.hooks import EpochHook
from gen_platform.training.loop import TrainingInputs, train_loop_per_worker
from gen_platform.training.runtime import ensure_ray, owns_local_runtime
from gen_platform.training.storage_check import check_shared_storage


Split = ImageArrays | ShardedSplit


@dataclass
class FitResult:
    family: str
    model_state: dict[str, Any]
    architecture: dict[str, Any]
    history: list[dict[str, float]]
    snapshots: list[Any]  # per-epoch pictures of the recipe (GAN: fixed-noise samples), uint8 N×C×H×W
    checkpoint_path: str

    def save_model(self, directory: Path) -> Path:
        """The trained model alone (no optimizer state), in the form `load_model_dir` reads."""
        return save_checkpoint(directory, {"model": self.model_state}, self.architecture, self.family)


STORAGE_PATH = "GENP_STORAGE_PATH"  # set by a cluster's manifests: storage every node writes and the driver reads


def storage_path(params: PipelineParams, root: Path) -> str:
    """Where checkpoints and Tune experiments go: GENP_STORAGE_PATH where the environment sets it (a cluster's
    shared volume or bucket, configured once for every run), else `train.storage_path` (relative: to the
    workspace)."""
    path = os.environ.get(STORAGE_PATH) or params.train.storage_path
    return path if "://" in path or Path(path).is_absolute() else str((root / path).resolve())


def resolve_use_gpu(use_gpu: bool | str, num_workers: int) -> bool:
    """`auto`: train on GPUs when the Ray cluster has, or its autoscaler can add, one per worker."""
    if use_gpu != "auto":
        return bool(use_gpu)
    capacity = cluster_capacity()
    return capacity.maxima.get("GPU", 0) >= num_workers and capacity.holds({"GPU": 1.0})


@contextlib.contextmanager
def on_disk(train: Split, val: Split) -> Iterator[tuple[ShardedSplit, ShardedSplit]]:
    """The splits as shard directories that workers stream: prepared splits as they are; in-memory arrays
    (benchmarks, tests) written to a temporary directory that lives as long as the training."""
    if isinstance(train, ShardedSplit) and isinstance(val, ShardedSplit):
        yield train, val
        return
    with tempfile.TemporaryDirectory(prefix="genp-splits-") as directory:
        yield as_sharded(train, Path(directory) / "train"), as_sharded(val, Path(directory) / "val")


def as_sharded(split: Split, directory: Path) -> ShardedSplit:
    return split if isinstance(split, ShardedSplit) else write_shards(directory, split)


def build_trainer(params: PipelineParams, train: ShardedSplit, val: ShardedSplit, run_name: str, root: Path,
                  classifier: SavedClassifier | None = None, hooks: tuple[EpochHook, ...] = (),
                  callbacks: list | None = None, log_level: str = "WARNING", family: Family | None = None,
                  local_runtime: bool = False) -> Any:
    """The TorchTrainer for one training (also what each multi-worker Tune trial runs, passing its `family`:
    a trial runs in a Ray worker, whose registry lacks families registered at run time). The config carries
    the splits' directories, never their images. `local_runtime`: see `trainer.py`."""
    import ray.train

    from gen_platform.training.trainer import PlatformTorchTrainer

    inputs = TrainingInputs(params, family or get_family(params.model.family), train, val, classifier, hooks)
    return PlatformTorchTrainer(
        train_loop_per_worker, local_runtime=local_runtime,
        train_loop_config={"inputs": inputs},
        scaling_config=ray.train.ScalingConfig(
            num_workers=params.train.num_workers, use_gpu=resolve_use_gpu(params.train.use_gpu, params.train.num_workers),
            resources_per_worker={"CPU": params.train.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=storage_path(params, root),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=params.train.max_failures),
            logging_config=ray.train.LoggingConfig(log_level=log_level), callbacks=callbacks),
    )


def _check_storage_across_nodes(path: str) -> None:
    import ray

    if sum(node["Alive"] for node in ray.nodes()) > 1:
        print(f"checkpoint storage {path}: shared by all {check_shared_storage(path)} nodes", flush=True)


def checkpoint_uri(checkpoint: Any) -> str:
    """Where a Ray checkpoint is, as a path `read_result_checkpoint` can open on any machine: Ray's `path` alone is
    relative to its filesystem (`bucket/key` on S3), so a remote one keeps its scheme."""
    scheme = checkpoint.filesystem.type_name
    return checkpoint.path if scheme == "local" else f"{scheme}://{checkpoint.path}"


def read_result_checkpoint(path: str) -> FitResult:
    """What a training left in its (local or remote, `s3://...`) Ray checkpoint."""
    import ray.train

    with ray.train.Checkpoint(path).as_directory() as directory:
        state, meta = load_checkpoint(directory)
    return FitResult(meta["family"], state["model"], meta["config"], list(state["history"]),
                     list(state["snapshots"]), path)


def fit(params: PipelineParams, train: Split, val: Split, run_name: str, root: Path,
        classifier: SavedClassifier | None = None, hooks: tuple[EpochHook, ...] = ()) -> FitResult:
    """Train `params.model` on `train`; resumes when `run_name` already has checkpoints in the storage path."""
    import ray.train

    ensure_ray()
    if not owns_local_runtime():  # a cluster: its autoscaler may have to add the workers' nodes first
        settings = params.train
        await_resources(worker_bundles(settings.num_workers, settings.cpus_per_worker,
                                       resolve_use_gpu(settings.use_gpu, settings.num_workers)),
                        settings.resource_timeout_s, "the training")
        _check_storage_across_nodes(storage_path(params, root))
    try:
        with on_disk(train, val) as (train, val):
            result = build_trainer(params, train, val, run_name, root, classifier, hooks,
                                   local_runtime=owns_local_runtime()).fit()
    except ray.train.TrainingFailedError as error:
        raise GenPlatformError(f"training failed after {params.train.max_failures} restart(s): {error}") from error
    if result.checkpoint is None:
        raise GenPlatformError("training finished without reporting a checkpoint")
    return read_result_checkpoint(checkpoint_uri(result.checkpoint))


def after_training(result: FitResult, train: Split, seed: int) -> FitResult:
    """`result` with its model finished by the family's `after_training` (the VAE: its fitted latent prior) on the
    first `AFTER_TRAINING_IMAGES` of `train`: what the pipeline saves and registers. `fit` leaves it out (the
    benchmarks time the training alone) and the Ray checkpoint keeps the model as trained."""
    family = get_family(result.family)
    if family.after_training is None:
        return result
    model = family.rebuild(result.architecture)
    model.load_state_dict(result.model_state)
    count = min(len(train), AFTER_TRAINING_IMAGES)
    images = train.head(count) if isinstance(train, ShardedSplit) else train.subset(np.arange(count))
    figures = family.after_training(model, to_tensor(images.images), seed)
    if figures:
        print("after training: " + ", ".join(f"{name} {value:.4g}" for name, value in figures.items()), flush=True)
    return dataclasses.replace(result, model_state=model.state_dict())
