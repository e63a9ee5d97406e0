"""Per-worker training loop for Ray Train: plain PyTorch plus `ray.train.report`.

It knows nothing of MLflow, DVC or Prefect: it reports metrics and a checkpoint every epoch, and resumes
from the latest checkpoint when Ray restarts it after a worker failure.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from gen_platform.data.arrays import to_tensor
from gen_platform.evaluation.elbo import all_reduce, neg_elbo
from gen_platform.models import vae
from gen_platform.training.checkpoint import load_checkpoint, save_checkpoint

TERMS = ("loss", "recon", "kl", "neg_elbo")


def run_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, beta: float,
              device: torch.device) -> dict[str, float]:
    """One pass over this worker's shard; returns means over all workers' images."""
    model.train()
    totals = torch.zeros(len(TERMS) + 1, dtype=torch.float64)
    for (batch,) in loader:
        batch = batch.to(device, non_blocking=True)
        terms = vae.loss_terms(model(batch), beta)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        totals += torch.tensor([terms[t].item() * len(batch) for t in TERMS] + [len(batch)], dtype=torch.float64)
    totals = all_reduce(totals)
    return {name: (totals[i] / totals[-1]).item() for i, name in enumerate(TERMS)} | {"images": int(totals[-1])}


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


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    _quiet_report_log()
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config["threads_per_worker"])
    torch.manual_seed(config["seed"])
    model_config = vae.VAEConfig(**config["model_config"])
    model = ray.train.torch.prepare_model(vae.build(model_config))
    core = getattr(model, "module", model)
    device = ray.train.torch.get_device()
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])

    start_epoch, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state, _ = load_checkpoint(directory)
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"] + 1, list(state["history"])
        if rank == 0:
            _progress(f"resumed from the checkpoint of epoch {state['epoch'] + 1}")
    torch.manual_seed(config["seed"] * 1000 + rank + start_epoch)  # different noise per worker and resume

    train_set = TensorDataset(to_tensor(config["train_images"]))
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=config["seed"])
    loader = DataLoader(train_set, batch_size=config["batch_size"], sampler=sampler, drop_last=False)
    val_images = to_tensor(config["val_images"])

    for epoch in range(start_epoch, config["epochs"]):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        train_stats = run_epoch(model, loader, optimizer, config["beta"], device)
        seconds = time.perf_counter() - started
        val_stats = neg_elbo(core, val_images, config["eval_batch_size"], device, rank, world_size, config["seed"])
        record = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_stats.items() if k != "images"},
                  **{f"val_{k}": v for k, v in val_stats.items()},
                  "images_per_second": train_stats["images"] / seconds, "epoch_seconds": seconds}
        history.append(record)
        if rank == 0:
            with tempfile.TemporaryDirectory() as directory:
                state = {"model": core.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                         "history": history}
                save_checkpoint(directory, state, model_config.to_dict(), family="vae")
                ray.train.report(record, checkpoint=ray.train.Checkpoint.from_directory(directory))
            _progress(f"epoch {epoch + 1}/{config['epochs']}  loss {record['train_loss']:.2f}  "
                      f"val -ELBO {record['val_neg_elbo']:.2f} nats  {record['images_per_second']:.0f} img/s")
        else:
            ray.train.report(record)
