"""Deterministic train/val/test split: the same data and seed always give the same split."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np

from gen_platform.data.arrays import CHUNK_BYTES, TEST_ROW, ImageArrays, NpzImages
from gen_platform.data.shards import ROWS_PER_SHARD, ShardWriter

SPLITS = ("train", "val", "test")


def split_rows(count: int, split: np.ndarray | None, seed: int, val_fraction: float,
               test_fraction: float) -> dict[str, np.ndarray]:
    """The sorted row numbers of each split of `count` rows. A dataset that ships its own test split (a `split`
    array) keeps it: `test_fraction` is then unused and validation rows are drawn from its training rows."""
    rng = np.random.default_rng(seed)
    if split is not None:
        test = np.flatnonzero(split == TEST_ROW)
        train_rows = rng.permutation(np.flatnonzero(split != TEST_ROW))
        n_val = int(round(len(train_rows) * val_fraction))
        parts = {"val": train_rows[:n_val], "test": test, "train": train_rows[n_val:]}
    else:
        order = rng.permutation(count)
        n_val = int(round(count * val_fraction))
        n_test = int(round(count * test_fraction))
        parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {name: np.sort(parts[name]) for name in SPLITS}


def split_dataset(arrays: ImageArrays, seed: int, val_fraction: float, test_fraction: float) -> dict[str, ImageArrays]:
    """Seeded split of arrays in memory (see `split_rows`)."""
    rows = split_rows(len(arrays), arrays.split, seed, val_fraction, test_fraction)
    return {name: arrays.subset(rows[name]) for name in SPLITS}


def write_splits(dataset: NpzImages, rows: dict[str, np.ndarray], directories: dict[str, Path],
                 chunk_bytes: int = CHUNK_BYTES, rows_per_shard: int = ROWS_PER_SHARD) -> None:
    """Each split's shards (`rows` from `split_rows`) from one pass over the images, a chunk at a time: a split's
    rows are sorted, so the rows of a chunk that belong to it come next in its shards. Memory holds a chunk."""
    with ExitStack() as stack:
        writers = {name: stack.enter_context(ShardWriter(directories[name], len(rows[name]), dataset.shape[1:],
                                                         dataset.dtype, dataset.labels.dtype, rows_per_shard))
                   for name in rows}
        start = 0
        for chunk in dataset.chunks(chunk_bytes):
            stop = start + len(chunk)
            for name, part in rows.items():
                taken = part[np.searchsorted(part, start):np.searchsorted(part, stop)]
                writers[name].write(chunk[taken - start], dataset.labels[taken])
            start = stop
            del chunk  # before the next chunk is read, not after
