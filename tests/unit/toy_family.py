"""A third model family in one module, for the contract test: per-pixel Bernoulli means, no latent at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from gen_platform.models.family import Family, FamilyScores, Recipe, Update
from gen_platform.settings import DataParams, EvaluateParams, Section


class ToyParams(Section):
    learning_rate: float = Field(0.1, gt=0)
    crash: bool = Field(False, description="training raises: a trial that fails")


@dataclass(frozen=True)
class ToyArchitecture:
    image_size: int
    channels: int


def architecture_from(data: DataParams, settings: ToyParams) -> ToyArchitecture:
    return ToyArchitecture(data.image_size, data.channels)


class PixelMeans(nn.Module):
    def __init__(self, architecture: ToyArchitecture):
        super().__init__()
        self.architecture = architecture
        size = architecture.image_size
        self.logits = nn.Parameter(torch.zeros(architecture.channels, size, size))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits.expand_as(images), images)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        probabilities = torch.sigmoid(self.logits).expand(n, *self.logits.shape)
        return torch.bernoulli(probabilities, generator=generator)


class ToyRecipe(Recipe):
    train_metrics = validation_metrics = ("bce",)
    progress = ("train_bce", "val_bce")

    def __init__(self, model: PixelMeans, settings: ToyParams, device: torch.device):
        self.model, self.settings = model, settings

    def configure(self, prepared: dict[str, nn.Module], update: Update) -> None:
        self.parallel_model, self.update = prepared["model"], update
        self.optimizers = {"optimizer": torch.optim.SGD(self.parallel_model.parameters(), lr=self.settings.learning_rate)}

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        if self.settings.crash:
            raise RuntimeError("toy family asked to crash")
        loss = self.parallel_model(batch)
        self.update(loss, self.optimizers["optimizer"])
        return {"bce": loss.detach()}

    def validation_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"bce": self.model(batch) * len(batch)}


def score(model: PixelMeans, val: torch.Tensor, test: torch.Tensor, settings: EvaluateParams) -> FamilyScores:
    with torch.no_grad():
        error = (torch.sigmoid(model.logits) - test.mean(0)).abs().mean().item()
        return FamilyScores({"val_bce": model(val).item(), "mean_image_error": error}, {})


def search_space() -> dict[str, Any]:
    from ray import tune

    return {"learning_rate": tune.loguniform(0.01, 1.0), "crash": tune.grid_search([False, True])}


FAMILY = Family(name="toy", settings=ToyParams, architecture=ToyArchitecture, architecture_from=architecture_from,
                build=PixelMeans, recipe=ToyRecipe, selection_metric="val_bce", search_space=search_space,
                grace_epochs=1, score=score)
