"""MLflow record of a search: one child run per trial under the search's parent run, and a plot."""

from __future__ import annotations

import mlflow

from gen_platform.tuning.search import SearchResult


def log_search(search: SearchResult, experiment_id: str, parent_run_id: str) -> dict[str, str]:
    """Within the active parent run: child runs with params, curves, final metric, `asha_stopped`; returns
    trial id → child run id."""
    children = {}
    for trial in search.trials:
        with mlflow.start_run(experiment_id=experiment_id, nested=True, run_name=trial.trial_id,
                              tags={"trial_id": trial.trial_id, "asha_stopped": str(trial.stopped_early),
                                    "mlflow.parentRunId": parent_run_id}) as child:
            mlflow.log_params(trial.config)
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

    names = sorted(search.trials[0].config)
    figure, axes = pyplot.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        for stopped in (False, True):
            chosen = [t for t in search.trials if t.stopped_early is stopped]
            values = [t.config[name] for t in chosen]
            axis.scatter([str(v) if isinstance(v, str) else v for v in values], [t.metric for t in chosen],
                         facecolors="none" if stopped else "C0", edgecolors="C0",
                         label="stopped by ASHA" if stopped else "completed")
        if all(isinstance(t.config[name], float) for t in search.trials):
            axis.set_xscale("log")
        axis.set_xlabel(name)
        axis.set_ylabel(search.metric)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure
