"""Registration and the champion rule: a new version takes the alias only if it is the first, or if it
beats the current champion on the same β-independent metric (lower is better) by `min_improvement`."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import mlflow

from gen_platform.config import PipelineParams
from gen_platform.models import get_family
from gen_platform.tracking.model_card import model_card
from gen_platform.tracking.model_io import log_model

METRIC_TAG = "selection_metric"
# On the registered model: the data version its latest registration was trained and evaluated on, promoted or
# not. A retrain on the same data would only repeat that evaluation.
EVALUATED_DATA_TAG = "last_evaluated_data_version"


@dataclass(frozen=True)
class PromotionDecision:
    model_name: str
    version: str
    alias: str
    metric: str
    challenger: float
    champion: float | None
    champion_version: str | None
    promoted: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def promotion_lock(name: str) -> Iterator[None]:
    """An exclusive lock per registered model and tracking store, across processes on this machine.

    MLflow has no compare-and-set for aliases. Processes on other machines sharing a remote MLflow server
    need an external lock (see README, "Champion rule").
    """
    key = hashlib.sha256(f"{mlflow.get_tracking_uri()}|{name}".encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"gen_platform-promotion-{key}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def decide(challenger: float, champion: float | None, min_improvement: float = 0.0) -> tuple[bool, str]:
    """The rule itself, lower is better. NaN never wins."""
    if challenger != challenger:
        return False, "challenger metric is NaN"
    if champion is None:
        return True, "no current champion"
    if challenger < champion - min_improvement:
        return True, f"beats champion by {champion - challenger:.4f}"
    return False, f"does not beat champion by more than {min_improvement} (gap {champion - challenger:.4f})"


def current_champion(client: mlflow.MlflowClient, name: str, alias: str, metric: str) -> tuple[str | None, float | None]:
    try:
        version = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None, None
    value = version.tags.get(metric)
    return str(version.version), float(value) if value is not None else None


def register_and_promote(model_dir: Path, name: str, alias: str, metric: str, value: float,
                         min_improvement: float = 0.0, description: str | None = None,
                         veto: str | None = None) -> PromotionDecision:
    """Within an active MLflow run: log and register the model, then apply the champion rule."""
    client = mlflow.MlflowClient()
    version = str(log_model(model_dir, name).version)
    if description:
        client.update_model_version(name, version, description=description)
    client.set_model_version_tag(name, version, metric, repr(value))
    client.set_model_version_tag(name, version, METRIC_TAG, metric)
    # Read, decide and move under one lock, so two registrations finishing together cannot both read the
    # old champion and the later write leave the worse model with the alias.
    with promotion_lock(name):
        champion_version, champion_value = current_champion(client, name, alias, metric)
        promoted, reason = (False, veto) if veto else decide(value, champion_value, min_improvement)
        if promoted:
            client.set_registered_model_alias(name, alias, version)
    decision = PromotionDecision(name, version, alias, metric, value, champion_value, champion_version,
                                 promoted, reason)
    for key, text in {"promotion.promoted": str(promoted), "promotion.reason": reason,
                      "promotion.champion_value": str(champion_value),
                      "promotion.champion_version": str(champion_version)}.items():
        client.set_model_version_tag(name, version, key, text)
        mlflow.set_tag(key, text)
    mlflow.set_tag("registered_version", version)
    return decision


def register_run(params: PipelineParams, model_dir: Path, run_id: str, scores: dict[str, float],
                 data_version: str) -> PromotionDecision:
    """On the run that trained the model in `model_dir`: its model card, a registered version, and the
    champion rule on the family's selection metric."""
    metric = get_family(params.model.family).selection_metric
    card = model_card(params, scores, data_version, run_id, sample_grid="samples.png")
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        mlflow.log_text(card, "model_card.md")
        decision = register_and_promote(model_dir, params.registered_model_name, params.registry.alias, metric,
                                        scores[metric], params.registry.min_improvement, description=card,
                                        veto=copy_veto(scores, params.registry.max_copy_rate))
    client = mlflow.MlflowClient()
    client.set_model_version_tag(decision.model_name, decision.version, "data_version", data_version)
    client.set_registered_model_tag(decision.model_name, EVALUATED_DATA_TAG, data_version)
    return decision


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
