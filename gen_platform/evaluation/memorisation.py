"""Memorisation check: does a generator hand back its training images?

In the domain classifier's feature space, each generated sample's nearest training image is compared with
how close *unseen* real images (the test split) come to the training set. `copy_rate` is the share of samples
closer to a training image than the `quantile` (default 1 %) of test-to-training nearest-neighbour distances:
about `quantile` for a model that generalises, near 1 for one that copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from gen_platform.evaluation.images import image_grid

CHUNK = 1024  # rows of the distance matrix at a time: memory stays flat in the training set's size


@dataclass(frozen=True)
class Memorisation:
    copy_rate: float
    threshold: float  # the distance below which a sample counts as a copy
    closest: list[tuple[int, int]]  # (sample, training image) indices of the closest pairs, closest first


def _nearest(queries: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    distances, indices = [], []
    for start in range(0, len(queries), CHUNK):
        d, i = torch.cdist(queries[start:start + CHUNK], references).min(dim=1)
        distances.append(d)
        indices.append(i)
    return torch.cat(distances), torch.cat(indices)


def memorisation(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, quantile: float = 0.01,
                 pairs: int = 8) -> Memorisation:
    """From the features (`features_of`) of the generated samples and of the training and test images."""
    test_distances, _ = _nearest(test, train)
    threshold = float(torch.quantile(test_distances, quantile))
    sample_distances, nearest = _nearest(samples, train)
    order = sample_distances.argsort()[:pairs]
    return Memorisation(float((sample_distances <= threshold).float().mean()), threshold,
                        [(int(i), int(nearest[i])) for i in order])


def closest_pairs_grid(result: Memorisation, samples: torch.Tensor, train: torch.Tensor) -> Image.Image:
    """Top row: the samples closest to a training image; bottom row: those training images."""
    chosen = [i for i, _ in result.closest]
    matched = [j for _, j in result.closest]
    return image_grid(torch.cat([samples[chosen], train[matched]]), columns=len(chosen))
