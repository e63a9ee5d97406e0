"""Adding a family is one module plus one registration: a toy family, defined only in tests/unit/toy_family.py,
goes through the real train (Ray Train), evaluate and register stages without any other file knowing it."""

from __future__ import annotations

import cloudpickle
import pytest

from gen_platform import stages
from gen_platform.config import parse_params
from gen_platform.errors import ConfigError, GenPlatformError
from gen_platform.models import FAMILIES, register_family
from gen_platform.tracking.model_io import load_generator
from gen_platform.tuning.search import run_search
from gen_platform.workspace import Workspace
from tests.unit import toy_family


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray runtime for the module's trainings and searches, stopped after the last."""
    import ray

    from gen_platform.training.runtime import ensure_ray

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        ensure_ray()
        yield
        ray.shutdown()


@pytest.fixture()
def toy(monkeypatch, tmp_path, local_ray):
    monkeypatch.setitem(FAMILIES, "toy", toy_family.FAMILY)  # first, so that teardown removes it again
    register_family(toy_family.FAMILY)
    cloudpickle.register_pickle_by_value(toy_family)  # Ray workers need not import the tests package
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield toy_family.FAMILY
    cloudpickle.unregister_pickle_by_value(toy_family)


def _prepared(tmp_path, **sections):
    params = parse_params({"model": {"family": "toy", "toy": {"learning_rate": 0.5}},
                           "train": {"epochs": 2, "num_workers": 1},
                           "evaluate": {"metric_samples": 100, "nll_importance_samples": 1},
                           "classifier": {"epochs": 1}, **sections})
    ws = Workspace.at(tmp_path)
    stages.import_dataset("digits", ws)
    for stage in (stages.prepare, stages.validate, stages.features):
        stage(params, ws)
    return params, ws


def test_a_registered_family_trains_evaluates_and_registers(toy, tmp_path):
    import mlflow

    params, ws = _prepared(tmp_path)
    stages.train(params, ws)
    scores = stages.evaluate(params, ws)
    decision = stages.register(params, ws)

    assert {"val_bce", "mean_image_error", "fd", "kid"} <= set(scores)
    assert decision["model_name"] == "toy-digits" and decision["promoted"] and decision["metric"] == "val_bce"
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("toy-digits", "champion")
    run = client.get_run(champion.run_id)
    assert run.data.params["model.family"] == "toy" and run.data.params["model.toy.learning_rate"] == "0.5"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/bce")] == [1, 2]
    model = load_generator("models:/toy-digits@champion")
    assert isinstance(model, toy_family.PixelMeans) and model.sample(3).shape == (3, 1, 8, 8)


@pytest.mark.integration  # three searches: the slow tier
def test_a_failed_trial_is_reported_as_failed_never_as_stopped(toy, tmp_path):
    """The toy's search space crosses `crash` False/True: one trial trains, the other raises in its first epoch.
    A search whose every trial failed has no best trial; an Optuna search runs as well as a random one."""
    import mlflow
    from ray import tune

    params, ws = _prepared(tmp_path, tune={"trials": 1, "max_epochs": 2})
    summary = stages.tune(params, ws)
    splits = ws.load_splits()
    all_crash = run_search(params, splits["train"], splits["val"], ws.root, name="all-crash",
                           space={"model.toy.crash": True, "model.toy.learning_rate": 0.1})
    optuna = run_search(params.with_overrides({"tune": {"trials": 3, "optuna": True}}), splits["train"],
                        splits["val"], ws.root, name="optuna",
                        space={"model.toy.learning_rate": tune.loguniform(0.01, 1.0)})
    assert optuna.counts()["failed"] == 0 and len({t.sample["model.toy.learning_rate"] for t in optuna.trials}) == 3
    assert all_crash.counts() == {"finished": 0, "stopped": 0, "failed": 1}
    with pytest.raises(ConfigError, match=r"'model.toy.learnin_rate': not a setting of the toy family; expected one "
                                          r"of \['model.toy.crash', 'model.toy.learning_rate'"):
        run_search(params, splits["train"], splits["val"], ws.root, name="misspelt",
                   space={"model.toy.learnin_rate": 0.1})  # refused before any trial starts
    with pytest.raises(GenPlatformError, match=r"no trial of the search finished: .*toy family asked to crash"):
        all_crash.best
    assert (summary["trials"], summary["trials_failed"], summary["trials_stopped"]) == (2, 1, 0)
    client = mlflow.MlflowClient()
    children = client.search_runs([client.get_run(summary["parent_run_id"]).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'")
    by_status = {child.info.status: child for child in children}
    assert set(by_status) == {"FINISHED", "FAILED"}
    failed = by_status["FAILED"]
    assert failed.data.tags["trial_status"] == "failed" and failed.data.tags["asha_stopped"] == "False"
    assert "toy family asked to crash" in failed.data.tags["error"]
    # one name per setting: the trials' runs carry the params.yaml names, as a trained model's run does
    assert failed.data.params["model.toy.crash"] == "True" and "model.toy.learning_rate" in failed.data.params
