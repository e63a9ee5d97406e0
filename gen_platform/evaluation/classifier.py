"""The domain feature extractor: a small classifier trained on the dataset's labelled training split.

Inception features mean little on 8×8 digits and Inception weights cannot be downloaded here, so every
distribution metric (FD, KID, precision/recall/density/coverage) uses this classifier's penultimate layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.models.shapes import channel_widths

FAMILY = "classifier"


@dataclass(frozen=True)
class ClassifierConfig:
    image_size: int
    channels: int
    num_classes: int
    feature_dim: int = 128
    hidden_channels: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


class DomainClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_channels = config.channels
        widths = channel_widths(config.image_size, config.hidden_channels)
        for width in widths:
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.Conv2d(width, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            in_channels = width
        bottom = config.image_size >> len(widths)
        self.trunk = nn.Sequential(*layers, nn.Flatten(), nn.Linear(widths[-1] * bottom * bottom, config.feature_dim),
                                   nn.ReLU())
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations for images in [0, 1]."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


@torch.no_grad()
def accuracy(model: DomainClassifier, arrays: ImageArrays, batch_size: int = 512) -> float:
    model.eval()
    images, labels = to_tensor(arrays.images), torch.from_numpy(arrays.labels)
    correct = sum((model(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum().item()
                  for i in range(0, len(images), batch_size))
    return correct / max(len(images), 1)


def train_classifier(train: ImageArrays, config: ClassifierConfig, epochs: int, batch_size: int,
                     learning_rate: float, seed: int) -> DomainClassifier:
    torch.manual_seed(seed)
    model = DomainClassifier(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    images, labels = to_tensor(train.images), torch.from_numpy(train.labels)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            index = order[start:start + batch_size]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        print(f"classifier epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}", flush=True)
    return model.eval()


def load_classifier(saved: dict[str, Any]) -> DomainClassifier:
    """From `{"state": state_dict, "config": {...}}` (what the features stage saves)."""
    model = DomainClassifier(ClassifierConfig(**saved["config"]))
    model.load_state_dict(saved["state"])
    return model.eval()


class FeatureModule(nn.Module):
    """The classifier's penultimate layer as a torchmetrics feature extractor (images in [0, 1] → N×D)."""

    def __init__(self, classifier: DomainClassifier):
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.config.feature_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images.float())
