"""Registration and the champion rule: a new version takes the alias if it is the first, or if it beats the
current champion by more than the noise of the evaluation. Both are scored on the current validation images
(the champion is re-evaluated, so data versions never mix) and the improvement's bootstrap interval must lie
above `min_improvement` (see `gen_platform.evaluation.bootstrap`)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import mlflow
import torch
from torch import nn

from gen_platform.config import PipelineParams
from gen_platform.evaluation.bootstrap import Comparison
from gen_platform.models import get_family
from gen_platform.tracking.model_card import model_card
from gen_platform.tracking.model_io import load_generator, load_model_dir, log_model

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


def register_and_promote(model_dir: Path, name: str, alias: str, metric: str, value: float, compare_with: CompareWith,
                         min_improvement: float = 0.0, description: str | None = None,
                         veto: str | None = None) -> PromotionDecision:
    """Within an active MLflow run: log and register the model, then apply the champion rule."""
    client = mlflow.MlflowClient()
    version = str(log_model(model_dir, name).version)
    if description:
        client.update_model_version(name, version, description=description)
    client.set_model_version_tag(name, version, metric, repr(value))
    client.set_model_version_tag(name, version, METRIC_TAG, metric)
    # Read, compare, decide and move under one lock, so two registrations finishing together cannot both
    # compare with the old champion and the later write leave the worse model with the alias.
    with promotion_lock(name):
        champion_version = current_champion(client, name, alias)
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


def register_run(params: PipelineParams, model_dir: Path, run_id: str, scores: dict[str, float], data_version: str,
                 validation_images: torch.Tensor, features: nn.Module,
                 class_names: list[str] | None = None) -> PromotionDecision:
    """On the run that trained the model in `model_dir`: its model card, a registered version, and the
    champion rule, re-scoring the champion and this model on `validation_images` (the current data)."""
    family = get_family(params.model.family)
    card = model_card(params, scores, data_version, run_id, sample_grid="samples.png", class_names=class_names)
    challenger = load_model_dir(model_dir)

    def compare_with(champion_version: str) -> Comparison:
        champion = load_generator(f"models:/{params.registered_model_name}/{champion_version}")
        return family.compare(challenger, champion, validation_images, features, params.evaluate)

    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        mlflow.log_text(card, "model_card.md")
        decision = register_and_promote(model_dir, params.registered_model_name, params.registry.alias,
                                        family.selection_metric, scores[family.selection_metric], compare_with,
                                        params.registry.min_improvement, description=card,
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
