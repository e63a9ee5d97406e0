"""Distribution metrics in the domain feature space: the Fréchet distance, KID (torchmetrics) and precision, recall,
density, coverage (`prdc`), all from feature sets computed once per image set: an evaluation scores the same real
and generated images with every metric, the FD interval and the memorisation check."""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

# torchmetrics and prdc (which pulls scikit-learn) are imported where they are used: together they cost about
# 3 s of start-up, and every process that imports the model families (each stage, each Ray worker) would pay it.


def frechet_distance(real: torch.Tensor, fake: torch.Tensor, features: nn.Module, batch_size: int = 512) -> float:
    """FD between two image sets (N×C×H×W in [0, 1]) by torchmetrics; 0 for identical distributions. The standard
    `fid` (Inception features) is computed this way."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=features)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start:start + batch_size], real=is_real)
    return float(metric.compute())


def batched_frechet(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """FD between batches of feature sets (B×N×D, float64)."""
    mu_r, mu_f = real.mean(1), fake.mean(1)
    centred_r, centred_f = real - mu_r[:, None], fake - mu_f[:, None]
    cov_r = centred_r.transpose(1, 2) @ centred_r / (real.shape[1] - 1)
    cov_f = centred_f.transpose(1, 2) @ centred_f / (fake.shape[1] - 1)
    traces = cov_r.diagonal(dim1=1, dim2=2).sum(1) + cov_f.diagonal(dim1=1, dim2=2).sum(1)
    return ((mu_r - mu_f) ** 2).sum(1) + traces - 2 * _root_trace(cov_r, cov_f)


def _root_trace(cov_r: torch.Tensor, cov_f: torch.Tensor) -> torch.Tensor:
    """tr √(Σ_r Σ_f) for batches of covariances. With Cholesky factors Σ = L Lᵀ, the eigenvalues of Σ_r Σ_f are
    the squared singular values of L_rᵀ L_f, so the trace is their sum: half the cost of the eigendecompositions
    (the FD interval's 1000 bootstrap replicates are most of `evaluate`).

    A feature without variance in one of the two sets (a classifier unit that never fires) leaves a zero row and
    column, which add nothing to the trace but leave no Cholesky factor: features so for every pair of the batch
    are dropped first. A pair still without factors (a feature constant in one resample) takes the eigenvalues of
    √Σ_r Σ_f √Σ_r instead."""
    varying = ((cov_r.diagonal(dim1=1, dim2=2) > 0) & (cov_f.diagonal(dim1=1, dim2=2) > 0)).any(0)
    cov_r, cov_f = cov_r[:, varying][:, :, varying], cov_f[:, varying][:, :, varying]
    factor_r, failed_r = torch.linalg.cholesky_ex(cov_r)
    factor_f, failed_f = torch.linalg.cholesky_ex(cov_f)
    traces = torch.linalg.svdvals(factor_r.transpose(1, 2) @ factor_f).sum(1)
    failed = (failed_r != 0) | (failed_f != 0)
    if failed.any():
        values, vectors = torch.linalg.eigh(cov_r[failed])
        root_r = (vectors * values.clamp(min=0).sqrt()[:, None]) @ vectors.transpose(1, 2)
        traces[failed] = torch.linalg.eigvalsh(root_r @ cov_f[failed] @ root_r).clamp(min=0).sqrt().sum(1)
    return traces


def frechet_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FD between two feature sets (N×D); the same value as `frechet_distance` on the images behind them."""
    return float(batched_frechet(real.double()[None], fake.double()[None])[0])


@torch.no_grad()
def generate(model: nn.Module, n: int, seed: int, batch_size: int) -> torch.Tensor:
    """n samples drawn in batches from one seeded generator: the same model and seed give the same images."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([model.sample(min(batch_size, n - start), generator) for start in range(0, n, batch_size)])


@torch.no_grad()
def features_of(images: torch.Tensor, features: nn.Module, batch_size: int) -> torch.Tensor:
    return torch.cat([features(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]).cpu()


def distribution_metrics(real: torch.Tensor, fake: torch.Tensor, nearest_k: int = 5,
                         kid_subsets: int = 50) -> dict[str, float]:
    """fd, kid (mean over subsets), precision, recall, density, coverage (Naeem et al. 2020) between the features
    of real and generated images (N×D each, from `features_of`)."""
    from prdc import compute_prdc
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():  # KID warns that it buffers features: intended, they are small
        warnings.simplefilter("ignore", UserWarning)
        # The features are already extracted: KID's extractor passes them through.
        kid = KernelInceptionDistance(feature=nn.Identity(), subsets=kid_subsets,
                                      subset_size=min(1000, len(real), len(fake)))
    kid.update(real, real=True)
    kid.update(fake, real=False)
    kid_mean, _ = kid.compute()
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints its sample counts
        manifold = compute_prdc(real_features=real.numpy(), fake_features=fake.numpy(), nearest_k=nearest_k)
    return {"fd": frechet_from_features(real, fake), "kid": float(kid_mean),
            **{name: float(value) for name, value in manifold.items()}}
