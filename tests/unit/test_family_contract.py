"""Adding a family is one module plus one registration: a toy family, defined only in tests/unit/toy_family.py,
goes through the real train (Ray Train), evaluate and register stages without any other file knowing it."""

from __future__ import annotations

import cloudpickle
import pytest

from gen_platform import stages
from gen_platform.config import parse_params
from gen_platform.models import FAMILIES, register_family
from gen_platform.tracking.model_io import load_generator
from gen_platform.workspace import Workspace
from tests.unit import toy_family


@pytest.fixture()
def toy(monkeypatch):
    monkeypatch.setitem(FAMILIES, "toy", register_family(toy_family.FAMILY))
    cloudpickle.register_pickle_by_value(toy_family)  # Ray workers need not import the tests package
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield toy_family.FAMILY
    cloudpickle.unregister_pickle_by_value(toy_family)


def test_a_registered_family_trains_evaluates_and_registers(toy, tmp_path):
    import mlflow
    import ray

    params = parse_params({"model": {"family": "toy", "toy": {"learning_rate": 0.5}},
                           "train": {"epochs": 2, "num_workers": 1},
                           "evaluate": {"metric_samples": 100, "nll_importance_samples": 1},
                           "classifier": {"epochs": 1}})
    ws = Workspace.at(tmp_path)
    stages.import_dataset("digits", ws)
    for stage in (stages.prepare, stages.validate, stages.features):
        stage(params, ws)
    try:
        stages.train(params, ws)
    finally:
        ray.shutdown()
    scores = stages.evaluate(params, ws)
    decision = stages.register(params, ws)

    assert {"val_bce", "mean_image_error", "fd", "kid"} <= set(scores)
    assert decision["model_name"] == "toy-digits" and decision["promoted"] and decision["metric"] == "val_bce"
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("toy-digits", "champion")
    run = client.get_run(champion.run_id)
    assert run.data.params["model.family"] == "toy" and run.data.params["model.learning_rate"] == "0.5"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_bce")] == [1, 2]
    model = load_generator("models:/toy-digits@champion")
    assert isinstance(model, toy_family.PixelMeans) and model.sample(3).shape == (3, 1, 8, 8)
