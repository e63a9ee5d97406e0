"""The contract between the platform and a model family, and the registry that finds a family by name.

A family is one module that defines its settings (its block `model.<name>` in params.yaml), its saved
architecture, its networks, how it trains (a `Recipe`: its maths only, the shared loop does the rest), how it
is judged (a selection metric and optional family-specific scores and pictures) and how it is searched (a Ray
Tune space and an ASHA grace period).
It exposes all of that as one `Family` record; adding a family is one module plus one line in
`gen_platform/models/__init__.py` (or a `register_family` call from a plugin or a test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Protocol, TypeVar

import torch
from PIL import Image
from torch import nn

from gen_platform.errors import ConfigError
from gen_platform.evaluation.bootstrap import Comparison, compare_by_frechet_distance
from gen_platform.settings import DataParams, EvaluateParams, Section

Settings = TypeVar("Settings", bound=Section)
AFTER_TRAINING_IMAGES = 20_000  # the first ones of the training split, which `prepare` shuffled


class Architecture(Protocol):
    """A frozen dataclass: everything needed to rebuild the networks (saved beside the weights)."""

    image_size: int
    channels: int


class Generative(Protocol):
    """What every family's model can do once trained."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [0, 1], N×C×H×W."""


class Update(Protocol):
    """Given by the loop: applies a loss to an optimizer (zero, backward, step; scaled under fp16)."""

    def __call__(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None: ...


class Recipe:
    """How a family trains, in the shape Lightning made familiar: its networks, its optimizers, a train step and a
    validation step. The shared loop (training/loop.py) owns the rest: it moves batches to the device, makes the
    networks data-parallel, accumulates on the device, reduces across workers, checkpoints and reports. A recipe
    never moves a training batch to the device and never talks to other workers.

    Subclasses set `model` (in `__init__(model, settings, device)`) and `optimizers` (in `configure`)."""

    progress: tuple[str, ...] = ()  # the history keys shown to the user each epoch
    train_metrics: tuple[str, ...] = ()  # the keys `train_step` may return, reported as `train_<key>`
    validation_metrics: tuple[str, ...] = ()  # the keys `validation_step` returns, reported as `val_<key>`
    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]

    def networks(self) -> dict[str, nn.Module]:
        """The networks the loop prepares (device, data parallelism, precision), by name."""
        return {"model": self.model}

    def configure(self, prepared: dict[str, nn.Module], update: Update) -> None:
        """Builds `optimizers` over the prepared networks; `update` is how a train step applies a loss."""
        raise NotImplementedError

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """One step (1-based) on a batch of floats in [0, 1] on the training device: detached scalar means over the
        batch for some of `train_metrics` (a key left out of a step is not averaged over it)."""
        raise NotImplementedError

    def validation_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scalar sums over a validation batch for `validation_metrics`; the loop sums over batches and workers and
        divides by the number of images."""
        return {}

    def validation_end(self, images: torch.Tensor, batch_size: int, seed: int,
                       features: nn.Module | None) -> dict[str, float]:
        """Scores of the whole validation set that every worker computes alike, without collectives (e.g. the
        GAN's FD of generated samples); `images` are on the training device."""
        return {}

    def snapshot(self) -> torch.Tensor | None:
        """A picture of this epoch kept in the checkpoint (uint8 N×C×H×W), or None."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()} | {name: optimizer.state_dict()
                                                     for name, optimizer in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])


@dataclass(frozen=True)
class FamilyScores:
    """What a family adds to the common evaluation: scores and named pictures."""

    scores: dict[str, float]
    pictures: dict[str, Image.Image]


def no_family_scores(model: nn.Module, val: torch.Tensor, test: torch.Tensor, settings: EvaluateParams) -> FamilyScores:
    return FamilyScores({}, {})


@dataclass(frozen=True)
class Family(Generic[Settings]):
    name: str
    settings: type[Settings]  # the schema of `model.<name>` in params.yaml
    architecture: type  # the frozen dataclass saved beside the weights
    architecture_from: Callable[[DataParams, Settings], Any]  # (data, settings) → architecture; checks the shapes
    build: Callable[[Any], nn.Module]  # architecture → a model with `sample(n, generator)`
    recipe: Callable[[nn.Module, Settings, torch.device], Recipe]  # (model, settings, training device) → its recipe
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
    # Once training ends, in the driver, on the selected model: fits what the training does not (the VAE: the latent
    # prior it samples from) on at most AFTER_TRAINING_IMAGES training images (floats in [0, 1]) with a seed;
    # returns figures to print. None: the trained model is final.
    after_training: Callable[[nn.Module, torch.Tensor, int], dict[str, float]] | None = None

    def rebuild(self, saved_architecture: dict[str, Any]) -> nn.Module:
        return self.build(self.architecture(**saved_architecture))

    def parameter_name(self, field: str) -> str:
        """A setting's one name everywhere (params.yaml path, MLflow param, Tune config key): `model.vae.beta`."""
        return f"model.{self.name}.{field}"

    def qualified_space(self) -> dict[str, Any]:
        """`search_space()` under the settings' parameter names."""
        return {self.parameter_name(field): value for field, value in self.search_space().items()}

    def fields_of(self, sample: dict[str, Any]) -> dict[str, Any]:
        """`{"model.vae.beta": 2.0}` → `{"beta": 2.0}`; a name that is not a setting of this family is refused."""
        prefix = self.parameter_name("")
        known = self.settings.model_fields
        strays = [key for key in sample if not (key.startswith(prefix) and key[len(prefix):] in known)]
        if strays:
            raise ConfigError(f"{', '.join(map(repr, strays))}: not a setting of the {self.name} family; expected "
                              f"one of {sorted(map(self.parameter_name, known))}")
        return {key[len(prefix):]: value for key, value in sample.items()}


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"model.family: unknown family {name!r}; known: {sorted(FAMILIES)}") from None
