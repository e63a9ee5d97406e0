"""MLflow record of a search: a parent run, a child run per trial that appears and fills as the trial reports,
and a plot. Every trial ends as what it really was: FINISHED (ran all epochs or stopped by ASHA) or FAILED."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import mlflow
from ray.tune import Callback

from gen_platform.config import PipelineParams
from gen_platform.errors import GenPlatformError
from gen_platform.tracking.lineage import lineage_tags, log_provenance
from gen_platform.tracking.metric_names import epoch_metric, search_metric
from gen_platform.tracking.outage import wait_for_tracking
from gen_platform.tracking.owners import fail_orphaned_runs, owner_tags
from gen_platform.tracking.store import tracking_uri, use_experiment
from gen_platform.tuning.search import SearchResult
from gen_platform.workspace import Workspace


@contextlib.contextmanager
def search_run(ws: Workspace, params: PipelineParams, resume: bool = False) -> Iterator[mlflow.ActiveRun]:
    """The parent run of a search, with the lineage tags of a training; `resume`: the latest search of this
    model that did not finish (its driver was killed, or it failed), reopened."""
    wait_for_tracking(tracking_uri(ws.repo), "starting the search")
    experiment_id = use_experiment(ws.repo, params.data.dataset)
    fail_orphaned_runs(mlflow.MlflowClient())
    if resume:
        with mlflow.start_run(run_id=_unfinished_search(experiment_id, params), tags=owner_tags()) as parent:
            yield parent
        return
    # the trials' child runs inherit the owner tag: the search's driver opens and ends them
    tags = lineage_tags(ws, params) | owner_tags() | {"search": "true"}
    with mlflow.start_run(experiment_id=experiment_id, tags=tags, run_name=f"tune {params.registered_model_name}") as parent:
        log_provenance(ws, params)
        yield parent


def _unfinished_search(experiment_id: str, params: PipelineParams) -> str:
    unfinished = mlflow.MlflowClient().search_runs(
        [experiment_id], f"tags.search = 'true' and tags.family = '{params.model.family}' and "
        "attributes.status != 'FINISHED'", order_by=["attributes.start_time DESC"], max_results=1)
    if not unfinished:
        raise GenPlatformError(f"{params.registered_model_name}: no interrupted search to resume (every search run "
                               "has finished)")
    return unfinished[0].info.run_id


def trial_runs(parent_run_id: str) -> dict[str, str]:
    """Trial id → child run id of a search."""
    parent = mlflow.get_run(parent_run_id)
    children = mlflow.MlflowClient().search_runs([parent.info.experiment_id],
                                                 f"tags.mlflow.parentRunId = '{parent_run_id}'")
    return {child.data.tags["trial_id"]: child.info.run_id for child in children if "trial_id" in child.data.tags}


class LiveTrialRuns(Callback):
    """A Tune callback (in the search's driver) that opens a child run when a trial starts and logs each of its
    epochs as it reports, so a user watching the parent run sees trials arrive and progress."""

    def __init__(self, parent: mlflow.ActiveRun, total: int):
        self.total, self.ended = total, set()
        self.tracking_uri = mlflow.get_tracking_uri()
        self.experiment_id, self.parent_id = parent.info.experiment_id, parent.info.run_id
        self.inherited = {k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.") and k != "search"}
        self.runs: dict[str, str] = {}  # Tune trial id → MLflow run id

    def get_state(self) -> dict[str, Any]:  # saved by Tune with the experiment, so a resumed search goes on
        return {"runs": self.runs, "ended": sorted(self.ended)}  # logging into the same child runs

    def set_state(self, state: dict[str, Any]) -> None:
        self.runs, self.ended = dict(state["runs"]), set(state.get("ended", []))

    def _client(self) -> mlflow.MlflowClient:
        # Made per call, not held: Tune saves its callbacks with the experiment state, and a client is not picklable.
        return mlflow.MlflowClient(self.tracking_uri)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self.runs:
            return
        client = self._client()
        run = client.create_run(self.experiment_id, run_name=trial.trial_id, tags=self.inherited | {
            "mlflow.parentRunId": self.parent_id, "trial_id": trial.trial_id})
        for key, value in trial.config.items():
            client.log_param(run.info.run_id, key, value)
        self.runs[trial.trial_id] = run.info.run_id

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:
            return
        step = int(result["epoch"])
        metrics = [mlflow.entities.Metric(epoch_metric(k), float(v), int(result.get("timestamp", 0)) * 1000, step)
                   for k, v in result.items() if k.startswith(("train_", "val_"))]
        self._client().log_batch(run_id, metrics=metrics)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, "ended")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, "failed")

    def _ended(self, trial: Any, how: str) -> None:  # the search's progress, as plain lines
        self.ended.add(trial.trial_id)
        print(f"trial {trial.trial_id} {how} ({len(self.ended)} of {self.total} trials done)", flush=True)


def log_search(search: SearchResult, runs: dict[str, str]) -> None:
    """Within the active parent run, after the search: each trial's outcome on its child run (status, error,
    final metric, `asha_stopped`), the counts and the search plot."""
    client = mlflow.MlflowClient()
    known = {trial.trial_id for trial in search.trials}
    for trial_id, run_id in runs.items():
        if trial_id not in known:  # started before a driver was killed, after Tune last saved the search
            client.set_tag(run_id, "trial_status", "lost: its driver was killed before Tune saved the trial")
            client.set_terminated(run_id, "KILLED")
    for trial in search.trials:
        run_id = runs.get(trial.trial_id)
        if run_id is None:  # a trial that failed before it started has no child run yet
            continue
        client.set_tag(run_id, "trial_status", trial.status)
        client.set_tag(run_id, "asha_stopped", str(trial.stopped_early))
        if trial.error:
            client.set_tag(run_id, "error", trial.error[:5000])
        client.log_metric(run_id, search_metric(f"final_{search.metric}"), trial.metric)
        client.set_terminated(run_id, "FAILED" if trial.status == "failed" else "FINISHED")
    mlflow.log_metrics({search_metric(f"trials_{status}"): count for status, count in search.counts().items()})
    mlflow.log_figure(search_plot(search), "search.png")


def search_plot(search: SearchResult):
    """One scatter per searched parameter: its value against the trial's final metric (ASHA-stopped hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    names = sorted(search.trials[0].sample)
    figure, axes = pyplot.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    shown = [t for t in search.trials if t.status != "failed"]
    for axis, name in zip(axes[0], names):
        for stopped in (False, True):
            chosen = [t for t in shown if t.stopped_early is stopped]
            values = [t.sample[name] for t in chosen]
            axis.scatter([str(v) if isinstance(v, str) else v for v in values], [t.metric for t in chosen],
                         facecolors="none" if stopped else "C0", edgecolors="C0",
                         label="stopped by ASHA" if stopped else "completed")
        if all(isinstance(t.sample[name], float) for t in search.trials):
            axis.set_xscale("log")
        axis.set_xlabel(name)
        axis.set_ylabel(search.metric)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure
