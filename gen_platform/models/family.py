"""The contract between the platform and a model family, and the registry that finds a family by name.

A family is one module that defines its settings (its block `model.<name>` in params.yaml), its saved
architecture, its networks, how it trains (a `Recipe`), how it is judged (a selection metric and optional
family-specific scores and pictures) and how it is searched (a Ray Tune space and an ASHA grace period).
It exposes all of that as one `Family` record; adding a family is one module plus one line in
`gen_platform/models/__init__.py` (or a `register_family` call from a plugin or a test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

import torch
from PIL import Image
from pydantic import BaseModel
from torch import nn

from gen_platform.errors import ConfigError
from gen_platform.evaluation.bootstrap import Comparison, compare_by_frechet_distance
from gen_platform.settings import DataParams, EvaluateParams


class Architecture(Protocol):
    """A frozen dataclass: everything needed to rebuild the networks (saved beside the weights)."""

    image_size: int
    channels: int


class Generative(Protocol):
    """What every family's model can do once trained."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [0, 1], N×C×H×W."""


class Recipe(Protocol):
    """How a family trains: built once per worker around the raw model, `wrap` making networks data-parallel."""

    progress: tuple[str, ...]  # the history keys shown to the user each epoch

    def train_epoch(self, batches: Iterable[torch.Tensor]) -> dict[str, float]:
        """One pass over this worker's batches (floats in [0, 1]); means over all workers, plus `images`."""

    def validate(self, images: torch.Tensor, batch_size: int, rank: int, world_size: int, seed: int,
                 features: nn.Module | None) -> dict[str, float]:
        """Validation scores (the selection metric without its `val_` prefix among them)."""

    def snapshot(self) -> torch.Tensor | None:
        """A picture of this epoch kept in the checkpoint (uint8 N×C×H×W), or None."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class FamilyScores:
    """What a family adds to the common evaluation: scores and named pictures."""

    scores: dict[str, float]
    pictures: dict[str, Image.Image]


def no_family_scores(model: nn.Module, val: torch.Tensor, test: torch.Tensor, settings: EvaluateParams) -> FamilyScores:
    return FamilyScores({}, {})


@dataclass(frozen=True)
class Family:
    name: str
    settings: type[BaseModel]  # the schema of `model.<name>` in params.yaml
    architecture: type  # the frozen dataclass saved beside the weights
    architecture_from: Callable[[DataParams, Any], Any]  # (data, settings) → architecture; checks the shapes
    build: Callable[[Any], nn.Module]  # architecture → a model with `sample(n, generator)`
    recipe: Callable[[nn.Module, Any, Callable[[nn.Module], nn.Module], torch.device], Recipe]
    selection_metric: str  # lower is better; the champion rule and tuning rank by it
    search_space: Callable[[], dict[str, Any]]  # Ray Tune distributions over fields of `settings`
    grace_epochs: int  # epochs before ASHA may stop a trial
    # Scores on the full val/test splits and pictures; must include `selection_metric` unless it is the
    # shared `val_fd`.
    score: Callable[[nn.Module, torch.Tensor, torch.Tensor, EvaluateParams], FamilyScores] = no_family_scores
    # The champion rule: (challenger, champion, validation images, feature module, settings) → both models
    # scored on those images, with a bootstrap interval of the improvement.
    compare: Callable[[nn.Module, nn.Module, torch.Tensor, nn.Module, EvaluateParams],
                      Comparison] = compare_by_frechet_distance

    def rebuild(self, saved_architecture: dict[str, Any]) -> nn.Module:
        return self.build(self.architecture(**saved_architecture))


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"model.family: unknown family {name!r}; known: {sorted(FAMILIES)}") from None
