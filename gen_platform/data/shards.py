"""A prepared split on disk as fixed-size `.npy` shards, read one shard at a time.

Layout of a split directory: `index.json` (rows, image shape, the shard files) and `images-00000.npy`,
`labels-00000.npy`, ... of at most `rows_per_shard` rows each. Training workers stream their share of the
rows from these files instead of receiving the whole split in their config: a worker holds one shard and one
batch at a time, so its memory does not grow with the dataset, and the same code serves one worker, DDP on
one node and workers on several nodes (the directory must then be on storage every node mounts, like
`train.storage_path`).

Why not Ray Data: for a dataset that is already a few arrays, its streaming executor adds seconds of start-up
per epoch on small machines and its per-epoch order is not reproducible across a worker restart; this
sampler is deterministic in (seed, epoch), so a resumed epoch sees the same batches.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from gen_platform.data.arrays import ImageArrays
from gen_platform.errors import DataError

INDEX = "index.json"
ROWS_PER_SHARD = 8192  # 100 MB of 64×64 RGB images


@dataclass(frozen=True)
class ShardedSplit:
    directory: str  # a plain string: the object travels to Ray workers

    @property
    def _index(self) -> dict:
        path = Path(self.directory) / INDEX
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: not found; run `genp prepare` (or `dvc pull`)") from None

    def __len__(self) -> int:
        return int(self._index["rows"])

    @property
    def files(self) -> list[Path]:
        """Every file of the split, the index first (what the validation gate fingerprints)."""
        shards = self._index["shards"]
        return [Path(self.directory) / INDEX] + [Path(self.directory) / shard[kind] for shard in shards
                                                 for kind in ("images", "labels")]

    def shards(self) -> Iterator[ImageArrays]:
        """The split in order, one shard at a time."""
        for number in range(len(self._index["shards"])):
            yield self._shard(number)

    def _shard(self, number: int) -> ImageArrays:
        entry, directory = self._index["shards"][number], Path(self.directory)
        return ImageArrays(np.load(directory / entry["images"], allow_pickle=False),
                           np.load(directory / entry["labels"], allow_pickle=False))

    def head(self, rows: int) -> ImageArrays:
        """The first `rows` rows (the split is shuffled at `prepare`, so a fair sample), reading only the shards
        that hold them."""
        parts, taken = [], 0
        for shard in self.shards():
            parts.append(ImageArrays(shard.images[:rows - taken], shard.labels[:rows - taken]))
            taken += len(parts[-1])
            if taken >= rows:
                break
        return ImageArrays(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))

    def read(self) -> ImageArrays:
        """The whole split in memory (evaluation and the small splits)."""
        return self.head(len(self))

    def batches(self, batch_size: int, rank: int, world_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
        """This worker's images for one epoch, `batch_size` at a time (the last batch may be smaller).

        Shards come in a random order and rows in a random order within each shard, both fixed by (seed,
        epoch); the k-th row of that order goes to worker k mod world_size, and every worker stops at
        rows // world_size rows, so all workers take the same number of steps (DDP needs that).
        """
        rng = np.random.default_rng([seed, epoch])
        per_worker, taken, position = len(self) // world_size, 0, 0
        buffer: list[np.ndarray] = []
        for number in rng.permutation(len(self._index["shards"])):
            images = self._shard(int(number)).images
            order = rng.permutation(len(images))
            first = (rank - position) % world_size  # this worker's first row in this shard's order
            position += len(images)
            mine = images[order[first::world_size][:per_worker - taken]]
            taken += len(mine)
            buffer.append(mine)
            while sum(len(part) for part in buffer) >= batch_size:
                joined = np.concatenate(buffer)
                yield joined[:batch_size]
                buffer = [joined[batch_size:]]
            if taken >= per_worker:
                break
        if buffer and len(rest := np.concatenate(buffer)):
            yield rest


def write_shards(directory: str | Path, arrays: ImageArrays, rows_per_shard: int = ROWS_PER_SHARD) -> ShardedSplit:
    """Write `arrays` as a split directory, atomically: a reader sees the old split or the new one."""
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shards = []
    for number, start in enumerate(range(0, max(len(arrays), 1), rows_per_shard)):
        entry = {"images": f"images-{number:05d}.npy", "labels": f"labels-{number:05d}.npy",
                 "rows": int(min(rows_per_shard, len(arrays) - start))}
        np.save(staging / entry["images"], np.ascontiguousarray(arrays.images[start:start + rows_per_shard]))
        np.save(staging / entry["labels"], np.ascontiguousarray(arrays.labels[start:start + rows_per_shard]))
        shards.append(entry)
    index = {"rows": len(arrays), "image_shape": list(arrays.images.shape[1:]), "shards": shards}
    (staging / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(staging, directory)
        shutil.rmtree(old)
    else:
        os.replace(staging, directory)
    return ShardedSplit(str(directory))
