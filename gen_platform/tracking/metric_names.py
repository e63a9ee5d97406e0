"""Metric names as MLflow shows them. MLflow's chart view puts metrics into one section per prefix (the part of a
name before its first `/`), so each kind of number the platform logs has its own section, the one a trainer
compares first at the top:

    val/...     per epoch, on the validation split: val/neg_elbo (VAE), val/fd (GAN), val/bce, ...
    eval/...    the trained model's evaluation: eval/fd, eval/nll, eval/precision, eval/recall, eval/kid, ...
    train/...   per epoch, training: train/loss, train/kl, train/d_loss, train/epoch_seconds, ...
    search/...  a search's summary on its parent run and trials: search/best_val_neg_elbo, search/trials_finished
    system/...  MLflow's own system metrics (CPU, memory, GPU)

Only the MLflow record is named so. The platform's own records (the epoch history in checkpoints, metrics/*.json
for DVC, reports, the promotion rule's `selection_metric`) keep the plain names: `val_neg_elbo`, `fd`."""

from __future__ import annotations

SECTIONS = ("val", "eval", "train", "search", "system")


def epoch_metric(name: str) -> str:
    """A per-epoch record's key: `val_x` → `val/x`, `train_x` → `train/x`, anything else → `train/<name>`."""
    if "/" in name:
        return name
    for section in ("val", "train"):
        if name.startswith(section + "_"):
            return f"{section}/{name[len(section) + 1:]}"
    return f"train/{name}"


def evaluation_metric(name: str) -> str:
    """An evaluation score: `eval/<name>`; a `val_` score is the one the curves end with (`val/...`)."""
    return epoch_metric(name) if name.startswith("val_") else (name if "/" in name else f"eval/{name}")


def search_metric(name: str) -> str:
    return name if "/" in name else f"search/{name}"
