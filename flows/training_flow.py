"""Prefect flows: thin compositions of the library's stage functions. Each flow run works in a workspace of
its own (`runs/<flow-run-id>/`, `flows/workspaces.py`), so concurrent runs never share a file.

- `train`: one training of a family on a dataset (optionally at a data revision), with overrides.
- `tune`: a Ray Tune search; the best trial is registered under the champion rule.
- `retrain`: on a schedule; skips when the champion was trained on the current data version.

Run one locally without a server:  python -m flows.training_flow --set model.vae.beta=4
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from prefect import flow
from prefect.runtime import flow_run

from flows import tasks
from flows.parameters import DatasetRequest, RetrainRequest, TrainRequest, TuneRequest
from flows.workspaces import run_workspace
from gen_platform.workspace import Workspace
from gen_platform.config import PipelineParams, deep_merge, parse_override
from gen_platform.models import FAMILIES

ROOT = "."  # the repository: the serve process's working directory


def _train_pipeline(params: PipelineParams, workspace: Workspace, title: str) -> dict[str, Any]:
    tasks.prepare(params, workspace)
    tasks.validate(params, workspace)
    tasks.features(params, workspace)
    tasks.train(params, workspace)
    scores = tasks.evaluate(params, workspace)
    registration = tasks.register(params, workspace)
    run_id = json.loads(workspace.run_file.read_text())["run_id"]
    tasks.publish(workspace, title, scores, registration, run_id)
    return registration | {"workspace": str(workspace.root)}


def _run_name(kind: str, request_type: type[DatasetRequest]) -> Callable[[], str]:
    """`train vae-pets`: the request's family and dataset (params.yaml's when it names none)."""

    def name() -> str:
        request = request_type.model_validate(flow_run.parameters.get("request") or {})
        return f"{kind} {request.family}-{request.dataset_in(Path(flow_run.parameters.get('root') or ROOT))}"

    return name


@flow(name="train", flow_run_name=_run_name("train", TrainRequest), log_prints=True)
def train_flow(request: TrainRequest = TrainRequest(), root: str = ROOT) -> dict[str, Any]:
    """prepare → validate → features → train → evaluate → register, then a report artifact."""
    params = request.params(Path(root))  # a bad parameter or an absent dataset fails here, before any work
    with run_workspace(root, flow_run.get_id(), params.data.dataset, request.data_revision) as workspace:
        return _train_pipeline(params, workspace, f"train {params.registered_model_name}")


def _tune_pipeline(params: PipelineParams, workspace: Workspace) -> dict[str, Any]:
    tasks.prepare(params, workspace)
    tasks.validate(params, workspace)
    tasks.features(params, workspace)
    summary = tasks.tune(params, workspace)
    counts = {key: summary[key] for key in ("trials_finished", "trials_stopped", "trials_failed")}
    tasks.publish(workspace, f"tune {params.registered_model_name}", {summary["metric"]: summary["best_value"], **counts},
                  summary["registration"], summary["parent_run_id"])
    return summary | {"workspace": str(workspace.root)}


@flow(name="tune", flow_run_name=_run_name("tune", TuneRequest), log_prints=True)
def tune_flow(request: TuneRequest = TuneRequest(), root: str = ROOT) -> dict[str, Any]:
    params = request.params(Path(root))
    with run_workspace(root, flow_run.get_id(), params.data.dataset) as workspace:
        return _tune_pipeline(params, workspace)


@flow(name="retrain", flow_run_name=_run_name("retrain", RetrainRequest), log_prints=True)
def retrain_flow(request: RetrainRequest = RetrainRequest(), root: str = ROOT) -> dict[str, Any]:
    """Retrain when the data changed: compares data.dvc's md5 with the data version the model's latest
    registration was evaluated on (promoted or not, trained or tuned)."""
    import mlflow

    from gen_platform.tracking.lineage import data_version
    from gen_platform.tracking.registry import retrain_needed
    from gen_platform.tracking.store import tracking_uri

    repo = Path(root).resolve()
    params = request.params(repo)
    current = data_version(repo)
    mlflow.set_tracking_uri(tracking_uri(repo))
    needed, reason = retrain_needed(params.registered_model_name, current)
    if not needed:
        tasks.publish_decision(reason)
        return {"retrained": False, "reason": reason, "data_version": current}
    tasks.publish_decision(f"{reason}: retraining by {request.mode}")
    with run_workspace(repo, flow_run.get_id(), params.data.dataset) as workspace:
        if request.mode == "tune":
            outcome = _tune_pipeline(params, workspace)["registration"]
        else:
            outcome = _train_pipeline(params, workspace, f"retrain {params.registered_model_name}")
    return {"retrained": True, "reason": reason, "data_version": current, "registration": outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the train flow once, without a Prefect server.")
    parser.add_argument("--set", "-s", action="append", default=[], help="override, e.g. model.vae.beta=4")
    parser.add_argument("--family", default="vae", choices=sorted(FAMILIES))
    parser.add_argument("--dataset", default=None, help="a dataset in data/raw (default: params.yaml's)")
    parser.add_argument("--data-revision", default=None, help="a git revision whose data.dvc to train on")
    parser.add_argument("--root", default=ROOT)
    args = parser.parse_args()
    # Without a server, Prefect starts a temporary one in a child process and stops it at exit. On SIGTERM it
    # re-sends the signal to the handler it found; with Python's default the process would end at once and the
    # server run on, orphaned. Leaving through SystemExit runs the exit handlers that stop it.
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    overrides: dict[str, Any] = {}
    for text in args.set:
        overrides = deep_merge(overrides, parse_override(text))
    train_flow(TrainRequest(family=args.family, dataset=args.dataset, data_revision=args.data_revision,
                            overrides=overrides), root=args.root)


if __name__ == "__main__":
    main()
