"""A prepared split on disk as fixed-size `.npy` shards, read in ranges of rows.

Layout of a split directory: `index.json` (rows, image shape, the shard files) and `images-00000.npy`,
`labels-00000.npy`, ... of at most `rows_per_shard` rows each. Training workers stream their share of the
rows from these files instead of receiving the whole split in their config: a worker reads only the rows it trains
on and holds one shuffle window and one batch at a time, so its memory does not grow with the dataset, and the
same code serves one worker, DDP on one node and workers on several nodes (the directory must then be on storage
every node mounts, like `train.storage_path`).

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
from types import TracebackType
from typing import BinaryIO, Iterator

import numpy as np

from gen_platform.data.arrays import ImageArrays, NpyRows, read_npy_header
from gen_platform.errors import DataError

INDEX = "index.json"
ROWS_PER_SHARD = 8192  # 100 MB of 64×64 RGB images
CHUNK_ROWS = 64  # rows a worker reads at once (768 kB of 64×64 RGB images): the grain of the epoch's order
SHUFFLE_ROWS = 4096  # rows a worker shuffles together


@dataclass
class ReadCount:
    """Bytes read from a split's files (what the data path costs the shared volume)."""

    bytes: int = 0


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

    def _image_rows(self, number: int, start: int, stop: int, read: ReadCount | None = None) -> np.ndarray:
        """Rows [start, stop) of shard `number`'s images, reading only their bytes."""
        path = Path(self.directory) / self._index["shards"][number]["images"]
        with open(path, "rb") as file:
            shape, dtype = read_npy_header(file, path)
            row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
            file.seek(start * row_bytes, os.SEEK_CUR)
            data = file.read((stop - start) * row_bytes)
        if read is not None:
            read.bytes += len(data)
        return np.frombuffer(data, dtype).reshape(stop - start, *shape[1:])

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

    def batches(self, batch_size: int, rank: int, world_size: int, seed: int, epoch: int,
                read: ReadCount | None = None) -> Iterator[np.ndarray]:
        """This worker's images (uint8 N×H×W×C) for one epoch, `batch_size` at a time (the last batch may be
        smaller); `read` counts the bytes read from disk.

        Every shard is cut into chunks of CHUNK_ROWS contiguous rows, and the chunks of all shards come in an order
        fixed by (seed, epoch). Worker k takes rows [k·R, (k+1)·R) of that sequence, R = rows // world_size, so
        every worker takes the same number of steps (DDP needs that), no row comes twice in an epoch, and each
        worker reads only its own rows, about 1/world_size of the split, as contiguous byte ranges. A worker
        shuffles its rows in windows of SHUFFLE_ROWS rows: it holds a window and a batch, never a whole shard.
        """
        rng = np.random.default_rng([seed, epoch])
        chunks = [(number, start, min(start + CHUNK_ROWS, entry["rows"]))
                  for number, entry in enumerate(self._index["shards"]) for start in range(0, entry["rows"], CHUNK_ROWS)]
        per_worker = len(self) // world_size
        first, last = rank * per_worker, (rank + 1) * per_worker
        shuffle = np.random.default_rng([seed, epoch, rank])
        window: list[np.ndarray] = []
        position = 0
        for chunk in rng.permutation(len(chunks)):
            number, start, stop = chunks[chunk]
            lo, hi = max(first - position, 0), min(last - position, stop - start)
            position += stop - start
            if lo < hi:
                window.append(self._image_rows(number, start + lo, start + hi, read))
            if sum(len(part) for part in window) >= SHUFFLE_ROWS or (position >= last and window):
                rows = np.concatenate(window)
                rows = rows[shuffle.permutation(len(rows))]
                whole = len(rows) - len(rows) % batch_size if position < last else len(rows)
                for begin in range(0, whole, batch_size):
                    yield rows[begin:min(begin + batch_size, whole)]
                window = [rows[whole:]]
            if position >= last:
                return


class ShardWriter:
    """A split directory written a chunk of rows at a time, atomically: a reader sees the old split or the new one.
    Every shard's row count follows from `rows`, so each shard file is written as its rows arrive: memory holds the
    caller's chunk, never a shard. Use it as a context manager: the split replaces the old one when the block
    completes, and nothing replaces it on an error."""

    def __init__(self, directory: str | Path, rows: int, image_shape: tuple[int, ...], image_dtype: np.dtype,
                 label_dtype: np.dtype, rows_per_shard: int = ROWS_PER_SHARD):
        self.directory = Path(directory)
        self._staging = self.directory.with_name(self.directory.name + ".tmp")
        self._rows, self._image_shape = rows, tuple(int(n) for n in image_shape)
        self._dtypes = {"images": image_dtype, "labels": label_dtype}
        self._shard_rows = [min(rows_per_shard, rows - start) for start in range(0, max(rows, 1), rows_per_shard)]
        self._shards: list[dict] = []
        self._open: dict[str, tuple[BinaryIO, NpyRows]] = {}  # the shard being written, by kind
        self._room = 0  # rows left in it

    def __enter__(self) -> ShardWriter:
        shutil.rmtree(self._staging, ignore_errors=True)
        self._staging.mkdir(parents=True)
        return self

    def write(self, images: np.ndarray, labels: np.ndarray) -> None:
        """The next rows of the split, in order."""
        while len(images):
            if not self._room:
                self._next_shard()
            taken = min(self._room, len(images))
            self._open["images"][1].write(images[:taken])
            self._open["labels"][1].write(labels[:taken])
            images, labels, self._room = images[taken:], labels[taken:], self._room - taken

    def _next_shard(self) -> None:
        self._close_shard()
        number = len(self._shards)
        if number == len(self._shard_rows):
            raise ValueError(f"{self.directory}: more than the {self._rows} rows announced")
        entry = {"images": f"images-{number:05d}.npy", "labels": f"labels-{number:05d}.npy",
                 "rows": self._shard_rows[number]}
        shapes = {"images": (entry["rows"], *self._image_shape), "labels": (entry["rows"],)}
        for kind, shape in shapes.items():
            file = open(self._staging / entry[kind], "wb")
            self._open[kind] = (file, NpyRows(file, self._dtypes[kind], shape))
        self._shards.append(entry)
        self._room = entry["rows"]

    def _close_shard(self) -> None:
        for file, rows in self._open.values():
            with file:
                rows.finish()
        self._open = {}

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if kind is None:
                while len(self._shards) < len(self._shard_rows):  # an empty split still has its (empty) shard
                    self._next_shard()
                self._close_shard()
                self._commit()
        finally:
            for file, _ in self._open.values():
                file.close()
            shutil.rmtree(self._staging, ignore_errors=True)

    def _commit(self) -> None:
        index = {"rows": self._rows, "image_shape": list(self._image_shape), "shards": self._shards}
        (self._staging / INDEX).write_text(json.dumps(index, indent=1) + "\n")
        if self.directory.exists():
            old = self.directory.with_name(self.directory.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.directory, old)
            os.replace(self._staging, self.directory)
            shutil.rmtree(old)
        else:
            os.replace(self._staging, self.directory)


def write_shards(directory: str | Path, arrays: ImageArrays, rows_per_shard: int = ROWS_PER_SHARD) -> ShardedSplit:
    """Write `arrays` as a split directory, atomically: a reader sees the old split or the new one."""
    with ShardWriter(directory, len(arrays), arrays.images.shape[1:], arrays.images.dtype, arrays.labels.dtype,
                     rows_per_shard) as writer:
        writer.write(arrays.images, arrays.labels)
    return ShardedSplit(str(directory))
