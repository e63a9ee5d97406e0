"""Score one trained model on the scale every family shares, plus what its family adds, and draw it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from gen_platform.config import PipelineParams
from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.errors import ConfigError, GenPlatformError
from gen_platform.evaluation.classifier import FeatureModule, SavedClassifier
from gen_platform.evaluation.bootstrap import frechet_interval
from gen_platform.evaluation.distribution import (distribution_metrics, features_of, frechet_distance,
                                                  frechet_from_features, generate)
from gen_platform.evaluation.images import image_grid
from gen_platform.evaluation.inception import load_inception
from gen_platform.evaluation.memorisation import closest_pairs_grid, memorisation
from gen_platform.models import get_family
from gen_platform.settings import MIN_METRIC_SAMPLES, EvaluateParams

INCEPTION_BATCH = 64  # 299×299 RGB inputs: about 70 MB per batch


@dataclass
class Evaluation:
    scores: dict[str, float]
    pictures: dict[str, Image.Image] = field(default_factory=dict)


def reference_images(settings: EvaluateParams, splits: dict[str, ImageArrays]) -> torch.Tensor:
    """The real side of the distribution metrics: `metric_samples` images of `reference_split` (shuffled at
    `prepare`), never silently fewer."""
    split, wanted = splits[settings.reference_split], settings.metric_samples
    if len(split) < wanted:
        sizes = ", ".join(f"{name} {len(arrays)}" for name, arrays in splits.items())
        raise ConfigError(f"evaluate.metric_samples is {wanted} but the {settings.reference_split} split "
                          f"(evaluate.reference_split) holds {len(split)} images (splits: {sizes}): lower "
                          f"evaluate.metric_samples to at most {len(split)} (the minimum is {MIN_METRIC_SAMPLES}) "
                          f"or take the real images from a larger split")
    return to_tensor(split.images[:wanted])


def evaluate_model(model: torch.nn.Module, params: PipelineParams, splits: dict[str, ImageArrays],
                   classifier: SavedClassifier, root: Path = Path(".")) -> Evaluation:
    """`fd` (with its bootstrap interval), `kid`, `precision`, `recall`, `density`, `coverage` between
    `metric_samples` real images of the reference split and as many generated ones, `val_fd`, the memorisation
    check's `copy_rate` (with a picture of the samples closest to a training image), standard `fid` when
    `evaluate.inception_weights` names an extractor (relative to `root`), a sample grid, the sample counts,
    and the family's own scores and pictures (the VAE: ELBO at β=1 and `nll`)."""
    settings = params.evaluate
    inception = load_inception(root / settings.inception_weights) if settings.inception_weights else None
    extractor = FeatureModule(classifier.load())
    val, test, train = (to_tensor(splits[name].images) for name in ("val", "test", "train"))
    real = reference_images(settings, splits)
    fake = generate(model, settings.metric_samples, settings.seed, settings.batch_size)
    features = {name: features_of(images, extractor, settings.batch_size)  # once per image set, for every metric
                for name, images in (("fake", fake), ("val", val), ("train", train), ("test", test))}
    features["real"] = features[settings.reference_split][:len(real)]  # the real images lead that split
    scores = distribution_metrics(features["real"], features["fake"], settings.nearest_k)
    scores["fd_ci_low"], scores["fd_ci_high"] = frechet_interval(
        features["real"], features["fake"], settings.confidence, settings.bootstrap_resamples, settings.seed)
    scores |= {"metric_real_images": len(real), "metric_generated_images": len(fake), "val_fd_images": len(val)}
    scores["val_fd"] = frechet_from_features(features["val"], features["fake"])  # as the champion rule scores it
    if inception is not None:
        scores["fid"] = frechet_distance(real, fake, inception, INCEPTION_BATCH)
    copies = memorisation(features["fake"], features["train"], features["test"], settings.copy_quantile)
    scores |= {"copy_rate": copies.copy_rate, "copy_threshold": copies.threshold}
    pictures = {"samples": image_grid(model.sample(settings.num_samples, torch.Generator().manual_seed(settings.seed))),
                "closest_training_images": closest_pairs_grid(copies, fake, train)}
    family = get_family(params.model.family)
    own = family.score(model, val, test, settings)
    scores |= own.scores
    if family.selection_metric not in scores:  # the champion rule needs it on the full validation split
        raise GenPlatformError(f"family {family.name!r}: its score() must report its selection metric "
                               f"{family.selection_metric!r} (it reported {sorted(own.scores)})")
    return Evaluation(scores, pictures | own.pictures)
