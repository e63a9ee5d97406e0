"""The MLflow run of a training: started (or resumed after a lost driver), filled with curves and pictures."""

from __future__ import annotations

import contextlib
import json
import tempfile
from typing import Any, Iterator

import mlflow

from gen_platform.config import PipelineParams
from gen_platform.evaluation.images import epoch_progress_grid, image_grid
from gen_platform.scoring import Evaluation
from gen_platform.tracking.lineage import lineage_tags, log_provenance, logged_params, run_name
from gen_platform.tracking.live import EpochRelay, LiveCurves, log_epochs
from gen_platform.tracking.metric_names import evaluation_metric
from gen_platform.tracking.outage import wait_for_tracking, without_retries
from gen_platform.tracking.owners import fail_orphaned_runs, owner_tags
from gen_platform.tracking.store import tracking_uri, use_experiment
from gen_platform.training.launcher import FitResult
from gen_platform.workspace import Workspace, read_json, write_json


def _interrupted_run(ws: Workspace, logged: dict[str, Any]) -> str | None:
    """The MLflow run of a training with the same parameters whose driver died, if there is one.

    Its Ray run (named after it) left checkpoints in the storage path, so the new driver resumes from them
    and the training stays one MLflow run.
    """
    if not ws.in_progress_file.exists():
        return None
    previous = json.loads(ws.in_progress_file.read_text())
    if previous.get("params") != json.loads(json.dumps(logged)):
        return None
    try:
        status = mlflow.get_run(previous["run_id"]).info.status
    except mlflow.exceptions.MlflowException:
        return None
    return previous["run_id"] if status != "FINISHED" else None


@contextlib.contextmanager
def training_run(ws: Workspace, params: PipelineParams) -> Iterator[str]:
    """Yields the MLflow run id a training logs to; on success records it in `ws.run_file`. Waits a bounded time
    for an unreachable tracking server (`tracking/outage.py`); marks this host's runs whose process died FAILED
    first (`tracking/owners.py`)."""
    wait_for_tracking(tracking_uri(ws.repo), "starting the training")
    experiment_id = use_experiment(ws.repo, params.data.dataset)
    fail_orphaned_runs(mlflow.MlflowClient())
    logged = logged_params(params)
    resumed = _interrupted_run(ws, logged)
    run = mlflow.start_run(run_id=resumed, experiment_id=None if resumed else experiment_id,
                           run_name=None if resumed else run_name(params),
                           tags=owner_tags() if resumed else lineage_tags(ws, params) | owner_tags(),
                           log_system_metrics=True)
    try:
        write_json(ws.in_progress_file, {"run_id": run.info.run_id, "params": logged})
        if resumed:
            print(f"resuming the interrupted MLflow run {resumed} from its last Ray checkpoint")
        else:
            mlflow.log_params(logged)
            log_provenance(ws, params)
        print(f"MLflow run {run.info.run_id} ({params.registered_model_name}); training on Ray Train")
        yield run.info.run_id
    except BaseException:
        # The server may be why the training failed: its run is then marked FAILED when the platform next opens
        # one (its owner is gone), and this error, not MLflow's, is the one the user sees.
        with contextlib.suppress(Exception), without_retries():
            mlflow.end_run("FAILED")
        raise
    mlflow.end_run()
    write_json(ws.run_file, {"run_id": run.info.run_id, "experiment_id": experiment_id})
    ws.in_progress_file.unlink()


@contextlib.contextmanager
def live_curves(run_id: str) -> Iterator[LiveCurves]:
    """The hook that logs each epoch to the training's run while it trains (see `tracking/live.py`)."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        yield LiveCurves(uri, run_id)
        return
    with tempfile.TemporaryDirectory(prefix="genp-epochs-") as directory, EpochRelay(uri, run_id, directory):
        yield LiveCurves(uri, run_id, relay_directory=directory)


def log_training(result: FitResult) -> None:
    """Within the training's run: any epoch the live logging missed, the per-epoch pictures and where the
    checkpoint is."""
    wait_for_tracking(mlflow.get_tracking_uri(), "logging the training's epochs")
    log_epochs(mlflow.get_tracking_uri(), mlflow.active_run().info.run_id, result.history)
    if result.snapshots:
        mlflow.log_image(epoch_progress_grid(result.snapshots), "fixed_noise_by_epoch.png")
        for epoch, snapshot in enumerate(result.snapshots, start=1):  # MLflow's image comparison, per epoch
            mlflow.log_image(image_grid(snapshot.float() / 255), key="fixed_noise", step=epoch)
    mlflow.set_tag("ray_checkpoint", result.checkpoint_path)


def log_evaluation(ws: Workspace, params: PipelineParams, run_id: str, evaluation: Evaluation) -> None:
    """Scores and pictures on the run that trained the model. Keys the curves already hold (val_*) keep their
    per-epoch history; the full-split values used for promotion are on the registered version."""
    use_experiment(ws.repo, params.data.dataset)
    # reopened (RUNNING again) by this process: its owner tag says so, or another process's start would take the run
    # for one whose process died
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None, tags=owner_tags()) as run:
        scores = {evaluation_metric(name): value for name, value in evaluation.scores.items()}
        mlflow.log_metrics({name: value for name, value in scores.items() if name not in run.data.metrics})
        for name, picture in evaluation.pictures.items():
            mlflow.log_image(picture, f"{name}.png")
            mlflow.log_image(picture, key=name, step=params.train.epochs)  # MLflow's image comparison across runs


def last_training_run(ws: Workspace) -> str:
    return read_json(ws.run_file, "genp train")["run_id"]
