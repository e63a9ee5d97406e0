"""Registration and the champion rule: a new version takes the alias if it is the first, or if it beats the
current champion by more than the noise of the evaluation. Both are scored on the current validation images
(the champion is re-evaluated, so data versions never mix) and the improvement's bootstrap interval must lie
above `min_improvement` (see `gen_platform.evaluation.bootstrap`)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import mlflow
import torch
from torch import nn

from gen_platform.config import PipelineParams
from gen_platform.errors import IncompleteRunRecord, PromotionLockTimeout
from gen_platform.evaluation.bootstrap import Comparison
from gen_platform.models import get_family
from gen_platform.tracking.accepted_data import accept
from gen_platform.tracking.model_card import model_card
from gen_platform.tracking.model_io import load_generator, load_model_dir, log_model
from gen_platform.tracking.owners import owner_tags
from gen_platform.validation.drift import DataProfile

METRIC_TAG = "selection_metric"
# On the registered model: the data version its latest registration was trained and evaluated on, promoted or
# not. A retrain on the same data would only repeat that evaluation.
EVALUATED_DATA_TAG = "last_evaluated_data_version"

CompareWith = Callable[[str], Comparison]  # champion version → challenger vs champion on the same images


@dataclass(frozen=True)
class PromotionDecision:
    model_name: str
    version: str
    alias: str
    metric: str  # the family's selection metric and the challenger's value from its evaluation
    value: float
    champion_version: str | None
    promoted: bool
    reason: str
    comparison: dict[str, Any] | None  # Comparison.to_dict() when there was a champion to compare with

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verb = "promoted to" if self.promoted else "not promoted to"
        return f"{self.model_name} v{self.version} {verb} @{self.alias}: {self.reason}"


LOCK_SUFFIX = ".promotion-lock"
LOCK_OWNER_TAG, LOCK_EXPIRES_TAG = "genp.lock_owner", "genp.lock_expires"


def _lock_settings() -> tuple[float, float]:
    """(how long a registration waits for the lock, how long a holder may keep it before others break it)"""
    return (float(os.environ.get("GENP_PROMOTION_LOCK_WAIT_S", "900")),
            float(os.environ.get("GENP_PROMOTION_LOCK_LEASE_S", "600")))


@contextlib.contextmanager
def promotion_lock(client: mlflow.MlflowClient, name: str, poll_s: float = 0.5) -> Iterator[None]:
    """An exclusive lock per registered model, held in the registry itself: every process that uses the same
    store takes the same lock, whatever URI it reaches the store by (a SQLite path, the HTTP server) and on
    whichever machine it runs.

    MLflow has no compare-and-set for aliases, but creating a registered model is one: the store refuses a second
    model of the same name (RESOURCE_ALREADY_EXISTS), atomically. The lock is the registered model
    `<name>.promotion-lock`, created on entry and deleted on exit. A holder that died leaves it behind; once its
    lease (GENP_PROMOTION_LOCK_LEASE_S, 600 s) has run out, the next registration deletes it and takes the lock.
    A waiter gives up after GENP_PROMOTION_LOCK_WAIT_S (900 s) with an error naming the holder.
    """
    from mlflow.exceptions import MlflowException

    lock, (wait_s, lease_s) = name + LOCK_SUFFIX, _lock_settings()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline, reported = time.monotonic() + wait_s, False
    while True:
        try:
            client.create_registered_model(lock, description=f"promotion of {name} in progress ({owner})", tags={
                LOCK_OWNER_TAG: owner, LOCK_EXPIRES_TAG: f"{time.time() + lease_s:.0f}"})
            break
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = _lock_holder(client, lock)
        if holder is None:  # released between our attempt and the look
            continue
        if float(holder.get(LOCK_EXPIRES_TAG, "0")) < time.time():
            print(f"breaking the promotion lock of {name}: its holder {holder.get(LOCK_OWNER_TAG)} let its lease run "
                  "out", flush=True)
            _release(client, lock, holder.get(LOCK_OWNER_TAG))
            continue
        if not reported:
            print(f"waiting for the promotion lock of {name}, held by {holder.get(LOCK_OWNER_TAG)}", flush=True)
            reported = True
        if time.monotonic() > deadline:
            raise PromotionLockTimeout(f"{name}: the promotion lock ({lock} in the model registry) was held by "
                                       f"{holder.get(LOCK_OWNER_TAG)} for more than {wait_s:.0f} s "
                                       "(GENP_PROMOTION_LOCK_WAIT_S)")
        time.sleep(poll_s)
    try:
        yield
    finally:
        _release(client, lock, owner)


def _lock_holder(client: mlflow.MlflowClient, lock: str) -> dict[str, str] | None:
    try:
        return client.get_registered_model(lock).tags
    except mlflow.exceptions.MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _release(client: mlflow.MlflowClient, lock: str, owner: str | None) -> None:
    """Delete the lock if `owner` still holds it (a lock broken and retaken by another is theirs)."""
    holder = _lock_holder(client, lock)
    if holder is not None and holder.get(LOCK_OWNER_TAG) == owner:
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # another breaker deleted it first
            client.delete_registered_model(lock)


def decide(value: float, comparison: Comparison | None, min_improvement: float = 0.0) -> tuple[bool, str]:
    """The rule itself. NaN never wins; with a champion, the improvement's lower bound decides."""
    if value != value or (comparison is not None and comparison.challenger != comparison.challenger):
        return False, "challenger metric is NaN"
    if comparison is None:
        return True, "no current champion"
    if comparison.low > min_improvement:
        return True, f"beats the champion beyond noise: {comparison.describe()}"
    return False, (f"improvement not above min_improvement {min_improvement} at {comparison.level:.0%} "
                   f"confidence: {comparison.describe()}")


def current_champion(client: mlflow.MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def _comparison_tags(comparison: Comparison | None) -> dict[str, str]:
    if comparison is None:
        return {}
    return {"promotion.metric": comparison.metric, "promotion.challenger_value": repr(comparison.challenger),
            "promotion.champion_value": repr(comparison.champion),
            "promotion.improvement": repr(comparison.improvement), "promotion.ci_low": repr(comparison.low),
            "promotion.ci_high": repr(comparison.high), "promotion.confidence": repr(comparison.level),
            "promotion.samples": str(comparison.samples)}


def _registered_version(client: mlflow.MlflowClient, model_dir: Path, name: str) -> str:
    """The version registered from the active run: the one an earlier attempt of this registration created (a
    retried task must not add a second), else a new one."""
    run_id = mlflow.active_run().info.run_id
    earlier = client.search_model_versions(f"name='{name}' and run_id='{run_id}'", order_by=["version_number ASC"])
    if earlier:
        print(f"{name} v{earlier[0].version} was registered from run {run_id} by an earlier attempt: reusing it")
        return str(earlier[0].version)
    return str(log_model(model_dir, name).version)


def register_and_promote(model_dir: Path, name: str, alias: str, metric: str, value: float, compare_with: CompareWith,
                         min_improvement: float = 0.0, description: str | None = None,
                         veto: str | None = None) -> PromotionDecision:
    """Within an active MLflow run: log and register the model, then apply the champion rule. Idempotent per run:
    a retry after a failure anywhere in here finds the version the failed attempt registered and finishes its
    work."""
    client = mlflow.MlflowClient()
    version = _registered_version(client, model_dir, name)
    if description:
        client.update_model_version(name, version, description=description)
    client.set_model_version_tag(name, version, metric, repr(value))
    client.set_model_version_tag(name, version, METRIC_TAG, metric)
    # Read, compare, decide and move under one lock, so two registrations finishing together cannot both
    # compare with the old champion and the later write leave the worse model with the alias.
    with promotion_lock(client, name):
        champion_version = current_champion(client, name, alias)
        comparison = None
        if champion_version == version:  # an earlier attempt moved the alias, then failed
            recorded = client.get_model_version(name, version).tags.get("promotion.champion_version", "None")
            champion_version = None if recorded == "None" else recorded
            promoted, reason = True, "promoted by an earlier attempt of this registration"
        else:
            comparison = None if veto or champion_version is None else compare_with(champion_version)
            promoted, reason = (False, veto) if veto else decide(value, comparison, min_improvement)
            if promoted:
                client.set_registered_model_alias(name, alias, version)
    decision = PromotionDecision(name, version, alias, metric, value, champion_version, promoted, reason,
                                 comparison.to_dict() if comparison else None)
    tags = {"promotion.promoted": str(promoted), "promotion.reason": reason,
            "promotion.champion_version": str(champion_version), **_comparison_tags(comparison)}
    for key, text in tags.items():
        client.set_model_version_tag(name, version, key, text)
    mlflow.set_tags(tags | {"registered_version": version})
    return decision


def register_run(params: PipelineParams, model_dir: Path, run_id: str, scores: dict[str, float],
                 trained_on: DataProfile, validation_images: torch.Tensor, features: nn.Module,
                 class_names: list[str] | None = None) -> PromotionDecision:
    """On the run that trained the model in `model_dir`: its model card, a registered version, and the
    champion rule, re-scoring the champion and this model on `validation_images` (the current data).
    `trained_on`, the profile of the data (with its version), becomes the data the model's next runs are
    compared with (the drift gate), promoted or not."""
    data_version = trained_on.data_version
    require_complete_record(mlflow.MlflowClient(), run_id)
    family = get_family(params.model.family)
    card = model_card(params, scores, data_version, run_id, sample_grid="samples.png", class_names=class_names)
    challenger = load_model_dir(model_dir)

    def compare_with(champion_version: str) -> Comparison:
        champion = load_generator(f"models:/{params.registered_model_name}/{champion_version}")
        return family.compare(challenger, champion, validation_images, features, params.evaluate)

    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None, tags=owner_tags()):
        mlflow.log_text(card, "model_card.md")
        decision = register_and_promote(model_dir, params.registered_model_name, params.registry.alias,
                                        family.selection_metric, scores[family.selection_metric], compare_with,
                                        params.registry.min_improvement, description=card,
                                        veto=copy_veto(scores, params.registry.max_copy_rate))
    client = mlflow.MlflowClient()
    client.set_model_version_tag(decision.model_name, decision.version, "data_version", data_version)
    client.set_registered_model_tag(decision.model_name, EVALUATED_DATA_TAG, data_version)
    accept(client, decision.model_name, trained_on, f"registration of version {decision.version}")
    return decision


def require_complete_record(client: mlflow.MlflowClient, run_id: str) -> None:
    """Refuse to register from a run whose record is incomplete: not FINISHED (its process died, or it failed
    while the tracking server was unreachable), or with epochs missing from its curves."""
    from gen_platform.tracking.live import STEP_KEY
    from gen_platform.tracking.metric_names import epoch_metric

    run = client.get_run(run_id)
    if run.info.status != "FINISHED":
        raise IncompleteRunRecord(f"MLflow run {run_id} is {run.info.status}, not FINISHED: its record is incomplete, "
                                  "so its model is not registered; train again (a killed training resumes from its "
                                  "last checkpoint)")
    epochs = sorted(metric.step for metric in client.get_metric_history(run_id, epoch_metric(STEP_KEY)))
    if epochs != list(range(1, len(epochs) + 1)):
        missing = sorted(set(range(1, max(epochs) + 1)) - set(epochs))
        raise IncompleteRunRecord(f"MLflow run {run_id} lacks the metrics of epochs {missing}: its record is "
                                  "incomplete, so its model is not registered")


def copy_veto(scores: dict[str, float], max_copy_rate: float | None) -> str | None:
    """Why a model that copies its training images must not be promoted (None: no objection)."""
    rate = scores.get("copy_rate")
    if max_copy_rate is None or rate is None or rate <= max_copy_rate:
        return None
    return f"copy_rate {rate:.3f} is above registry.max_copy_rate {max_copy_rate}: the model reproduces training images"


def retrain_needed(name: str, current_data_version: str) -> tuple[bool, str]:
    """Whether a retrain of `name` on `current_data_version` could change anything, and why."""
    try:
        last = mlflow.MlflowClient().get_registered_model(name).tags.get(EVALUATED_DATA_TAG)
    except mlflow.exceptions.MlflowException:
        last = None
    if last == current_data_version:
        return False, (f"skipped: the latest version of {name} was trained and evaluated on the current data "
                       f"({current_data_version}), promoted or not")
    return True, f"data changed ({last} → {current_data_version})"
