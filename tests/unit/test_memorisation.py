"""The memorisation check catches a generator that hands back training images, passes a trained VAE, and can
veto a promotion."""

from __future__ import annotations

import pytest
import torch

from gen_platform.config import parse_params
from gen_platform.data.arrays import to_tensor
from gen_platform.data.splits import split_dataset
from gen_platform.evaluation.classifier import ClassifierArchitecture, FeatureModule, train_classifier
from gen_platform.evaluation.distribution import features_of
from gen_platform.evaluation.memorisation import closest_pairs_grid, memorisation
from gen_platform.models import vae
from gen_platform.tracking.registry import copy_veto
from gen_platform.training.loop import EpochLoop


@pytest.fixture(scope="module")
def world(digits):
    splits = split_dataset(digits, 0, 0.1, 0.1)
    classifier = train_classifier(splits["train"], ClassifierArchitecture(8, 1, 10, 64), epochs=3, batch_size=64,
                                  learning_rate=1e-3, seed=0)
    images = {name: to_tensor(part.images) for name, part in splits.items()}
    return images, lambda batch: features_of(batch, FeatureModule(classifier), 256)


def test_a_generator_that_returns_training_images_is_caught(world):
    images, embed = world
    copies = images["train"][torch.randperm(len(images["train"]), generator=torch.Generator().manual_seed(0))[:400]]
    result = memorisation(embed(copies), embed(images["train"]), embed(images["test"]))
    assert result.copy_rate == 1.0 and result.threshold > 0
    sample, training = result.closest[0]
    assert torch.equal(copies[sample], images["train"][training])  # the pictured pair is the copy and its original
    assert closest_pairs_grid(result, copies, images["train"]).size[0] > 0
    assert "above registry.max_copy_rate 0.05" in copy_veto({"copy_rate": result.copy_rate}, 0.05)


def test_a_trained_vae_passes(world):
    images, embed = world
    params = parse_params({})
    torch.manual_seed(0)
    loop = EpochLoop(vae.FAMILY, params, torch.device("cpu"))
    train = (images["train"] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # back to stored form
    for _ in range(8):
        loop.train_epoch(train[i:i + 64] for i in range(0, len(train), 64))
    samples = loop.model.eval().sample(400, torch.Generator().manual_seed(1)).detach()
    result = memorisation(embed(samples), embed(images["train"]), embed(images["test"]))
    assert result.copy_rate <= 0.05, result  # about the quantile (1 %) for a model that does not copy
    assert copy_veto({"copy_rate": result.copy_rate}, 0.05) is None and copy_veto({"copy_rate": 0.9}, None) is None
