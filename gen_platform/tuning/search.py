"""Hyperparameter search with Ray Tune: ASHA stops weak trials early, and every trial is accounted for.

A trial with one worker (the default) is a plain Tune function trainable: one process that runs the training
loop and reports straight to Tune, so when ASHA stops it or it fails, Tune ends it and its placement group
itself and nothing else holds CPUs. Its process then runs the next trial (Tune's `reuse_actors`): a new
process would import Ray, torch and the platform again (an 8-trial search on digits took 48 s of CPU in 8
trial processes, 21 s in 2). Tune starts a new one after a failure, or when a stopped trial's loop does not
return within 2 s (an epoch longer than that). A trial with several workers runs a Ray Train `TorchTrainer`
from a 0.01-CPU driver (DDP inside the trial); see docs/troubleshooting.md for what that costs on a small
machine.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gen_platform.config import PipelineParams
from gen_platform.data.arrays import ImageArrays
from gen_platform.data.shards import ShardedSplit
from gen_platform.errors import GenPlatformError
from gen_platform.evaluation.classifier import SavedClassifier
from gen_platform.models import Family, get_family
from gen_platform.settings import TuneParams
from gen_platform.training.capacity import Bundle, await_resources, cluster_capacity, worker_bundles
from gen_platform.training.runtime import ensure_ray, owns_local_runtime

DRIVER_CPU = 0.01  # the driver of a multi-worker trial only waits on its Train run
TrialStatus = Literal["finished", "stopped", "failed"]


@dataclass
class Trial:
    trial_id: str
    sample: dict[str, Any]  # the family settings Tune drew for this trial, by their params.yaml names
    history: list[dict[str, float]]
    metric: float
    status: TrialStatus  # finished all epochs, stopped by ASHA, or failed (error, or cut by the time budget)
    checkpoint_path: str | None
    error: str | None = None

    @property
    def stopped_early(self) -> bool:
        return self.status == "stopped"


@dataclass
class SearchResult:
    metric: str
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial:
        usable = [t for t in self.trials if t.status != "failed" and math.isfinite(t.metric) and t.checkpoint_path]
        if not usable:
            raise GenPlatformError(f"no trial of the search finished: {self.counts()}; first error: "
                                   f"{next((t.error for t in self.trials if t.error), 'none recorded')}")
        return min(usable, key=lambda t: t.metric)

    @property
    def trial_epochs(self) -> int:
        return sum(len(t.history) for t in self.trials)

    def counts(self) -> dict[str, int]:
        return {status: sum(t.status == status for t in self.trials) for status in ("finished", "stopped", "failed")}


def trial_params(params: PipelineParams, sample: dict[str, Any], family: Family) -> PipelineParams:
    """The pipeline params of one trial: its sampled family settings (`model.<family>.<field>` keys), the
    search's epochs and trial resources. Built from `family` itself, not the registry: trials run in Ray
    workers, where a family registered at run time (a plugin, a test) is unknown."""
    settings = family.settings.model_validate(params.model.settings.model_dump() | family.fields_of(sample))
    train = params.train.model_copy(update={"epochs": params.tune.max_epochs, "num_workers": params.tune.workers_per_trial,
                                            "cpus_per_worker": params.tune.cpus_per_worker})
    return params.model_copy(update={"model": params.model.model_copy(update={family.name: settings}), "train": train})


def _single_process_trial(sample: dict[str, Any], setup: dict[str, Any]) -> None:
    from gen_platform.training.launcher import resolve_use_gpu
    from gen_platform.training.loop import TrainingInputs, TuneSession, run_epochs

    params = trial_params(setup["params"], sample, setup["family"])
    inputs = TrainingInputs(params, setup["family"], setup["train"], setup["val"], setup["classifier"])
    run_epochs(inputs, TuneSession(resolve_use_gpu(params.train.use_gpu, 1)))


def _distributed_trial(sample: dict[str, Any], setup: dict[str, Any]) -> None:
    """A Ray Train training whose reports Tune sees through TuneReportCallback."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from gen_platform.training.launcher import build_trainer

    trainer = build_trainer(trial_params(setup["params"], sample, setup["family"]), setup["train"], setup["val"],
                            run_name=f"trial-{tune.get_context().get_trial_id()}", root=setup["root"],
                            classifier=setup["classifier"], callbacks=[TuneReportCallback()], log_level="ERROR",
                            family=setup["family"])
    trainer.fit()
    _await_reports_delivered()


def _await_reports_delivered(timeout: float = 30.0) -> None:
    """Wait until Tune has taken the Train run's last report. TuneReportCallback passes reports through a queue
    of one item that Tune polls only while this function runs: returning at once lost a trial's final epoch
    (seen in bench/tune_soak.py: a 2-worker trial "ended after 3 of 4 epochs"), which made it a failure."""
    from ray.train._internal.session import get_session

    reports = get_session()._get_or_create_inter_actor_queue()
    deadline = time.monotonic() + timeout
    while not reports.empty() and time.monotonic() < deadline:
        time.sleep(0.05)


def _recording_asha(record: Path, **settings: Any) -> Any:
    """ASHA that writes down the trials it stopped (to `record`, so the list survives a resumed search): a
    stop is never confused with a failure."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP:
                record.write_text(json.dumps(sorted(set(_stopped_by_asha(record)) | {trial.trial_id})))
            return decision

    record.parent.mkdir(parents=True, exist_ok=True)
    return RecordingASHA(**settings)


def _stopped_by_asha(record: Path) -> list[str]:
    return json.loads(record.read_text()) if record.exists() else []


def run_search(params: PipelineParams, train: ImageArrays | ShardedSplit, val: ImageArrays | ShardedSplit, root: Path,
               classifier: SavedClassifier | None = None, name: str = "search", space: dict[str, Any] | None = None,
               max_concurrent: int | None = None, early_stopping: bool = True, reduction_factor: int = 2,
               callbacks: list | None = None, resume: bool = False) -> SearchResult:
    """Search `space` (default: the family's) as `params.tune` says, with ASHA on the family's β-independent
    metric (`early_stopping=False`: every trial runs all epochs, e.g. for a reference grid). `callbacks` are
    Tune callbacks (e.g. live MLflow child runs). `resume`: continue the interrupted search called `name`
    with Tune's restore (its finished trials are kept, its unfinished ones resume from their checkpoints;
    the callbacks and scheduler are the ones it started with)."""
    from gen_platform.training.launcher import as_sharded

    ensure_ray()
    if not owns_local_runtime():  # a cluster: its autoscaler may have to add nodes before the first trial starts
        await_resources(trial_bundles(params), params.train.resource_timeout_s, "a trial of the search")
    # in-memory splits (benchmarks, tests) are written once beside the search, so a resumed search finds them
    train, val = as_sharded(train, root / ".tune" / name / "train"), as_sharded(val, root / ".tune" / name / "val")
    record = root / ".tune" / f"{name}.asha_stopped.json"
    setup = {"params": params, "family": get_family(params.model.family), "train": train, "val": val, "root": root,
             "classifier": classifier}
    tuner = build_tuner(setup, name, space, max_concurrent, record if early_stopping else None, reduction_factor,
                        callbacks, resume)
    return collect_trials(tuner.fit(), setup["family"].selection_metric, set(_stopped_by_asha(record)), params.tune)


def trial_bundles(params: PipelineParams) -> list[Bundle]:
    """What one trial holds: its single worker's CPUs (and GPU), or a small driver beside its Ray Train workers."""
    from gen_platform.training.launcher import resolve_use_gpu

    settings = params.tune
    if settings.workers_per_trial == 1:
        return worker_bundles(1, settings.cpus_per_worker, resolve_use_gpu(params.train.use_gpu, 1))
    return [{"CPU": DRIVER_CPU}, *worker_bundles(settings.workers_per_trial, settings.cpus_per_worker,
                                                 resolve_use_gpu(params.train.use_gpu, settings.workers_per_trial))]


def _concurrency(params: PipelineParams, max_concurrent: int | None) -> int:
    """How many trials run at once (unless `max_concurrent`): as many as the cluster's CPUs hold now or, on an
    autoscaling cluster, once its autoscaler has added every node it may. Where a cluster's autoscaler does not
    report its node types, every trial is let in: the pending ones are the demand it scales for."""
    settings = params.tune
    single = settings.workers_per_trial == 1
    per_trial = sum(bundle["CPU"] for bundle in trial_bundles(params))
    capacity = cluster_capacity()
    if not (max_concurrent or owns_local_runtime() or capacity.node_types_known):
        return settings.trials
    cluster_cpus = capacity.maxima.get("CPU", 0)
    if per_trial > cluster_cpus:
        raise GenPlatformError(f"a trial needs {per_trial:.2f} CPUs (tune.workers_per_trial × tune.cpus_per_worker"
                               f"{'' if single else f' + {DRIVER_CPU}'}), but the Ray cluster has {cluster_cpus:g}; lower them")
    return max_concurrent or max(1, min(settings.trials, int(cluster_cpus // per_trial)))


def _trainable(setup: dict[str, Any]) -> Any:
    """A single-process trial (one worker) holds its CPUs (and GPU) itself; a multi-worker trial is a small driver
    whose Ray Train workers ask for theirs."""
    from ray import tune

    params = setup["params"]
    if params.tune.workers_per_trial == 1:
        (bundle,) = trial_bundles(params)
        return tune.with_resources(tune.with_parameters(_single_process_trial, setup=setup),
                                   {"cpu": bundle["CPU"], "gpu": bundle.get("GPU", 0)})
    return tune.with_resources(tune.with_parameters(_distributed_trial, setup=setup), {"cpu": DRIVER_CPU})


def build_tuner(setup: dict[str, Any], name: str, space: dict[str, Any] | None, max_concurrent: int | None,
                asha_record: Path | None, reduction_factor: int, callbacks: list | None, resume: bool) -> Any:
    """The Tuner of a new search, or of the interrupted one called `name` (`resume`). `asha_record`: where ASHA
    writes the trials it stopped (None: no early stopping)."""
    from ray import tune

    from gen_platform.training.launcher import storage_path

    params, family, root = setup["params"], setup["family"], setup["root"]
    settings = params.tune
    space = space or family.qualified_space()
    family.fields_of(space)  # a misspelt name fails here, not in every trial
    experiment = f"{storage_path(params, root).rstrip('/')}/{name}"
    if resume:
        if not tune.Tuner.can_restore(experiment):
            raise GenPlatformError(f"{experiment}: no interrupted search to resume there")
        return tune.Tuner.restore(experiment, trainable=_trainable(setup), resume_unfinished=True)
    grace = min(settings.grace_epochs or family.grace_epochs, settings.max_epochs)
    scheduler = None if asha_record is None else _recording_asha(
        asha_record, time_attr="epoch", max_t=settings.max_epochs, reduction_factor=reduction_factor,
        grace_period=grace)
    if settings.optuna:
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=settings.seed)
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=settings.seed)
    return tune.Tuner(
        _trainable(setup),
        param_space=space,
        tune_config=tune.TuneConfig(metric=family.selection_metric, mode="min", scheduler=scheduler,
                                    search_alg=search_alg, num_samples=settings.trials,
                                    max_concurrent_trials=_concurrency(params, max_concurrent),
                                    time_budget_s=settings.time_budget_s, reuse_actors=settings.workers_per_trial == 1),
        run_config=tune.RunConfig(name=name, storage_path=storage_path(params, root), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), callbacks=callbacks),
    )


def collect_trials(grid: Any, metric: str, stopped_by_asha: set[str], settings: TuneParams) -> SearchResult:
    """Every trial of a finished `tuner.fit()` as finished, stopped (by ASHA) or failed, with its history."""
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

    from gen_platform.training.launcher import checkpoint_uri

    result = SearchResult(metric)
    for index, trial_result in enumerate(grid):
        metrics = trial_result.metrics or {}
        frame = trial_result.metrics_dataframe
        history = [] if frame is None else [
            {k: float(v) for k, v in row.items() if k == "epoch" or k.startswith(("train_", "val_"))}
            for row in frame.to_dict("records")]
        trial_id = str(metrics.get("trial_id") or Path(trial_result.path).name or index)
        if trial_result.error is None and len(history) >= settings.max_epochs:
            status, error = "finished", None
        elif trial_result.error is None and trial_id in stopped_by_asha:
            status, error = "stopped", None
        else:
            status = "failed"
            error = (str(trial_result.error).strip().splitlines() or ["error"])[-1] if trial_result.error else (
                f"ended after {len(history)} of {settings.max_epochs} epochs without being stopped by ASHA "
                f"(cut by tune.time_budget_s = {settings.time_budget_s} s?)")
        checkpoint = checkpoint_uri(trial_result.checkpoint) if trial_result.checkpoint else metrics.get(CHECKPOINT_PATH_KEY)
        result.trials.append(Trial(trial_id, dict(trial_result.config), history,
                                   float(history[-1].get(result.metric, math.nan)) if history else math.nan,
                                   status, checkpoint, error))
    return result
