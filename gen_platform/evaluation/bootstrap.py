"""Is a challenger better than the champion, or only by the noise of the evaluation?

Both models are scored on the same evaluation images, and the improvement (champion − challenger; every
compared metric is lower-is-better) gets a percentile-bootstrap confidence interval:

- a metric that is a mean over images (a VAE's NLL) is resampled *paired*: one set of resampled image
  indices per replicate, applied to both models' per-image values, so the noise shared by the two models
  (hard images are hard for both) cancels;
- the Fréchet distance is not a mean of per-item terms, so each replicate resamples the real images (the same
  indices for both models) and each model's generated samples, and recomputes both distances.

The promotion rule reads the interval's lower bound: promote only when even that beats `min_improvement`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from gen_platform.errors import GenPlatformError
from gen_platform.evaluation.distribution import (Moments, batched_frechet, features_of, frechet_from_features,
                                                  generate)
from gen_platform.settings import EvaluateParams

REPLICATES_PER_BATCH = 64  # FD replicates whose D×D covariances are held at once
PRODUCT_ELEMENTS = 1 << 25  # the most feature products `_Resampler` keeps (256 MiB)


@dataclass(frozen=True)
class Comparison:
    metric: str  # what both models were scored on, lower is better
    challenger: float
    champion: float
    low: float  # bounds of the improvement (champion − challenger) at `level`
    high: float
    level: float
    samples: int  # evaluation images behind each number
    resamples: int

    @property
    def improvement(self) -> float:
        return self.champion - self.challenger

    def describe(self) -> str:
        return (f"{self.metric}: {self.challenger:.4g} vs champion {self.champion:.4g}, improvement "
                f"{self.improvement:.4g} ({self.level:.0%} CI [{self.low:.4g}, {self.high:.4g}], "
                f"{self.samples} images, {self.resamples} bootstrap resamples)")

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self) | {"improvement": self.improvement}


def _interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


def paired_mean_difference(metric: str, champion: np.ndarray, challenger: np.ndarray, level: float,
                           resamples: int, seed: int = 0) -> Comparison:
    """Compare the means of two models' per-image values on the same images (element i: image i)."""
    champion, challenger = np.asarray(champion, np.float64), np.asarray(challenger, np.float64)
    if champion.shape != challenger.shape or champion.ndim != 1 or len(champion) < 2:
        raise GenPlatformError(f"{metric}: a paired comparison needs the same ≥ 2 images scored by both models "
                               f"(got {champion.shape} and {challenger.shape})")
    differences = champion - challenger
    rng, n = np.random.default_rng(seed), len(differences)
    batch = max(1, 2_000_000 // n)  # bounded memory for the resample × image index matrix
    means = np.concatenate([differences[rng.integers(0, n, (min(batch, resamples - start), n))].mean(axis=1)
                            for start in range(0, resamples, batch)])
    low, high = _interval(means, level)
    return Comparison(metric, float(challenger.mean()), float(champion.mean()), low, high, level, n, resamples)


class _Resampler:
    """Bootstrap resamples of one feature set (N×D, float64), as their moments.

    A resample is how often each of the N features was drawn (a count×N matrix C), so its sums are products with C:
    no count×N×D copy of the features is gathered. Where the N×D(D+1)/2 products of each feature's entries fit in
    PRODUCT_ELEMENTS, they are formed once and every batch's second moments are one matrix product with C: the
    same arithmetic as count D×D products, 3× faster here. Otherwise each replicate takes its D×D product."""

    def __init__(self, features: torch.Tensor):
        self.features = features
        n, d = features.shape
        self.upper = torch.triu_indices(d, d)
        self.products = None
        if n * d * (d + 1) // 2 <= PRODUCT_ELEMENTS:  # row i's entries i..D-1: the order of `upper`
            self.products = torch.cat([features[:, i:i + 1] * features[:, i:] for i in range(d)], dim=1)

    def moments(self, count: int, generator: torch.Generator) -> Moments:
        n, d = self.features.shape
        draws = torch.randint(n, (count, n), generator=generator)
        ones = torch.ones(count, n, dtype=self.features.dtype)
        counts = torch.zeros_like(ones).scatter_add_(1, draws, ones)
        means = counts @ self.features / n
        if self.products is None:
            second_moments = (self.features.T * counts[:, None]) @ self.features
        else:
            sums = counts @ self.products
            rows, cols = self.upper
            second_moments = torch.empty(count, d, d, dtype=self.features.dtype)
            second_moments[:, rows, cols] = sums
            second_moments[:, cols, rows] = sums
        return means, (second_moments - n * means[:, :, None] * means[:, None]) / (n - 1)


def _replicates(statistic, resamples: int) -> np.ndarray:
    """`statistic(count)` → `count` bootstrap replicates, called in batches of bounded memory."""
    return torch.cat([statistic(min(REPLICATES_PER_BATCH, resamples - start))
                      for start in range(0, resamples, REPLICATES_PER_BATCH)]).numpy()


def frechet_interval(real: torch.Tensor, fake: torch.Tensor, level: float, resamples: int,
                     seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of one model's FD, resampling both the real and the generated features."""
    real, fake, generator = _Resampler(real.double()), _Resampler(fake.double()), torch.Generator().manual_seed(seed)
    return _interval(_replicates(lambda count: batched_frechet(real.moments(count, generator),
                                                               fake.moments(count, generator)), resamples), level)


def frechet_difference(metric: str, real: torch.Tensor, champion: torch.Tensor, challenger: torch.Tensor,
                       level: float, resamples: int, seed: int = 0) -> Comparison:
    """Compare two models' FD to the same real features (N×D each; the models' sample counts may differ)."""
    real, champion, challenger = real.double(), champion.double(), challenger.double()
    if min(len(real), len(champion), len(challenger)) < 2:
        raise GenPlatformError(f"{metric}: the Fréchet distance needs at least 2 real and 2 generated images")
    generator = torch.Generator().manual_seed(seed)
    resamplers = [_Resampler(features) for features in (real, champion, challenger)]

    def differences(count: int) -> torch.Tensor:
        reals, champions, challengers = (resampler.moments(count, generator) for resampler in resamplers)
        return batched_frechet(reals, champions) - batched_frechet(reals, challengers)  # the same real images

    low, high = _interval(_replicates(differences, resamples), level)
    return Comparison(metric, frechet_from_features(real, challenger), frechet_from_features(real, champion),
                      low, high, level, len(real), resamples)


def compare_by_frechet_distance(challenger: nn.Module, champion: nn.Module, images: torch.Tensor,
                                features: nn.Module, settings: EvaluateParams) -> Comparison:
    """`val_fd` of both generators against `images`, each drawing `metric_samples` images with the same seed."""
    real = features_of(images, features, settings.batch_size)
    fakes = [features_of(generate(model, settings.metric_samples, settings.seed, settings.batch_size), features,
                         settings.batch_size) for model in (champion, challenger)]
    return frechet_difference("val_fd", real, *fakes, settings.confidence, settings.bootstrap_resamples, settings.seed)
