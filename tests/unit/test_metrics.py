"""Sanity of the generative metrics on real digits with the domain classifier's features."""

import pytest
import torch

from gen_platform.data.arrays import to_tensor
from gen_platform.data.splits import split_dataset
from gen_platform.evaluation.classifier import ClassifierArchitecture, FeatureModule, accuracy, train_classifier
from gen_platform.evaluation.distribution import distribution_metrics, features_of, frechet_distance
from gen_platform.models.vae import importance_weighted_nll, neg_elbo
from gen_platform.models.vae import ConvVAE, VAEArchitecture


@pytest.fixture(scope="module")
def setting(digits):
    splits = split_dataset(digits, 0, 0.1, 0.1)
    classifier = train_classifier(splits["train"], ClassifierArchitecture(8, 1, 10), 3, 128, 1e-3, 0)
    images = to_tensor(splits["train"].images)
    return FeatureModule(classifier), images[:700], images[700:1400], accuracy(classifier, splits["test"])


def test_domain_classifier_is_accurate(setting):
    assert setting[3] > 0.9


def test_real_vs_real_is_near_zero_and_noise_raises_fd_monotonically(setting):
    features, real, other, _ = setting
    baseline = frechet_distance(real, other, features)
    generator = torch.Generator().manual_seed(0)
    noisy = [frechet_distance(real, (other + s * torch.randn(other.shape, generator=generator)).clamp(0, 1), features)
             for s in (0.05, 0.1, 0.2, 0.4, 0.8)]
    pure_noise = frechet_distance(real, torch.rand(other.shape, generator=generator), features)
    assert baseline < 0.05 * pure_noise  # "near 0" on the scale of this feature space
    assert all(a < b for a, b in zip([baseline] + noisy, noisy))


def test_blur_raises_fd_monotonically(setting):
    features, real, other, _ = setting
    scores = []
    for size in (1, 3, 5):
        kernel = torch.ones(1, 1, size, size) / size**2
        scores.append(frechet_distance(real, torch.nn.functional.conv2d(other, kernel, padding=size // 2), features))
    assert scores[0] < scores[1] < scores[2]


def test_collapsed_generator_has_low_recall_and_coverage(setting):
    features, real, other, _ = setting
    healthy = distribution_metrics(features_of(real, features, 512), features_of(other, features, 512))
    collapsed = distribution_metrics(features_of(real, features, 512),
                                     features_of(other[:1].repeat(len(other), 1, 1, 1), features, 512))
    assert healthy["recall"] > 0.8 and healthy["coverage"] > 0.7
    assert collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.05
    assert collapsed["fd"] > 10 * healthy["fd"] and collapsed["kid"] > healthy["kid"]


def test_importance_weighted_nll_is_tighter_than_the_elbo():
    torch.manual_seed(0)
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8)).eval()
    images = torch.rand(32, 1, 8, 8)
    one_sample = importance_weighted_nll(model, images, samples=1, seed=1)
    many = importance_weighted_nll(model, images, samples=200, seed=1)
    bound = neg_elbo(model, images, 32, seed=1)
    assert many < one_sample and many < bound
    assert one_sample == pytest.approx(bound, rel=0.05)  # k=1 is the ELBO itself, up to sampling noise


def test_metrics_use_the_samples_the_params_ask_for_or_refuse(digits):
    from gen_platform.config import parse_params
    from gen_platform.errors import ConfigError
    from gen_platform.scoring import reference_images

    splits = split_dataset(digits, 0, 0.1, 0.1)
    assert len(reference_images(parse_params({}).evaluate, splits)) == 1000  # from the train split
    unseen = parse_params({"evaluate": {"reference_split": "test", "metric_samples": 1000}}).evaluate
    with pytest.raises(ConfigError, match=r"evaluate.metric_samples is 1000 but the test split "
                                          r"\(evaluate.reference_split\) holds 180 images"):
        reference_images(unseen, splits)
    with pytest.raises(ConfigError, match="evaluate.metric_samples: Input should be greater than or equal to 100"):
        parse_params({"evaluate": {"metric_samples": 50}})  # below the stated minimum


def test_the_fd_interval_holds_the_fd_and_shrinks_with_more_samples(setting):
    from gen_platform.evaluation.bootstrap import frechet_interval
    from gen_platform.evaluation.distribution import frechet_from_features

    features, real, other, _ = setting
    noisy = (other + 0.2 * torch.randn(other.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    real_features, fake_features = features_of(real, features, 256), features_of(noisy, features, 256)
    low, high = frechet_interval(real_features, fake_features, 0.95, 300)
    assert low <= frechet_from_features(real_features, fake_features) <= high
    few_low, few_high = frechet_interval(real_features[:150], fake_features[:150], 0.95, 300)
    assert few_high - few_low > 1.5 * (high - low)  # 150 vs 700 images: about √(700/150) ≈ 2.2× wider


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_and_the_manifold_metrics_match_the_reference_implementations():
    """KID against torchmetrics' (float32), precision/recall/density/coverage against the `prdc` package."""
    from prdc import compute_prdc
    from torchmetrics.image.kid import KernelInceptionDistance

    generator = torch.Generator().manual_seed(0)
    real = torch.randn(300, 16, generator=generator)
    fake = torch.randn(300, 16, generator=generator) * 1.3 + 0.2
    ours = distribution_metrics(real, fake, nearest_k=5)
    reference = compute_prdc(real_features=real.numpy(), fake_features=fake.numpy(), nearest_k=5)
    assert 0 < reference["precision"] < 1 and 0 < reference["coverage"] < 1  # neither check is trivially met
    assert {name: ours[name] for name in reference} == pytest.approx(reference, abs=1e-12)
    kid = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=3, subset_size=300)  # each subset: all
    kid.update(real, real=True)
    kid.update(fake, real=False)
    assert ours["kid"] == pytest.approx(float(kid.compute()[0]), rel=1e-4)
