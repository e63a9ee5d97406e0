"""The benchmarks' plain single-process loop: the platform's `EpochLoop` fed from memory, no Ray, no shards."""

from __future__ import annotations

from typing import Iterator

import numpy as np


def shuffled_batches(images: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """uint8 N×H×W×C batches of `images` in a fresh random order (what a shuffling DataLoader gives)."""
    order = rng.permutation(len(images))
    for start in range(0, len(images), batch_size):
        yield images[order[start:start + batch_size]]
