"""The domain feature extractor: a small classifier trained on the dataset's labelled training split.

Inception features mean little on 8×8 digits and Inception weights cannot be downloaded here, so every
distribution metric (FD, KID, precision/recall/density/coverage) uses this classifier's penultimate layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from gen_platform.checkpoint import load_checkpoint, save_checkpoint
from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.errors import GenPlatformError
from gen_platform.nets import adam, bottom_size, channel_widths, down_stack

KIND = "classifier"  # what its checkpoint says it is


@dataclass(frozen=True)
class ClassifierArchitecture:
    image_size: int
    channels: int
    num_classes: int
    feature_dim: int = 128
    hidden_channels: int = 32


class DomainClassifier(nn.Module):
    def __init__(self, architecture: ClassifierArchitecture):
        super().__init__()
        self.architecture = architecture
        widths = channel_widths(architecture.image_size, architecture.hidden_channels)
        bottom = bottom_size(architecture.image_size)
        self.trunk = nn.Sequential(down_stack(architecture.channels, widths, nn.ReLU, refine=True), nn.Flatten(),
                                   nn.Linear(widths[-1] * bottom * bottom, architecture.feature_dim), nn.ReLU())
        self.head = nn.Linear(architecture.feature_dim, architecture.num_classes)

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


def train_classifier(train: ImageArrays, architecture: ClassifierArchitecture, epochs: int, batch_size: int,
                     learning_rate: float, seed: int) -> DomainClassifier:
    torch.manual_seed(seed)
    model = DomainClassifier(architecture)
    optimizer = adam(model.parameters(), lr=learning_rate)
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


@dataclass(frozen=True)
class SavedClassifier:
    """A trained classifier as plain data (architecture and weights): cheap to ship to Ray workers."""

    architecture: ClassifierArchitecture
    state: dict[str, torch.Tensor]

    @classmethod
    def of(cls, model: DomainClassifier) -> SavedClassifier:
        return cls(model.architecture, model.state_dict())

    def load(self) -> DomainClassifier:
        model = DomainClassifier(self.architecture)
        model.load_state_dict(self.state)
        return model.eval()

    def save(self, directory: Path) -> Path:
        return save_checkpoint(directory, {"model": self.state}, asdict(self.architecture), family=KIND)

    @classmethod
    def read(cls, directory: Path) -> SavedClassifier:
        if not directory.exists():
            raise GenPlatformError(f"{directory}: not found; run `genp features` first")
        state, meta = load_checkpoint(directory)
        return cls(ClassifierArchitecture(**meta["config"]), state["model"])


class FeatureModule(nn.Module):
    """The classifier's penultimate layer as a torchmetrics feature extractor (images in [0, 1] → N×D)."""

    def __init__(self, classifier: DomainClassifier):
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.architecture.feature_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images.float())
