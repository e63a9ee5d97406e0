"""One evaluation passes each image set through the domain classifier once, and every metric reads those
features: the scores are those of the image-level computations."""

from __future__ import annotations

import pytest
import torch

from gen_platform import scoring
from gen_platform.config import parse_params
from gen_platform.data.arrays import to_tensor
from gen_platform.data.splits import split_dataset
from gen_platform.evaluation.classifier import ClassifierArchitecture, FeatureModule, SavedClassifier, train_classifier
from gen_platform.evaluation.distribution import frechet_distance, generate
from gen_platform.models import vae


@pytest.mark.parametrize("reference_split", ["train", "test"])
def test_each_image_set_goes_through_the_classifier_once(digits, monkeypatch, reference_split):
    splits = split_dataset(digits, 0, 0.1, 0.1)
    classifier = SavedClassifier.of(train_classifier(splits["train"], ClassifierArchitecture(8, 1, 10), 1, 128,
                                                     1e-3, 0))
    params = parse_params({"evaluate": {"metric_samples": 100, "nll_importance_samples": 2,
                                        "reference_split": reference_split}})
    torch.manual_seed(0)
    model = vae.ConvVAE(vae.architecture_from(params.data, params.model.settings)).eval()
    images_seen = []

    class CountingFeatures(FeatureModule):
        def forward(self, images):
            images_seen.append(len(images))
            return super().forward(images)

    monkeypatch.setattr(scoring, "FeatureModule", CountingFeatures)
    scores = scoring.evaluate_model(model, params, splits, classifier).scores

    # 100 generated; the 100 real ones lead the reference split, whose features are reused
    once = 100 + sum(len(splits[name]) for name in ("train", "val", "test"))
    assert sum(images_seen) == once
    features = FeatureModule(classifier.load())
    real = scoring.reference_images(params.evaluate, splits)
    fake = generate(model, 100, params.evaluate.seed, params.evaluate.batch_size)
    assert scores["fd"] == pytest.approx(frechet_distance(real, fake, features), rel=1e-4)  # torchmetrics, on images
    assert scores["val_fd"] == pytest.approx(frechet_distance(to_tensor(splits["val"].images), fake, features),
                                             rel=1e-4)
    assert scores["fd_ci_low"] <= scores["fd"] <= scores["fd_ci_high"]
