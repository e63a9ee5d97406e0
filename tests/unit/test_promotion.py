"""The champion rule against a real MLflow store: a worse model never takes the alias, also when two
registrations finish at the same time."""

from __future__ import annotations

from dataclasses import asdict

import threading
import time

import mlflow
import pytest
import torch

from gen_platform.models.vae import ConvVAE, VAEArchitecture
from gen_platform.tracking import registry
from gen_platform.checkpoint import save_checkpoint

NAME, METRIC = "vae-test", "val_neg_elbo"


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("promotion")
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    save_checkpoint(tmp_path / "model", {"model": model.state_dict()}, asdict(model.architecture), family="vae")
    return tmp_path / "model"


def _register(model_dir, value):
    with mlflow.start_run():
        return registry.register_and_promote(model_dir, NAME, "champion", METRIC, value)


def _champion():
    version = mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion")
    return str(version.version), float(version.tags[METRIC])


def test_worse_model_never_replaces_the_champion(store):
    assert _register(store, 30.0).promoted
    worse = _register(store, 31.0)
    assert not worse.promoted and worse.champion == 30.0 and worse.champion_version == "1"
    assert _champion() == ("1", 30.0)
    better = _register(store, 29.0)
    assert better.promoted and _champion() == ("3", 29.0)
    version = mlflow.MlflowClient().get_model_version(NAME, "2")
    assert version.tags["promotion.promoted"] == "False" and version.tags["promotion.champion_value"] == "30.0"


def test_concurrent_registrations_leave_the_better_champion(store, monkeypatch):
    _register(store, 30.0)
    read = registry.current_champion

    def slow_read(*args):
        found = read(*args)
        time.sleep(1.0)  # widen the window between reading the champion and moving the alias
        return found

    monkeypatch.setattr(registry, "current_champion", slow_read)
    decisions = {}
    better = threading.Thread(target=lambda: decisions.__setitem__("better", _register(store, 20.0)))
    worse = threading.Thread(target=lambda: decisions.__setitem__("worse", _register(store, 25.0)))
    better.start()
    time.sleep(0.3)
    worse.start()
    better.join()
    worse.join()
    assert decisions["better"].promoted
    assert not decisions["worse"].promoted and decisions["worse"].champion == 20.0
    assert _champion()[1] == 20.0
