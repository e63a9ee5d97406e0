"""Per-worker training loop for Ray Train: plain PyTorch plus `ray.train.report`.

Family-agnostic: the model family's `Recipe` knows how to take one epoch of steps and how to validate. The
loop knows nothing of MLflow, DVC or Prefect: it reports metrics and a checkpoint every epoch, and resumes
from the latest checkpoint when Ray restarts it after a worker failure.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import time
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from gen_platform.data.arrays import to_tensor
from gen_platform.models import family
from gen_platform.training.acceleration import accelerated
from gen_platform.training.checkpoint import load_checkpoint, save_checkpoint


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


def _features(config: dict[str, Any], device: torch.device) -> torch.nn.Module | None:
    if config.get("classifier") is None:
        return None
    from gen_platform.evaluation.classifier import FeatureModule, load_classifier

    return FeatureModule(load_classifier(config["classifier"])).to(device)


def _format(record: dict[str, float], epochs: int, keys: tuple[str, ...]) -> str:
    shown = "  ".join(f"{key} {record[key]:.3f}" for key in keys if key in record)
    return f"epoch {record['epoch']}/{epochs}  {shown}  {record['images_per_second']:.0f} img/s"


FAULT_ENV = "GENP_FAULT_AT_EPOCH"  # fault injection for tests: the last worker dies when it starts this epoch


def _inject_fault(epoch: int) -> None:
    _progress(f"fault injection ({FAULT_ENV}): worker process exits at the start of epoch {epoch + 1}")
    time.sleep(1.0)  # let the controller take the previous epoch's report first
    os._exit(1)


def _worker_report(model: torch.nn.Module, rank: int) -> list[dict[str, Any]]:
    """Every worker's rank, node and a hash of its parameters (identical under DDP), gathered on all ranks."""
    import ray

    digest = hashlib.sha256()
    for tensor in model.parameters():
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    mine = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "parameters_sha256": digest.hexdigest()}
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return gathered


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    _quiet_report_log()
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config["threads_per_worker"])
    torch.manual_seed(config["seed"])
    device = ray.train.torch.get_device()
    module = family(config["family"])
    model = module.build(module.Config(**config["model_config"])).to(device)
    wrap = accelerated(ray.train.torch.prepare_model, device, **config["acceleration"])
    recipe = module.Recipe(model, config["model_params"], wrap=wrap, device=device)
    features = _features(config, device)

    start_epoch, history, snapshots = 0, [], []
    checkpoint = ray.train.get_checkpoint()
    fault_epoch = int(os.environ.get(FAULT_ENV, "0"))
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state, _ = load_checkpoint(directory)
        recipe.load_state_dict(state)
        start_epoch, history = state["epoch"] + 1, list(state["history"])
        snapshots = list(state.get("snapshots", []))
        if rank == 0:
            _progress(f"resumed from the checkpoint of epoch {start_epoch}")
    torch.manual_seed(config["seed"] * 1000 + rank + start_epoch)  # different noise per worker and resume

    train_set = TensorDataset(to_tensor(config["train_images"]))
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=config["seed"])
    # `batch_size` is global: results do not depend on how many workers share it.
    loader = DataLoader(train_set, batch_size=max(1, config["batch_size"] // world_size), sampler=sampler)
    val_images = to_tensor(config["val_images"])

    for epoch in range(start_epoch, config["epochs"]):
        if checkpoint is None and epoch + 1 == fault_epoch and rank == world_size - 1:
            _inject_fault(epoch)
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        train_stats = recipe.train_epoch(loader)
        seconds = time.perf_counter() - started
        val_stats = recipe.validate(val_images, config["eval_batch_size"], rank, world_size, config["seed"], features)
        record = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_stats.items() if k != "images"},
                  **{f"val_{k}": v for k, v in val_stats.items()},
                  "images_per_second": train_stats["images"] / seconds, "epoch_seconds": seconds}
        history.append(record)
        if hasattr(recipe, "snapshot"):
            snapshots.append(recipe.snapshot())
        workers = _worker_report(model, rank)
        if rank == 0:
            with tempfile.TemporaryDirectory() as directory:
                state = recipe.state_dict() | {"epoch": epoch, "history": history, "snapshots": snapshots,
                                               "workers": workers}
                save_checkpoint(directory, state, config["model_config"], family=config["family"])
                ray.train.report(record, checkpoint=ray.train.Checkpoint.from_directory(directory))
            _progress(_format(record, config["epochs"], recipe.PROGRESS))
        else:
            ray.train.report(record)
