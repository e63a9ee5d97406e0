"""The statistics of the champion rule: the bootstrap interval of an improvement covers the true improvement
at about its level, pairing cancels the noise two models share, and the FD from features is torchmetrics' FD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gen_platform.errors import GenPlatformError
from gen_platform.evaluation import bootstrap
from gen_platform.evaluation.bootstrap import frechet_difference, frechet_interval, paired_mean_difference
from gen_platform.evaluation.distribution import (batched_frechet, feature_moments, frechet_distance,
                                                  frechet_from_features)


def test_the_paired_interval_covers_the_true_improvement_like_the_normal_theory_interval():
    """On the same 400 simulated evaluations, the bootstrap interval covers the true improvement about as often
    as the textbook interval mean ± z·se (both nominally 90 %)."""
    rng = np.random.default_rng(0)
    bootstrap_covers = normal_covers = 0
    for trial in range(400):
        champion = rng.normal(10.0, 2.0, 100)
        challenger = champion - 0.5 + rng.normal(0.0, 1.0, 100)  # true improvement 0.5
        comparison = paired_mean_difference("nll", champion, challenger, 0.9, 500, seed=trial)
        bootstrap_covers += comparison.low <= 0.5 <= comparison.high
        differences = champion - challenger
        normal_covers += abs(differences.mean() - 0.5) <= 1.645 * differences.std(ddof=1) / 10
    assert abs(bootstrap_covers - normal_covers) / 400 <= 0.04
    assert 0.8 <= bootstrap_covers / 400 <= 0.96


def test_pairing_cancels_the_difficulty_both_models_share():
    """Image difficulty varies by ±10 nats, the models differ by 0.5 ± 0.1: unpaired, the interval of the
    difference of means would be about ±2.8 wide; paired, it excludes 0 by far."""
    rng = np.random.default_rng(1)
    difficulty = rng.normal(50.0, 10.0, 200)
    comparison = paired_mean_difference("nll", difficulty + 0.5, difficulty + rng.normal(0, 0.1, 200), 0.95, 1000)
    assert comparison.low > 0.4 and comparison.high < 0.6
    assert comparison.improvement == pytest.approx(comparison.champion - comparison.challenger)


def test_a_paired_comparison_needs_the_same_images():
    with pytest.raises(GenPlatformError, match="val_nll: a paired comparison needs the same"):
        paired_mean_difference("val_nll", np.zeros(10), np.zeros(9), 0.95, 100)


class Flatten(nn.Module):
    num_features = 16

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


def _image_sets(constant_pixel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(300, 1, 4, 4, generator=generator)
    fake = (torch.rand(300, 1, 4, 4, generator=generator) * 0.8 + 0.1) ** 2
    if constant_pixel:  # a feature constant over the set: a semi-definite covariance, no Cholesky factor
        fake[:, 0, 0, 0] = 0.5
    return real, fake


@pytest.mark.parametrize("constant_pixel", [False, True])
def test_the_fd_from_features_is_torchmetrics_fd(constant_pixel):
    real, fake = _image_sets(constant_pixel)
    if constant_pixel:  # the case is what it says: this covariance has no Cholesky factor
        assert torch.linalg.cholesky_ex(torch.cov(fake.flatten(1).T.double())).info != 0
    expected = frechet_distance(real, fake, Flatten())
    assert frechet_from_features(real.flatten(1), fake.flatten(1)) == pytest.approx(expected, rel=1e-4)


def test_a_batch_mixing_definite_and_semi_definite_covariances_gives_each_its_fd():
    (real, fake), (_, flat) = _image_sets(False), _image_sets(True)
    pairs = [(real, fake), (real, flat), (fake, real)]
    stacked = lambda sets: tuple(map(torch.stack, zip(*(feature_moments(s.flatten(1)) for s in sets))))  # noqa: E731
    batch = batched_frechet(stacked([a for a, _ in pairs]), stacked([b for _, b in pairs]))
    assert batch.tolist() == pytest.approx([frechet_distance(a, b, Flatten()) for a, b in pairs], rel=1e-4)


def test_the_fd_interval_separates_a_shifted_generator_and_not_an_equal_one():
    generator = torch.Generator().manual_seed(0)
    real, good, other_good = (torch.randn(400, 8, generator=generator) for _ in range(3))
    shifted = torch.randn(400, 8, generator=generator) + 0.5  # FD ≈ 8 × 0.25 = 2 worse
    better = frechet_difference("val_fd", real, shifted, good, 0.95, 300)
    assert better.low > 1.0 and better.champion > better.challenger
    equal = frechet_difference("val_fd", real, other_good, good, 0.95, 300)
    assert equal.low < 0 < equal.high


def test_both_ways_of_resampling_covariances_give_the_same_interval(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 12, generator=generator), torch.randn(300, 12, generator=generator) * 1.2
    packed = frechet_interval(real, fake, 0.9, 100)
    monkeypatch.setattr(bootstrap, "PRODUCT_ELEMENTS", 0)  # every replicate takes its own D×D product
    assert frechet_interval(real, fake, 0.9, 100) == pytest.approx(packed, rel=1e-10)
    # and both are the FDs of the resampled images themselves, drawn as the interval draws them (batch by batch)
    draws, fds = torch.Generator().manual_seed(0), []
    for count in (bootstrap.REPLICATES_PER_BATCH, 100 - bootstrap.REPLICATES_PER_BATCH):
        real_draws, fake_draws = (torch.randint(300, (count, 300), generator=draws) for _ in range(2))
        fds += [frechet_from_features(real[r], fake[f]) for r, f in zip(real_draws, fake_draws)]
    assert packed == pytest.approx(tuple(np.quantile(fds, [0.05, 0.95])), rel=1e-10)
