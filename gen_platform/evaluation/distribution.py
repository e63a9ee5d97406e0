"""Distribution metrics in the domain feature space, from kept libraries: torchmetrics (FD, KID) with our
classifier as the feature module, and `prdc` (precision, recall, density, coverage)."""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

# torchmetrics and prdc (which pulls scikit-learn) are imported where they are used: together they cost about
# 3 s of start-up, and every process that imports the model families (each stage, each Ray worker) would pay it.


def _feed(metric: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch_size: int) -> None:
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start:start + batch_size], real=is_real)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor, features: nn.Module, batch_size: int = 512) -> float:
    """FD between two image sets (N×C×H×W in [0, 1]); 0 for identical distributions."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=features)
    _feed(metric, real, fake, batch_size)
    return float(metric.compute())


@torch.no_grad()
def generate(model: nn.Module, n: int, seed: int, batch_size: int) -> torch.Tensor:
    """n samples drawn in batches from one seeded generator: the same model and seed give the same images."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([model.sample(min(batch_size, n - start), generator) for start in range(0, n, batch_size)])


@torch.no_grad()
def features_of(images: torch.Tensor, features: nn.Module, batch_size: int) -> torch.Tensor:
    return torch.cat([features(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]).cpu()


def distribution_metrics(real: torch.Tensor, fake: torch.Tensor, features: nn.Module, nearest_k: int = 5,
                         batch_size: int = 512, kid_subsets: int = 50) -> dict[str, float]:
    """fd, kid (mean over subsets), precision, recall, density, coverage (Naeem et al. 2020)."""
    from prdc import compute_prdc
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():  # KID warns that it buffers features: intended, they are small
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=features, subsets=kid_subsets,
                                      subset_size=min(1000, len(real), len(fake)))
    _feed(kid, real, fake, batch_size)
    kid_mean, _ = kid.compute()
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints its sample counts
        manifold = compute_prdc(real_features=features_of(real, features, batch_size).numpy(),
                                fake_features=features_of(fake, features, batch_size).numpy(), nearest_k=nearest_k)
    return {"fd": frechet_distance(real, fake, features, batch_size), "kid": float(kid_mean),
            **{name: float(value) for name, value in manifold.items()}}
