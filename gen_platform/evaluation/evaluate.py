"""Score one generative model on the same scale for every family, and draw its pictures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from gen_platform.config import PipelineParams
from gen_platform.data.arrays import ImageArrays, to_tensor
from gen_platform.evaluation.classifier import FeatureModule, load_classifier
from gen_platform.evaluation.distribution import distribution_metrics, frechet_distance
from gen_platform.evaluation.elbo import importance_weighted_nll, neg_elbo
from gen_platform.evaluation.images import image_grid, interpolation_grid
from gen_platform.evaluation.inception import load_inception


INCEPTION_BATCH = 64  # 299×299 RGB inputs: about 70 MB per batch


@dataclass
class Evaluation:
    scores: dict[str, float]
    pictures: dict[str, Image.Image] = field(default_factory=dict)


def _samples(model: torch.nn.Module, n: int, seed: int, batch_size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([model.sample(min(batch_size, n - start), generator) for start in range(0, n, batch_size)])


def evaluate_model(model: torch.nn.Module, params: PipelineParams, splits: dict[str, ImageArrays],
                   classifier: dict[str, Any], root: Path = Path(".")) -> Evaluation:
    """Test-split `fd`, `kid`, `precision`, `recall`, `density`, `coverage` for every family, `val_fd` (the
    GAN's selection metric), for VAEs the ELBO at β=1 (val and test) and the importance-weighted `nll`, and
    standard `fid` when `evaluate.inception_weights` names an extractor (relative to `root`)."""
    settings = params.evaluate
    inception = load_inception(root / settings.inception_weights) if settings.inception_weights else None
    features = FeatureModule(load_classifier(classifier))
    val, test = to_tensor(splits["val"].images), to_tensor(splits["test"].images)
    fake = _samples(model, min(settings.metric_samples, max(len(test), 2)), settings.seed, settings.batch_size)
    scores = distribution_metrics(test, fake, features, settings.nearest_k, settings.batch_size)
    scores["val_fd"] = frechet_distance(val, fake[:len(val)], features, settings.batch_size)
    if inception is not None:
        scores["fid"] = frechet_distance(test, fake, inception, INCEPTION_BATCH)
    pictures = {"samples": image_grid(model.sample(settings.num_samples, torch.Generator().manual_seed(settings.seed)))}
    if params.model.family == "vae":
        for split, images in (("val", val), ("test", test)):
            scores[f"{split}_neg_elbo"] = neg_elbo(model, images, settings.batch_size, seed=settings.seed)["neg_elbo"]
        subset = test[:settings.metric_samples]
        scores["nll"] = importance_weighted_nll(model, subset, settings.nll_importance_samples, seed=settings.seed)
        originals = test[:32]
        pictures["reconstructions"] = image_grid(torch.cat([originals, model.reconstruct(originals)]), columns=8)
        pictures["interpolations"] = interpolation_grid(model, test[:16])
    return Evaluation(scores, pictures)
