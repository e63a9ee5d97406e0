"""Where MLflow writes: MLFLOW_TRACKING_URI when set, else `sqlite:///<repo>/mlflow.db`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def use_experiment(root: Path, name: str) -> str:
    """Point MLflow at the store and experiment `name` (created on first use); returns its id."""
    import mlflow

    for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking", "mlflow.models.model"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # A local store keeps its artifacts beside the database instead of in the current directory.
    location = (root / "mlartifacts" / name).resolve().as_uri() if uri.startswith("sqlite:///") else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return mlflow.get_experiment_by_name(name).experiment_id  # a concurrent run created it first
