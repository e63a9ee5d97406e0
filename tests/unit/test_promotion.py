"""The champion rule against a real MLflow store: a worse model never takes the alias, also when two
registrations finish at the same time."""

from __future__ import annotations

from dataclasses import asdict

import contextlib
import threading

import mlflow
import pytest

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
    """The better model reads the champion first and holds there until the worse one has reached the
    promotion lock. With the lock the worse one waits, then sees the new champion; without it, it would read
    the old champion (30) and promote itself."""
    _register(store, 30.0)
    better_read, worse_at_lock = threading.Event(), threading.Event()
    read, lock = registry.current_champion, registry.promotion_lock

    def read_then_hold(*args):
        found = read(*args)
        if threading.current_thread().name == "better":
            better_read.set()
            assert worse_at_lock.wait(30), "the worse registration never reached the promotion step"
        return found

    @contextlib.contextmanager
    def observed_lock(name):
        if threading.current_thread().name == "worse":
            worse_at_lock.set()
        with lock(name):
            yield

    monkeypatch.setattr(registry, "current_champion", read_then_hold)
    monkeypatch.setattr(registry, "promotion_lock", observed_lock)
    decisions = {}
    better = threading.Thread(name="better", target=lambda: decisions.__setitem__("better", _register(store, 20.0)))
    worse = threading.Thread(name="worse", target=lambda: decisions.__setitem__("worse", _register(store, 25.0)))
    better.start()
    assert better_read.wait(30)
    worse.start()
    better.join()
    worse.join()
    assert decisions["better"].promoted
    assert not decisions["worse"].promoted and decisions["worse"].champion == 20.0
    assert _champion()[1] == 20.0


def test_a_retrain_that_did_not_promote_is_not_repeated_on_the_same_data(store):
    from gen_platform.config import parse_params

    params = parse_params({})  # vae-digits
    runs = []
    for _ in range(2):
        with mlflow.start_run() as training:
            runs.append(training.info.run_id)
    assert registry.register_run(params, store, runs[0], {"val_neg_elbo": 30.0}, "data-a").promoted
    assert registry.retrain_needed("vae-digits", "data-b")[0]  # new data: retrain
    worse = registry.register_run(params, store, runs[1], {"val_neg_elbo": 31.0}, "data-b")
    assert not worse.promoted
    needed, reason = registry.retrain_needed("vae-digits", "data-b")
    assert not needed and "promoted or not" in reason  # the same data again: nothing to gain
    assert registry.retrain_needed("vae-digits", "data-c")[0]
    version = mlflow.MlflowClient().get_model_version("vae-digits", worse.version)
    assert version.tags["data_version"] == "data-b"


def test_a_vetoed_model_is_registered_but_never_promoted(store):
    """The memorisation gate: even with no champion at all, a vetoed challenger does not take the alias."""
    with mlflow.start_run():
        decision = registry.register_and_promote(store, NAME, "champion", METRIC, 10.0,
                                                 veto="copy_rate 0.900 is above registry.max_copy_rate 0.05")
    assert not decision.promoted and decision.reason.startswith("copy_rate 0.900")
    with pytest.raises(mlflow.exceptions.MlflowException):
        mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion")
