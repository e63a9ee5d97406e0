"""Hyperparameter search with Ray Tune: every trial is one Ray Train training, ASHA stops weak trials early.

Resource accounting (what made searches hang on a 2-CPU runtime): a trial is a Tune driver function that
itself starts a Train controller and Train workers. The driver must hold (almost) no CPU, the workers a
fraction of one, and at most as many trials may run as their workers fit on the cluster at once;
otherwise a trial's driver holds CPUs its own workers wait for. See README, "Tuning".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen_platform.config import PipelineParams, deep_merge
from gen_platform.data.arrays import ImageArrays
from gen_platform.errors import GenPlatformError
from gen_platform.models import family as model_family
from gen_platform.training.runtime import ensure_ray  # at module load: it sets Ray's environment before Ray is imported

DRIVER_CPU = 0.01  # a trial's driver only waits on its Train run
GRACE_EPOCHS = {"vae": 1, "gan": 2}  # GAN metrics are noisy early: judge them later


def search_space(family: str) -> dict[str, Any]:
    from ray import tune

    if family == "vae":
        return {"beta": tune.loguniform(0.1, 10.0), "learning_rate": tune.loguniform(3e-4, 3e-3),
                "latent_dim": tune.choice([8, 16, 32])}
    return {"d_steps_per_g_step": tune.choice([1, 2, 3, 5]), "g_learning_rate": tune.loguniform(5e-5, 5e-4),
            "d_learning_rate": tune.loguniform(5e-5, 5e-4), "loss": tune.choice(["non_saturating", "hinge", "wgan_gp"])}


@dataclass
class Trial:
    trial_id: str
    config: dict[str, Any]
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


def trial_params(params: PipelineParams, config: dict[str, Any], epochs: int) -> PipelineParams:
    """The pipeline params of one trial: its sampled model settings, the search's epochs and trial resources."""
    train = {"epochs": epochs, "num_workers": params.tune.workers_per_trial,
             "cpus_per_worker": params.tune.cpus_per_worker}
    return type(params).model_validate(deep_merge(params.model_dump(), {"model": config, "train": train}))


def _trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """One Tune trial: a full Ray Train training whose reports Tune sees through TuneReportCallback."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from gen_platform.training.launcher import build_trainer

    params = trial_params(setup["params"], config, setup["epochs"])
    # ASHA ends trials by killing them, and each stopped trial's Train controller would warn, with a
    # traceback, that its workers died; Tune reports a trial that really failed itself.
    trainer = build_trainer(params, setup["train"], setup["val"], run_name=f"trial-{tune.get_context().get_trial_id()}",
                            root=setup["root"], classifier=setup["classifier"], callbacks=[TuneReportCallback()],
                            log_level="ERROR")
    trainer.fit()  # a trial that ASHA stops is ended here by Tune


def run_search(params: PipelineParams, train: ImageArrays, val: ImageArrays, root: Path, trials: int,
               max_epochs: int, classifier: dict[str, Any] | None = None, name: str = "search",
               optuna: bool = False, grace_epochs: int | None = None, space: dict[str, Any] | None = None,
               max_concurrent: int | None = None, early_stopping: bool = True,
               reduction_factor: int = 2) -> SearchResult:
    """Search `space` (default: the family's) with ASHA on the family's β-independent metric
    (`early_stopping=False`: every trial runs all epochs, e.g. for a reference grid)."""
    import ray
    from ray import tune
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
    from ray.tune.schedulers import ASHAScheduler

    from gen_platform.training.launcher import storage_path

    ensure_ray()
    family = params.model.family
    metric = model_family(family).SELECTION_METRIC
    per_trial = params.tune.workers_per_trial * params.tune.cpus_per_worker + DRIVER_CPU
    cluster_cpus = ray.cluster_resources().get("CPU", 0)
    if per_trial > cluster_cpus:
        raise GenPlatformError(f"tune.workers_per_trial × tune.cpus_per_worker + {DRIVER_CPU} = {per_trial:.2f} CPUs "
                               f"per trial, but the Ray cluster has {cluster_cpus:g}; lower them")
    concurrency = max_concurrent or max(1, int(cluster_cpus // per_trial))
    scheduler = ASHAScheduler(time_attr="epoch", max_t=max_epochs, reduction_factor=reduction_factor,
                              grace_period=min(grace_epochs or GRACE_EPOCHS[family], max_epochs)) if early_stopping else None
    if optuna:
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=params.tune.seed)
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=params.tune.seed)
    setup = {"params": params, "train": train, "val": val, "root": root, "classifier": classifier,
             "epochs": max_epochs}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trial, setup=setup), {"cpu": DRIVER_CPU}),
        param_space=space or search_space(family),
        tune_config=tune.TuneConfig(metric=metric, mode="min", scheduler=scheduler, search_alg=search_alg,
                                    num_samples=trials, max_concurrent_trials=concurrency,
                                    time_budget_s=params.tune.time_budget_s),
        run_config=tune.RunConfig(name=name, storage_path=storage_path(params, root), verbose=0),
    )
    grid = tuner.fit()
    result = SearchResult(metric)
    for trial_result in grid:
        frame = trial_result.metrics_dataframe
        history = [] if frame is None else [
            {k: float(v) for k, v in row.items() if k == "epoch" or k.startswith(("train_", "val_"))}
            for row in frame.to_dict("records")]
        epochs_run = len(history)
        last = history[-1].get(metric, math.nan) if history else math.nan
        result.trials.append(Trial(
            trial_id=str((trial_result.metrics or {}).get("trial_id", len(result.trials))), config=dict(trial_result.config),
            history=history, metric=float(last), stopped_early=epochs_run < max_epochs,
            checkpoint_path=(trial_result.metrics or {}).get(CHECKPOINT_PATH_KEY)))
    return result
