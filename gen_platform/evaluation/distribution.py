"""Distribution metrics in the domain feature space: the Fréchet distance, KID, and precision, recall, density and
coverage, all from feature sets computed once per image set: an evaluation scores the same real and generated
images with every metric, the FD interval and the memorisation check.

KID and the four manifold metrics are computed here from their definitions, in torch. torchmetrics' KID and the
`prdc` package (which pulls in scikit-learn) gave the same numbers (tests/unit/test_metrics.py), but importing
them cost 1.25 s of every `genp evaluate`, more than computing the metrics.
"""

from __future__ import annotations

import torch
from torch import nn

# torchmetrics, for the image-level FD only, is imported where it is used: every process that imports the model
# families (each stage, each Ray worker) would pay its start-up.


def frechet_distance(real: torch.Tensor, fake: torch.Tensor, features: nn.Module, batch_size: int = 512) -> float:
    """FD between two image sets (N×C×H×W in [0, 1]) by torchmetrics; 0 for identical distributions. The standard
    `fid` (Inception features) is computed this way."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=features)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start:start + batch_size], real=is_real)
    return float(metric.compute())


Moments = tuple[torch.Tensor, torch.Tensor]  # means (…×D) and covariances (…×D×D), float64


def feature_moments(features: torch.Tensor) -> Moments:
    """The mean and covariance of a feature set (N×D)."""
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def batched_frechet(real: Moments, fake: Moments) -> torch.Tensor:
    """FD between batches of distributions given by their moments (B×D means, B×D×D covariances)."""
    (mu_r, cov_r), (mu_f, cov_f) = real, fake
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
    batch = lambda moments: tuple(moment[None] for moment in moments)  # noqa: E731
    return float(batched_frechet(batch(feature_moments(real)), batch(feature_moments(fake)))[0])


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
    """fd, kid (mean over subsets), precision, recall, density, coverage between the features of real and generated
    images (N×D each, from `features_of`)."""
    return {"fd": frechet_from_features(real, fake),
            "kid": kernel_inception_distance(real, fake, kid_subsets, min(1000, len(real), len(fake))),
            **manifold_metrics(real, fake, nearest_k)}


def kernel_inception_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int, subset_size: int,
                              seed: int = 0) -> float:
    """KID (Bińkowski et al. 2018): the unbiased MMD² between the two sets under the cubic polynomial kernel
    k(x, y) = (xᵀy / D + 1)³, averaged over `subsets` random subsets of `subset_size` features from each set.
    The kernel matrices are computed once for the whole sets and each subset sums its block of them. Where the
    subsets are as large as both sets (the default, 1000 of 1000), each one is both whole sets: one is summed."""
    real, fake = real.double(), fake.double()
    kernel = lambda x, y: (x @ y.T / real.shape[1] + 1) ** 3  # noqa: E731
    k_rr, k_ff, k_rf = kernel(real, real), kernel(fake, fake), kernel(real, fake)
    generator, m = torch.Generator().manual_seed(seed), subset_size
    if m == len(real) == len(fake):
        subsets = 1
    values = []
    for _ in range(subsets):
        r = torch.randperm(len(real), generator=generator)[:m]
        f = torch.randperm(len(fake), generator=generator)[:m]
        within = [block.sum() - block.diagonal().sum() for block in (k_rr[r][:, r], k_ff[f][:, f])]
        values.append((within[0] + within[1]) / (m * (m - 1)) - 2 * k_rf[r][:, f].mean())
    return float(torch.stack(values).mean())


def manifold_metrics(real: torch.Tensor, fake: torch.Tensor, nearest_k: int) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020). Around every feature of a set lies a ball whose
    radius is the distance to its `nearest_k`-th nearest neighbour in the same set.
    - precision: the share of generated features inside some real ball;
    - recall: the share of real features inside some generated ball;
    - density: the number of real balls around each generated feature, averaged and divided by `nearest_k`;
    - coverage: the share of real balls that hold at least one generated feature."""
    real, fake = real.double(), fake.double()
    real_radii, fake_radii = _neighbour_radii(real, nearest_k), _neighbour_radii(fake, nearest_k)
    distances = torch.cdist(real, fake)  # real × generated
    in_real_balls = distances < real_radii[:, None]
    return {"precision": float(in_real_balls.any(0).double().mean()),
            "recall": float((distances < fake_radii[None]).any(1).double().mean()),
            "density": float(in_real_balls.sum(0).double().mean() / nearest_k),
            "coverage": float((distances.min(1).values < real_radii).double().mean())}


def _neighbour_radii(features: torch.Tensor, nearest_k: int) -> torch.Tensor:
    # the (k+1)-th smallest distance of each row: the smallest is the feature's distance to itself
    return torch.cdist(features, features).kthvalue(nearest_k + 1, dim=1).values
