"""Hyperparameter search with Ray Tune: every trial is one Ray Train training, ASHA stops weak trials early.

A trial is a Tune driver function that itself starts a Train controller and Train workers. The driver holds
(almost) no CPU, the workers a fraction of one, and at most as many trials run at once as their workers fit
on the cluster; otherwise a trial's driver holds CPUs its own workers wait for (docs/troubleshooting.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen_platform.config import PipelineParams
from gen_platform.data.arrays import ImageArrays
from gen_platform.errors import GenPlatformError
from gen_platform.evaluation.classifier import SavedClassifier
from gen_platform.models import get_family
from gen_platform.training.runtime import ensure_ray  # at module load: it sets Ray's environment before Ray is imported

DRIVER_CPU = 0.01  # a trial's driver only waits on its Train run


@dataclass
class Trial:
    trial_id: str
    sample: dict[str, Any]  # the family settings Tune drew for this trial
    history: list[dict[str, float]]
    metric: float
    stopped_early: bool
    checkpoint_path: str | None


@dataclass
class SearchResult:
    metric: str
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial:
        finite = [t for t in self.trials if math.isfinite(t.metric)]
        return min(finite, key=lambda t: t.metric)

    @property
    def trial_epochs(self) -> int:
        return sum(len(t.history) for t in self.trials)


def trial_params(params: PipelineParams, sample: dict[str, Any]) -> PipelineParams:
    """The pipeline params of one trial: its sampled family settings, the search's epochs and trial resources."""
    train = {"epochs": params.tune.max_epochs, "num_workers": params.tune.workers_per_trial,
             "cpus_per_worker": params.tune.cpus_per_worker}
    return params.with_overrides({"model": {params.model.family: sample}, "train": train})


def _trial(sample: dict[str, Any], setup: dict[str, Any]) -> None:
    """One Tune trial: a full Ray Train training whose reports Tune sees through TuneReportCallback."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from gen_platform.training.launcher import build_trainer

    # ASHA ends trials by killing them, and each stopped trial's Train controller would warn, with a
    # traceback, that its workers died; Tune reports a trial that really failed itself.
    trainer = build_trainer(trial_params(setup["params"], sample), setup["train"], setup["val"],
                            run_name=f"trial-{tune.get_context().get_trial_id()}", root=setup["root"],
                            classifier=setup["classifier"], callbacks=[TuneReportCallback()], log_level="ERROR")
    trainer.fit()  # a trial that ASHA stops is ended here by Tune


def run_search(params: PipelineParams, train: ImageArrays, val: ImageArrays, root: Path,
               classifier: SavedClassifier | None = None, name: str = "search", space: dict[str, Any] | None = None,
               max_concurrent: int | None = None, early_stopping: bool = True,
               reduction_factor: int = 2) -> SearchResult:
    """Search `space` (default: the family's) as `params.tune` says, with ASHA on the family's β-independent
    metric (`early_stopping=False`: every trial runs all epochs, e.g. for a reference grid)."""
    import ray
    from ray import tune
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
    from ray.tune.schedulers import ASHAScheduler

    from gen_platform.training.launcher import storage_path

    ensure_ray()
    family, settings = get_family(params.model.family), params.tune
    per_trial = settings.workers_per_trial * settings.cpus_per_worker + DRIVER_CPU
    cluster_cpus = ray.cluster_resources().get("CPU", 0)
    if per_trial > cluster_cpus:
        raise GenPlatformError(f"tune.workers_per_trial × tune.cpus_per_worker + {DRIVER_CPU} = {per_trial:.2f} CPUs "
                               f"per trial, but the Ray cluster has {cluster_cpus:g}; lower them")
    concurrency = max_concurrent or max(1, int(cluster_cpus // per_trial))
    grace = min(settings.grace_epochs or family.grace_epochs, settings.max_epochs)
    scheduler = ASHAScheduler(time_attr="epoch", max_t=settings.max_epochs, reduction_factor=reduction_factor,
                              grace_period=grace) if early_stopping else None
    if settings.optuna:
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=settings.seed)
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=settings.seed)
    setup = {"params": params, "train": train, "val": val, "root": root, "classifier": classifier}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trial, setup=setup), {"cpu": DRIVER_CPU}),
        param_space=space or family.search_space(),
        tune_config=tune.TuneConfig(metric=family.selection_metric, mode="min", scheduler=scheduler,
                                    search_alg=search_alg, num_samples=settings.trials,
                                    max_concurrent_trials=concurrency, time_budget_s=settings.time_budget_s),
        run_config=tune.RunConfig(name=name, storage_path=storage_path(params, root), verbose=0),
    )
    grid = tuner.fit()
    result = SearchResult(family.selection_metric)
    for trial_result in grid:
        frame = trial_result.metrics_dataframe
        history = [] if frame is None else [
            {k: float(v) for k, v in row.items() if k == "epoch" or k.startswith(("train_", "val_"))}
            for row in frame.to_dict("records")]
        last = history[-1].get(result.metric, math.nan) if history else math.nan
        result.trials.append(Trial(
            trial_id=str((trial_result.metrics or {}).get("trial_id", len(result.trials))),
            sample=dict(trial_result.config), history=history, metric=float(last),
            stopped_early=len(history) < settings.max_epochs,
            checkpoint_path=(trial_result.metrics or {}).get(CHECKPOINT_PATH_KEY)))
    return result
