"""Deterministic train/val/test split: the same data and seed always give the same split."""

from __future__ import annotations

import numpy as np

from gen_platform.data.arrays import TEST_ROW, ImageArrays

SPLITS = ("train", "val", "test")


def split_dataset(arrays: ImageArrays, seed: int, val_fraction: float, test_fraction: float) -> dict[str, ImageArrays]:
    """Seeded split. A dataset that ships its own test split (an `split` array) keeps it: `test_fraction`
    is then unused and validation images are drawn from its training rows."""
    rng = np.random.default_rng(seed)
    if arrays.split is not None:
        test = np.flatnonzero(arrays.split == TEST_ROW)
        train_rows = rng.permutation(np.flatnonzero(arrays.split != TEST_ROW))
        n_val = int(round(len(train_rows) * val_fraction))
        parts = {"val": train_rows[:n_val], "test": test, "train": train_rows[n_val:]}
    else:
        order = rng.permutation(len(arrays))
        n_val = int(round(len(arrays) * val_fraction))
        n_test = int(round(len(arrays) * test_fraction))
        parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {name: arrays.subset(np.sort(parts[name])) for name in SPLITS}
