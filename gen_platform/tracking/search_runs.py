"""MLflow record of a search: a parent run, one child run per trial under it, and a plot."""

from __future__ import annotations

import contextlib
from typing import Iterator

import mlflow

from gen_platform.config import PipelineParams
from gen_platform.tracking.lineage import lineage_tags
from gen_platform.tracking.store import use_experiment
from gen_platform.tuning.search import SearchResult
from gen_platform.workspace import Workspace


@contextlib.contextmanager
def search_run(ws: Workspace, params: PipelineParams) -> Iterator[mlflow.ActiveRun]:
    """The parent run of a search, with the lineage tags of a training."""
    experiment_id = use_experiment(ws.root, params.registered_model_name)
    tags = lineage_tags(ws.root, params) | {"search": "true"}
    with mlflow.start_run(experiment_id=experiment_id, tags=tags, run_name=f"tune-{params.model.family}") as parent:
        yield parent


def log_search(search: SearchResult, parent: mlflow.ActiveRun) -> dict[str, str]:
    """Within the active parent run: child runs with the parent's lineage tags, the trial's sample as params,
    curves, final metric and `asha_stopped`; returns trial id → child run id."""
    inherited = {k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.") and k != "search"}
    children = {}
    for trial in search.trials:
        tags = inherited | {"trial_id": trial.trial_id, "asha_stopped": str(trial.stopped_early)}
        with mlflow.start_run(experiment_id=parent.info.experiment_id, nested=True, run_name=trial.trial_id,
                              tags=tags) as child:
            mlflow.log_params(trial.sample)
            for record in trial.history:
                mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))
            mlflow.log_metric(f"final_{search.metric}", trial.metric)
            children[trial.trial_id] = child.info.run_id
    mlflow.log_figure(search_plot(search), "search.png")
    return children


def search_plot(search: SearchResult):
    """One scatter per searched parameter: its value against the trial's final metric (ASHA-stopped hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    names = sorted(search.trials[0].sample)
    figure, axes = pyplot.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        for stopped in (False, True):
            chosen = [t for t in search.trials if t.stopped_early is stopped]
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
