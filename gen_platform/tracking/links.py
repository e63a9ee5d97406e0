"""Addresses in the MLflow UI that open where a trainer expects.

MLflow 3's UI opens an experiment on its GenAI overview (traces, latency, token charts) unless the address asks
for the model-training view with `workflowType=machine_learning`; the browser then remembers that choice. The
experiment tag `mlflow.experimentKind` records what the experiment holds for MLflow's own views and search, but
on its own it did not change the view a link opens (seen in headless Chromium with MLflow 3.x), so both are set.
"""

from __future__ import annotations

TRAINING_VIEW = "workflowType=machine_learning"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def run_url(server: str, experiment_id: str, run_id: str) -> str:
    """One run's page, in the model-training view."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def run_page(run_id: str) -> str:
    """Where to look at run `run_id` of the current tracking store: its page on the tracking server, or, for a
    local store, on the `mlflow ui` that the reader starts (the command is part of the answer)."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    experiment = mlflow.get_run(run_id).info.experiment_id
    if uri.startswith(("http://", "https://")):
        return run_url(uri, experiment, run_id)
    return f"{run_url(LOCAL_UI, experiment, run_id)} (after `mlflow ui --backend-store-uri {uri} --host 127.0.0.1`)"
