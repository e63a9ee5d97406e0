"""Deterministic train/val/test split: the same data and seed always give the same split."""

from __future__ import annotations

import numpy as np

from gen_platform.data.arrays import ImageArrays

SPLITS = ("train", "val", "test")


def split_dataset(arrays: ImageArrays, seed: int, val_fraction: float, test_fraction: float) -> dict[str, ImageArrays]:
    order = np.random.default_rng(seed).permutation(len(arrays))
    n_val = int(round(len(arrays) * val_fraction))
    n_test = int(round(len(arrays) * test_fraction))
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {name: arrays.subset(np.sort(parts[name])) for name in SPLITS}
