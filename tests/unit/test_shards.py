"""Prepared splits as shards that workers stream: every worker takes the same number of steps, the workers
together see each row at most once per epoch, the order is fixed by (seed, epoch), and a worker reads only its
own rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gen_platform.data.arrays import ImageArrays
from gen_platform.data.shards import ReadCount, ShardedSplit, write_shards
from gen_platform.errors import DataError


def _numbered(n):
    """Image i is filled with i (as uint16 split over two pixels), so a batch says which rows it holds."""
    images = np.zeros((n, 2, 2, 1), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = np.arange(n) // 256, np.arange(n) % 256
    return ImageArrays(images, np.arange(n) % 10)


def _rows(batch):
    return (batch[:, 0, 0, 0].astype(int) * 256 + batch[:, 0, 1, 0]).tolist()


def test_round_trip_in_shards(tmp_path):
    data = _numbered(1000)
    split = write_shards(tmp_path / "train", data, rows_per_shard=300)
    assert len(split) == 1000 and len(split.files) == 1 + 2 * 4  # index + 4 shards of images and labels
    assert json.loads((tmp_path / "train" / "index.json").read_text())["image_shape"] == [2, 2, 1]
    read = split.read()
    assert np.array_equal(read.images, data.images) and np.array_equal(read.labels, data.labels)
    rewritten = write_shards(tmp_path / "train", _numbered(10), rows_per_shard=300)  # replaced as a whole
    assert len(rewritten) == 10 and not (tmp_path / "train" / "images-00001.npy").exists()


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_workers_split_an_epoch_evenly_without_repeats(tmp_path, world_size):
    split = write_shards(tmp_path / "train", _numbered(1000), rows_per_shard=128)
    per_worker = [[row for batch in split.batches(32, rank, world_size, seed=0, epoch=0) for row in _rows(batch)]
                  for rank in range(world_size)]
    steps = [len(list(split.batches(32, rank, world_size, seed=0, epoch=0))) for rank in range(world_size)]
    assert len(set(steps)) == 1  # DDP: every worker takes the same number of steps
    assert all(len(rows) == 1000 // world_size for rows in per_worker)
    seen = [row for rows in per_worker for row in rows]
    assert len(seen) == len(set(seen))  # no row twice in one epoch


def test_the_order_is_fixed_by_seed_and_epoch(tmp_path):
    split = write_shards(tmp_path / "train", _numbered(500), rows_per_shard=100)

    def order(seed, epoch):
        return [row for batch in split.batches(50, 0, 1, seed, epoch) for row in _rows(batch)]

    assert order(0, 3) == order(0, 3)  # a resumed epoch sees the same batches
    assert order(0, 3) != order(0, 4) and order(0, 3) != order(1, 3)
    assert sorted(order(0, 3)) == list(range(500))


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_each_worker_reads_only_the_rows_it_trains_on(tmp_path, world_size):
    """The bytes a worker reads are exactly its rows' bytes: together the workers read the split once per epoch
    (not once each), whatever the shard and chunk boundaries."""
    split = write_shards(tmp_path / "train", _numbered(1000), rows_per_shard=300)  # 4 bytes per image
    for rank in range(world_size):
        read = ReadCount()
        rows = [row for batch in split.batches(32, rank, world_size, seed=0, epoch=0, read=read) for row in _rows(batch)]
        assert len(rows) == 1000 // world_size and read.bytes == 4 * len(rows)


def test_a_missing_split_is_named(tmp_path):
    with pytest.raises(DataError, match=r"train/index.json: not found; run `genp prepare`"):
        len(ShardedSplit(str(tmp_path / "train")))


def test_head_reads_only_the_shards_it_needs(tmp_path):
    split = write_shards(tmp_path / "val", _numbered(1000), rows_per_shard=300)
    assert _rows(split.head(450).images) == list(range(450))
    assert len(split.head(5000)) == 1000
