"""Where MLflow writes: MLFLOW_TRACKING_URI when set, else `sqlite:///<repo>/mlflow.db`, one store for every
way of running (`make run`, `genp`, `dvc repro`, `dvc exp run` in a temporary copy, Prefect flow runs in
their own workspaces, and the local stack's MLflow server, which serves this same file)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from gen_platform.tracking.links import EXPERIMENT_KIND_TAG, MODEL_TRAINING


def store_root(root: Path) -> Path:
    """The repository whose store a run at `root` records into. `dvc exp run --temp`/`--queue` runs in a copy
    under `<repo>/.dvc/tmp/exps/` and tells its stages the parent repository in DVC_ROOT: they record into
    `<repo>`'s store all the same."""
    return Path(os.environ.get("DVC_ROOT") or root).resolve()


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root(root) / 'mlflow.db'}"


def use_experiment(root: Path, name: str) -> str:
    """Point MLflow at the store and experiment `name` (created on first use); returns its id. Runs go to one
    experiment per dataset, so that VAE and GAN runs on the same data compare in one view (`family` is a tag
    and the `model.family` param)."""
    import mlflow

    for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking", "mlflow.models.model"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:  # made before the tag existed
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return experiment.experiment_id
    # A local store keeps its artifacts beside the database instead of in the current directory.
    location = (store_root(root) / "mlartifacts" / name).as_uri() if uri.startswith("sqlite:///") else None
    try:
        return mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return mlflow.get_experiment_by_name(name).experiment_id  # a concurrent run created it first
