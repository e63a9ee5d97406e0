"""The champion rule against a real MLflow store: a worse model never takes the alias, also when two
registrations finish at the same time."""

from __future__ import annotations

from dataclasses import asdict

import contextlib
import os
import threading

import mlflow
import numpy as np
import pytest
import torch

from gen_platform.errors import IncompleteRunRecord, PromotionLockTimeout
from gen_platform.evaluation.bootstrap import paired_mean_difference
from gen_platform.models.vae import ConvVAE, VAEArchitecture, importance_weighted_log_likelihoods
from gen_platform.tracking import registry
from gen_platform.checkpoint import save_checkpoint
from gen_platform.tracking.accepted_data import accepted_profile
from gen_platform.tracking.model_io import load_model_dir
from gen_platform.validation.drift import DataProfile

NAME, METRIC = "vae-test", "val_neg_elbo"


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # artifacts beside the store: the default location is ./mlruns of the current directory (the repository)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("promotion", (tmp_path / "artifacts").as_uri()))
    return _model_dir(tmp_path / "model", seed=0)


def _model_dir(path, seed):
    torch.manual_seed(seed)
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    save_checkpoint(path, {"model": model.state_dict()}, asdict(model.architecture), family="vae")
    return path


class Evaluations:
    """Constructed per-image NLLs on one shared set of evaluation images. A version's per-image values are
    found through its registered mean (its METRIC tag), so a comparison never waits for a registration to
    return (the concurrency test compares with a champion whose registration is still finishing)."""

    def __init__(self):
        self.by_mean: dict[float, np.ndarray] = {}

    def register(self, model_dir, per_image, min_improvement=0.0):
        per_image = np.asarray(per_image, dtype=float)
        self.by_mean[float(per_image.mean())] = per_image

        def compare_with(champion_version):
            champion_mean = float(mlflow.MlflowClient().get_model_version(NAME, champion_version).tags[METRIC])
            return paired_mean_difference("val_nll", self.by_mean[champion_mean], per_image, 0.95, 1000)

        with mlflow.start_run():
            return registry.register_and_promote(model_dir, NAME, "champion", METRIC, float(per_image.mean()),
                                                 compare_with, min_improvement)


DIFFICULTY = np.random.default_rng(0).normal(30.0, 5.0, 300)  # per-image NLL of the first champion
NOISE = np.random.default_rng(1).normal(0.0, 1.0, 300)


def _champion():
    return str(mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion").version)


def test_worse_model_never_replaces_the_champion(store):
    evaluations = Evaluations()
    assert evaluations.register(store, DIFFICULTY).promoted
    worse = evaluations.register(store, DIFFICULTY + 1.0 + 0.1 * NOISE)
    assert not worse.promoted and worse.champion_version == "1" and _champion() == "1"
    assert worse.comparison["high"] < 0 < worse.comparison["challenger"] - worse.comparison["champion"]
    better = evaluations.register(store, DIFFICULTY - 1.0 + 0.1 * NOISE)
    assert better.promoted and better.comparison["low"] > 0.9 and _champion() == "3"
    tags = mlflow.MlflowClient().get_model_version(NAME, "2").tags
    assert tags["promotion.promoted"] == "False" and tags["promotion.metric"] == "val_nll"
    assert float(tags["promotion.champion_value"]) == pytest.approx(DIFFICULTY.mean())
    assert float(tags["promotion.ci_low"]) <= float(tags["promotion.improvement"]) <= float(tags["promotion.ci_high"])
    assert tags["promotion.samples"] == "300" and tags["promotion.confidence"] == "0.95"


def test_an_improvement_within_the_noise_is_not_promoted(store):
    """The same mean improvement (0.1 nats/image) twice: once with per-image noise of ±3 nats, which the point
    rule would promote on, and once with ±0.1, which is a real improvement."""
    evaluations = Evaluations()
    evaluations.register(store, DIFFICULTY)
    centred = NOISE - NOISE.mean()
    noisy = evaluations.register(store, DIFFICULTY - 0.1 + 3.0 * centred)
    assert noisy.comparison["improvement"] == pytest.approx(0.1)
    assert noisy.comparison["low"] < 0 and not noisy.promoted and "min_improvement 0.0" in noisy.reason
    clear = evaluations.register(store, DIFFICULTY - 0.1 + 0.1 * centred)
    assert clear.comparison["improvement"] == pytest.approx(0.1) and clear.promoted


def test_min_improvement_applies_to_the_lower_bound(store):
    evaluations = Evaluations()
    evaluations.register(store, DIFFICULTY)
    gain_of_one = DIFFICULTY - 1.0 + 0.3 * NOISE
    assert not evaluations.register(store, gain_of_one, min_improvement=1.5).promoted
    assert evaluations.register(store, gain_of_one, min_improvement=0.5).promoted


def test_concurrent_registrations_leave_the_better_champion(store, monkeypatch):
    """The better model reads the champion first and holds there until the worse one has reached the
    promotion lock. With the lock the worse one waits, then compares with the new champion; without it, it
    would compare with the old champion and promote itself."""
    evaluations = Evaluations()
    evaluations.register(store, DIFFICULTY)
    better_read, worse_at_lock = threading.Event(), threading.Event()
    read, lock = registry.current_champion, registry.promotion_lock

    def read_then_hold(*args):
        found = read(*args)
        if threading.current_thread().name == "better":
            better_read.set()
            assert worse_at_lock.wait(30), "the worse registration never reached the promotion step"
        return found

    @contextlib.contextmanager
    def observed_lock(client, name):
        if threading.current_thread().name == "worse":
            worse_at_lock.set()
        with lock(client, name):
            yield

    monkeypatch.setattr(registry, "current_champion", read_then_hold)
    monkeypatch.setattr(registry, "promotion_lock", observed_lock)
    decisions = {}

    def register(name, per_image):
        decisions[name] = evaluations.register(store, per_image)

    better = threading.Thread(name="better", target=register, args=("better", DIFFICULTY - 10 + 0.1 * NOISE))
    worse = threading.Thread(name="worse", target=register, args=("worse", DIFFICULTY - 5 + 0.1 * NOISE))
    better.start()
    assert better_read.wait(30)
    worse.start()
    better.join()
    worse.join()
    assert decisions["better"].promoted
    assert not decisions["worse"].promoted and decisions["worse"].champion_version == decisions["better"].version
    assert _champion() == decisions["better"].version


def _images(seed, n=24):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _trained_on(data_version: str) -> DataProfile:
    return DataProfile(images=24, image_size=8, channels=1, channel_mean=(0.5,), channel_std=(0.29,), sharpness=0.33,
                       class_fractions={"0": 1.0}, data_version=data_version)


def _registration_run():
    with mlflow.start_run() as training:
        return training.info.run_id


def test_the_champion_is_rescored_on_the_current_data(store, tmp_path):
    """A challenger trained on new data is compared with the champion's NLL on the *new* validation images
    (re-evaluated then), not with the number the champion earned on its own data."""
    from gen_platform.config import parse_params

    params = parse_params({"evaluate": {"nll_importance_samples": 4}})
    old_images, new_images = _images(0), _images(1)
    registry.register_run(params, store, _registration_run(), {"val_neg_elbo": 30.0}, _trained_on("data-a"),
                          old_images, None)
    challenger_dir = _model_dir(tmp_path / "challenger", seed=1)
    decision = registry.register_run(params, challenger_dir, _registration_run(), {"val_neg_elbo": 31.0},
                                     _trained_on("data-b"), new_images, None)

    def nll_on_new_data(model_dir):
        model = load_model_dir(model_dir)
        return -importance_weighted_log_likelihoods(model, new_images, 4, seed=params.evaluate.seed).mean().item()

    comparison = decision.comparison
    assert comparison["metric"] == "val_nll" and comparison["samples"] == len(new_images)
    assert comparison["champion"] == pytest.approx(nll_on_new_data(store), rel=1e-6)
    assert comparison["challenger"] == pytest.approx(nll_on_new_data(challenger_dir), rel=1e-6)
    assert decision.promoted == (comparison["low"] > 0)


def test_a_retrain_that_did_not_promote_is_not_repeated_on_the_same_data(store):
    """The same weights registered again gain exactly nothing (interval [0, 0]): not promoted."""
    from gen_platform.config import parse_params

    params, images = parse_params({"evaluate": {"nll_importance_samples": 4}}), _images(0)
    assert registry.register_run(params, store, _registration_run(), {"val_neg_elbo": 30.0}, _trained_on("data-a"),
                                 images, None).promoted
    assert registry.retrain_needed("vae-digits", "data-b")[0]  # new data: retrain
    same = registry.register_run(params, store, _registration_run(), {"val_neg_elbo": 30.0}, _trained_on("data-b"),
                                 images, None)
    assert not same.promoted and same.comparison["low"] == same.comparison["high"] == 0
    needed, reason = registry.retrain_needed("vae-digits", "data-b")
    assert not needed and "promoted or not" in reason  # the same data again: nothing to gain
    assert registry.retrain_needed("vae-digits", "data-c")[0]
    version = mlflow.MlflowClient().get_model_version("vae-digits", same.version)
    assert version.tags["data_version"] == "data-b"
    # registered, promoted or not: the data it trained on is what the drift gate compares the next version with
    accepted, accepted_by = accepted_profile(mlflow.MlflowClient(), "vae-digits")
    assert accepted == _trained_on("data-b") and accepted_by == f"registration of version {same.version}"


def test_a_vetoed_model_is_registered_but_never_promoted(store):
    """The memorisation gate: even with no champion at all, a vetoed challenger does not take the alias."""

    def never(champion_version):
        raise AssertionError("a vetoed model is not compared")

    with mlflow.start_run():
        decision = registry.register_and_promote(store, NAME, "champion", METRIC, 10.0, never,
                                                 veto="copy_rate 0.900 is above registry.max_copy_rate 0.05")
    assert not decision.promoted and decision.reason.startswith("copy_rate 0.900")
    with pytest.raises(mlflow.exceptions.MlflowException):
        mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion")


def test_a_retried_registration_reuses_the_version_its_failed_attempt_created(store, monkeypatch):
    """The first attempt dies between registering the version and moving the alias; the retry (a Prefect task
    retry runs the same stage again, on the same MLflow run) registers nothing new and moves the alias."""
    read = registry.current_champion
    attempts = []

    def fail_first_attempt(*args):
        attempts.append(args)
        if len(attempts) == 1:
            raise ConnectionError("the tracking server went away")
        return read(*args)

    monkeypatch.setattr(registry, "current_champion", fail_first_attempt)
    never = lambda version: pytest.fail("there is no champion to compare with")  # noqa: E731
    with mlflow.start_run() as training:
        with pytest.raises(ConnectionError):
            registry.register_and_promote(store, NAME, "champion", METRIC, 10.0, never)
        assert [str(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name='{NAME}'")] == ["1"]
        decision = registry.register_and_promote(store, NAME, "champion", METRIC, 10.0, never)
    versions = mlflow.MlflowClient().search_model_versions(f"name='{NAME}'")
    assert [(str(v.version), v.run_id) for v in versions] == [("1", training.info.run_id)]
    assert decision.promoted and decision.version == "1" and _champion() == "1"


def test_a_retry_after_the_alias_moved_keeps_the_promotion(store, monkeypatch):
    """The first attempt moved the alias and died before recording its decision: the retry neither registers
    again nor compares the version with itself (which would record it as not promoted)."""
    client = mlflow.MlflowClient()
    tag = client.set_model_version_tag
    attempts = []

    def fail_at_the_first_decision_tag(name, version, key, value):
        if key == "promotion.promoted" and not attempts:
            attempts.append(version)
            raise ConnectionError("the tracking server went away")
        return tag(name, version, key, value)

    monkeypatch.setattr(mlflow.MlflowClient, "set_model_version_tag",
                        lambda self, *args: fail_at_the_first_decision_tag(*args))
    with mlflow.start_run():
        with pytest.raises(ConnectionError):
            registry.register_and_promote(store, NAME, "champion", METRIC, 10.0, lambda v: pytest.fail("compared"))
        assert _champion() == "1"
        decision = registry.register_and_promote(store, NAME, "champion", METRIC, 10.0,
                                                 lambda v: pytest.fail("compared with itself"))
    assert decision.promoted and "earlier attempt" in decision.reason
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1
    assert client.get_model_version(NAME, "1").tags["promotion.promoted"] == "True"


def test_a_promotion_lock_whose_holder_died_is_broken_after_its_lease(store, monkeypatch, capsys):
    client = mlflow.MlflowClient()
    client.create_registered_model(NAME + registry.LOCK_SUFFIX, tags={
        registry.LOCK_OWNER_TAG: "elsewhere:4242:dead", registry.LOCK_EXPIRES_TAG: "0"})
    with registry.promotion_lock(client, NAME):
        holder = client.get_registered_model(NAME + registry.LOCK_SUFFIX).tags[registry.LOCK_OWNER_TAG]
        assert holder != "elsewhere:4242:dead"
    assert "holder elsewhere:4242:dead let its lease run out" in capsys.readouterr().out
    assert not client.search_registered_models(f"name='{NAME + registry.LOCK_SUFFIX}'")  # released


def test_a_registration_waits_a_bounded_time_for_a_held_lock(store, monkeypatch):
    client = mlflow.MlflowClient()
    monkeypatch.setenv("GENP_PROMOTION_LOCK_WAIT_S", "0")
    with registry.promotion_lock(client, NAME):
        with pytest.raises(PromotionLockTimeout, match=rf"{NAME}: the promotion lock .* was held by \S+:{os.getpid()}:"):
            with registry.promotion_lock(client, NAME, poll_s=0.01):
                pytest.fail("a held lock was taken twice")


def test_registration_refuses_a_run_whose_record_is_incomplete(store):
    client = mlflow.MlflowClient()
    with mlflow.start_run() as gap:
        mlflow.log_metric("train/epoch_seconds", 0.1, step=1)
        mlflow.log_metric("train/epoch_seconds", 0.1, step=3)
    with pytest.raises(IncompleteRunRecord, match=r"lacks the metrics of epochs \[2\]"):
        registry.require_complete_record(client, gap.info.run_id)
    running = client.create_run(mlflow.get_experiment_by_name("promotion").experiment_id)
    with pytest.raises(IncompleteRunRecord, match="is RUNNING, not FINISHED"):
        registry.require_complete_record(client, running.info.run_id)
    with mlflow.start_run() as complete:
        for epoch in (1, 2):
            mlflow.log_metric("train/epoch_seconds", 0.1, step=epoch)
    registry.require_complete_record(client, complete.info.run_id)
