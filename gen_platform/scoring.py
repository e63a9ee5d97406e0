"""Score one trained model on the scale every family shares, plus what its family adds, and draw it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from gen_platform.config import PipelineParams
from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.errors import GenPlatformError
from gen_platform.evaluation.classifier import FeatureModule, SavedClassifier
from gen_platform.evaluation.distribution import distribution_metrics, frechet_distance
from gen_platform.evaluation.images import image_grid
from gen_platform.evaluation.inception import load_inception
from gen_platform.evaluation.memorisation import closest_pairs_grid, memorisation
from gen_platform.models import get_family

INCEPTION_BATCH = 64  # 299×299 RGB inputs: about 70 MB per batch


@dataclass
class Evaluation:
    scores: dict[str, float]
    pictures: dict[str, Image.Image] = field(default_factory=dict)


def _samples(model: torch.nn.Module, n: int, seed: int, batch_size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([model.sample(min(batch_size, n - start), generator) for start in range(0, n, batch_size)])


def evaluate_model(model: torch.nn.Module, params: PipelineParams, splits: dict[str, ImageArrays],
                   classifier: SavedClassifier, root: Path = Path(".")) -> Evaluation:
    """Test-split `fd`, `kid`, `precision`, `recall`, `density`, `coverage`, `val_fd` and the memorisation
    check's `copy_rate` (with a picture of the samples closest to a training image) for every family,
    standard `fid` when `evaluate.inception_weights` names an extractor (relative to `root`), a sample grid,
    and the family's own scores and pictures (the VAE: ELBO at β=1 and `nll`)."""
    settings = params.evaluate
    inception = load_inception(root / settings.inception_weights) if settings.inception_weights else None
    features = FeatureModule(classifier.load())
    val, test = to_tensor(splits["val"].images), to_tensor(splits["test"].images)
    fake = _samples(model, min(settings.metric_samples, max(len(test), 2)), settings.seed, settings.batch_size)
    scores = distribution_metrics(test, fake, features, settings.nearest_k, settings.batch_size)
    scores["val_fd"] = frechet_distance(val, fake[:len(val)], features, settings.batch_size)
    if inception is not None:
        scores["fid"] = frechet_distance(test, fake, inception, INCEPTION_BATCH)
    copies = memorisation(fake, to_tensor(splits["train"].images), test, features, settings.copy_quantile,
                          settings.batch_size)
    scores |= {"copy_rate": copies.copy_rate, "copy_threshold": copies.threshold}
    pictures = {"samples": image_grid(model.sample(settings.num_samples, torch.Generator().manual_seed(settings.seed))),
                "closest_training_images": closest_pairs_grid(copies, fake, to_tensor(splits["train"].images))}
    family = get_family(params.model.family)
    own = family.score(model, val, test, settings)
    scores |= own.scores
    if family.selection_metric not in scores:  # the champion rule needs it on the full validation split
        raise GenPlatformError(f"family {family.name!r}: its score() must report its selection metric "
                               f"{family.selection_metric!r} (it reported {sorted(own.scores)})")
    return Evaluation(scores, pictures | own.pictures)
