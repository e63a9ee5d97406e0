"""The one on-disk form of a dataset: an npz with `images` (N×H×W×C) and `labels` (N).

Import and prepare stream it, CHUNK_BYTES of images at a time (`npz_writer` to write, `open_npz` to read), so that
their memory is bounded by the chunk and not by the dataset; `load_npz` reads a whole dataset, for the small uses."""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import torch

from gen_platform.errors import DataError

# A fixed timestamp inside the zip makes the same arrays give the same bytes, so DVC sees the same md5.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)
CHUNK_BYTES = 8 << 20  # of images at once when a dataset streams; 32 MiB chunks were no faster and held 3× more
_READ_PIECE = 1 << 20  # decompressed bytes per read of a zip member
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


TEST_ROW = 1  # value of the optional `split` array for rows of a dataset's own test split


@dataclass(frozen=True)
class ImageArrays:
    images: np.ndarray  # N×H×W×C; uint8 expected, other dtypes are kept so validation can name them
    labels: np.ndarray  # N, int64
    split: np.ndarray | None = None  # N, uint8: 0 train, 1 test, when the dataset ships its own split

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ImageArrays:
        return ImageArrays(self.images[index], self.labels[index], None if self.split is None else self.split[index])


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The header `np.save` writes for a C-order array of `dtype` and `shape`."""
    fields = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": tuple(int(n) for n in shape)}
    header = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(header, fields)
    except ValueError:  # over 64 kB: np.save moves to version 2.0 as well
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, fields)
    return header.getvalue()


class NpyRows:
    """One `.npy` array of a known dtype and shape written to `stream` in chunks of rows, in order: the same
    bytes as `np.save` of the whole array, without ever holding it."""

    def __init__(self, stream: BinaryIO, dtype: np.dtype | type, shape: tuple[int, ...]):
        self.dtype, self.shape = np.dtype(dtype), tuple(int(n) for n in shape)
        self._stream, self._written = stream, 0
        stream.write(_npy_header(self.dtype, self.shape))

    @staticmethod
    def size(dtype: np.dtype | type, shape: tuple[int, ...]) -> int:
        """Bytes of the whole `.npy` file, header included."""
        return len(_npy_header(np.dtype(dtype), shape)) + np.dtype(dtype).itemsize * math.prod(shape)

    def write(self, rows: np.ndarray) -> None:
        if rows.dtype != self.dtype or rows.shape[1:] != self.shape[1:] or self._written + len(rows) > self.shape[0]:
            raise ValueError(f"rows {rows.dtype} {rows.shape} do not continue an array {self.dtype} {self.shape} "
                             f"after its first {self._written} rows")
        if rows.size:  # a memoryview of no bytes cannot be cast
            self._stream.write(memoryview(np.ascontiguousarray(rows)).cast("B"))
        self._written += len(rows)

    def finish(self) -> None:
        if self._written != self.shape[0]:
            raise ValueError(f"an array of {self.shape[0]} rows was given {self._written}")


class NpzWriter:
    """An npz being written member by member (see `npz_writer`)."""

    def __init__(self, archive: zipfile.ZipFile):
        self._archive = archive

    @contextmanager
    def member(self, name: str, dtype: np.dtype | type, shape: tuple[int, ...]) -> Iterator[NpyRows]:
        """Member `<name>.npy`: the caller writes its rows, in order, through the `NpyRows` yielded."""
        info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        # The size known up front, as ZipFile.writestr knows it, makes the same zip64 choice: the same bytes as a
        # member written whole. zlib's output does not depend on how its input is cut into chunks.
        info.file_size = NpyRows.size(dtype, shape)
        with self._archive.open(info, "w") as stream:
            rows = NpyRows(stream, dtype, shape)
            yield rows
            rows.finish()

    def array(self, name: str, array: np.ndarray) -> None:
        with self.member(name, array.dtype, array.shape) as rows:
            rows.write(array)


@contextmanager
def npz_writer(path: str | Path) -> Iterator[NpzWriter]:
    """Write an npz deterministically and atomically: into `<path>.tmp`, moved over `path` only when the block
    completes, so a reader never sees a half-written file. On an error the partial file and any folder made for it
    are removed: `path` and the workspace are left as they were."""
    path = Path(path)
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            yield NpzWriter(archive)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for folder in made:
            if any(folder.iterdir()):
                break
            folder.rmdir()
        raise
    os.replace(tmp, path)


def write_npz(path: str | Path, arrays: ImageArrays) -> Path:
    """Write deterministically and atomically (see `npz_writer`)."""
    with npz_writer(path) as npz:
        npz.array("images", arrays.images)
        npz.array("labels", arrays.labels)
        if arrays.split is not None:
            npz.array("split", arrays.split)
    return Path(path)


def read_npy_header(stream: BinaryIO, where: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of a `.npy` stream, left at the first row."""
    read_header = (np.lib.format.read_array_header_1_0 if np.lib.format.read_magic(stream) == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran_order, dtype = read_header(stream)
    if fortran_order or dtype.hasobject:
        raise DataError(f"{where}: stored in Fortran order or as Python objects; expected a C-order array of numbers "
                        "(write it again with `genp data import` or `genp prepare`)")
    return shape, dtype


@dataclass(frozen=True)
class NpzImages:
    """An npz opened for streaming: labels (and split) in memory, the images read a chunk of rows at a time."""

    path: Path
    shape: tuple[int, ...]  # of the images, N×H×W×C
    dtype: np.dtype  # of the images
    labels: np.ndarray  # N, int64
    split: np.ndarray | None

    def __len__(self) -> int:
        return len(self.labels)

    def chunks(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[np.ndarray]:
        """The images in order, as many rows at a time as fit in `chunk_bytes` (at least one)."""
        rows = max(1, chunk_bytes // max(self.dtype.itemsize * math.prod(self.shape[1:]), 1))
        with _read_errors(self.path), zipfile.ZipFile(self.path) as archive, archive.open("images.npy") as member:
            read_npy_header(member, self.path)
            for start in range(0, self.shape[0], rows):
                chunk = np.empty((min(rows, self.shape[0] - start), *self.shape[1:]), self.dtype)
                if _read_into(member, chunk) < chunk.nbytes:
                    raise DataError(f"{self.path}: 'images' ends before row {start + len(chunk)}; the file is "
                                    "truncated")
                yield chunk


def _read_into(stream: BinaryIO, array: np.ndarray) -> int:
    """Fill `array` from `stream`; the bytes read. A piece at a time: a zip member's read(n) holds n bytes of
    compressed input, n decompressed and their concatenation at once."""
    view, filled = memoryview(array).cast("B"), 0
    while filled < len(view):
        piece = stream.read(min(_READ_PIECE, len(view) - filled))
        if not piece:
            break
        view[filled:filled + len(piece)] = piece
        filled += len(piece)
    return filled


@contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except _READ_ERRORS as error:
        raise DataError(f"{path}: cannot read the npz file (truncated or not an npz?): {error}") from None


def _require(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found (import a dataset with `genp data import digits`, or `dvc pull`)")


def _require_members(path: Path, names: set[str]) -> None:
    missing = {"images", "labels"} - names
    if missing:
        raise DataError(f"{path}: missing array(s) {sorted(missing)}; expected 'images' and 'labels'")


def _checked(path: Path, shape: tuple[int, ...], labels: np.ndarray,
             split: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The labels (as int64) and split of a dataset whose structure is sound; pixel-level problems are left to the
    validation suite."""
    if len(shape) != 4:
        raise DataError(f"{path}: 'images' has shape {shape}; expected 4 dimensions N×H×W×C")
    if labels.ndim != 1 or len(labels) != shape[0]:
        raise DataError(f"{path}: 'labels' has shape {labels.shape}; expected ({shape[0]},), one label per image")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'labels' has dtype {labels.dtype}; expected integers")
    if split is not None and (split.shape != labels.shape or not np.isin(split, (0, TEST_ROW)).all()):
        raise DataError(f"{path}: 'split' must hold one 0 (train) or 1 (test) per image")
    return labels.astype(np.int64), split


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(f"{name}.npy") as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def open_npz(path: str | Path) -> NpzImages:
    """Check the structure as `load_npz` does, reading only the labels, the split and the images' header."""
    path = Path(path)
    _require(path)
    with _read_errors(path), zipfile.ZipFile(path) as archive:
        names = {name.removesuffix(".npy") for name in archive.namelist()}
        _require_members(path, names)
        with archive.open("images.npy") as member:
            shape, dtype = read_npy_header(member, path)
        labels = _read_member(archive, "labels")
        split = _read_member(archive, "split") if "split" in names else None
    return NpzImages(path, shape, dtype, *_checked(path, shape, labels, split))


def load_npz(path: str | Path) -> ImageArrays:
    """The whole dataset in memory, its structure checked (`open_npz` streams it instead)."""
    path = Path(path)
    _require(path)
    with _read_errors(path), np.load(path, allow_pickle=False) as archive:
        _require_members(path, set(archive.files))
        images, labels = archive["images"], archive["labels"]
        split = archive["split"] if "split" in archive.files else None
    return ImageArrays(images, *_checked(path, images.shape, labels, split))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W×C → float N×C×H×W in [0, 1], the form every model consumes."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
