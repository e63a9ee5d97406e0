"""A user's image folder → one array dataset, in either layout people already have:

- one subfolder per class (the torchvision / Hugging Face `imagefolder` convention): `folder/<class>/<image>`;
- `folder/labels.csv` with columns `file,label`, where `label` is a class *name* and `file` a path inside the
  folder.

Class names map to labels 0..K-1 in sorted order (numerically when every name is an integer, so `0..9` stay
`0..9`); the mapping is returned so that it can be saved beside the data. Images decode in parallel threads
(PIL releases the GIL while decoding), a chunk of them at a time, so a folder of any size streams through a
bounded amount of memory. Every image must decode completely and, without `size`, all must share one square size;
with `size` each is centre-cropped to a square and resized. Any problem raises `DataError` naming the file.
"""

from __future__ import annotations

import array
import csv
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from gen_platform.data.arrays import CHUNK_BYTES
from gen_platform.errors import DataError
from gen_platform.progress import progress

LABELS_FILE = "labels.csv"


def _sorted_classes(names: set[str]) -> list[str]:
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _visible(name: str) -> bool:
    return not name.startswith(".")  # .DS_Store, editor and sync files are not part of a dataset


def class_folder_entries(folder: Path) -> Iterator[tuple[str, str]]:
    """(image path, class name) for every file in every class subfolder."""
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p.name))
    if not class_dirs:
        raise DataError(f"{folder}: neither {LABELS_FILE} nor class subfolders found; use folder/<class>/<image> "
                        f"or a {LABELS_FILE} with columns file,label")
    for class_dir in class_dirs:
        found = False
        for path in _files_under(str(class_dir)):
            found = True
            yield path, class_dir.name
        if not found:
            raise DataError(f"{class_dir}: class {class_dir.name!r} holds no images")


def _files_under(directory: str) -> Iterator[str]:
    """The visible files at any depth under `directory` in the order of `sorted(Path(directory).rglob("*"))` (a
    folder's files come where its name sorts; symlinked folders are not entered), holding one folder's listing at a
    time instead of a Path for every file."""
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: os.path.normcase(entry.name))
    except PermissionError:
        return
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            yield from _files_under(entry.path)
        elif entry.is_file() and _visible(entry.name):
            yield entry.path


def labels_csv_entries(folder: Path) -> Iterator[tuple[str, str]]:
    """(image path, class name) for every row of folder/labels.csv; paths must stay inside the folder."""
    index, root = folder / LABELS_FILE, folder.resolve()
    with index.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise DataError(f"{index}: header is {reader.fieldnames}; expected columns file,label")
        line = 1  # the header's: no row read yet
        for line, row in enumerate(reader, start=2):
            name, label = (row["file"] or "").strip(), (row["label"] or "").strip()
            if not name or not label:
                raise DataError(f"{index}:{line}: empty file or label")
            path = (folder / name).resolve()
            if not path.is_relative_to(root):
                raise DataError(f"{index}:{line}: {name!r} leaves the folder {folder}; paths must stay inside it")
            if not path.is_file():
                raise DataError(f"{index}:{line}: {name!r} does not exist")
            yield str(path), label
    if line == 1:
        raise DataError(f"{index}: lists no images")


def _decode(path: str, channels: int, size: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # a truncated file fails here, not silently later
            image = image.convert("L" if channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None
    if size is not None:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _checked(path: str, image: np.ndarray, first_path: str, first: np.ndarray) -> np.ndarray:
    if image.shape[0] != image.shape[1]:
        raise DataError(f"{path}: {image.shape[1]}×{image.shape[0]} is not square; pass --size to "
                        "centre-crop and resize every image")
    if image.shape != first.shape:
        raise DataError(f"{path}: size {image.shape[1]}×{image.shape[0]} differs from the first image's "
                        f"{first.shape[1]}×{first.shape[0]} ({first_path}); pass --size to resize every image")
    return image


class PackedPaths:
    """File paths end to end in one buffer, with where each ends, rather than a string object each: the strings a
    scan keeps would pin the memory of the many objects it made and dropped beside them (they share Python's small
    object pools), several times their own size for a folder of 200,000 images."""

    def __init__(self) -> None:
        self._data, self._ends = bytearray(), array.array("q")

    def append(self, path: str) -> None:
        self._data += os.fsencode(path)
        self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str:
        return os.fsdecode(bytes(self._data[self._ends[index - 1] if index else 0:self._ends[index]]))

    def between(self, start: int, stop: int) -> list[str]:
        return [self[index] for index in range(start, min(stop, len(self)))]


@dataclass(frozen=True)
class ImageFolder:
    """A folder's images (either layout), listed and labelled; `chunks` decodes them. An image costs its path's
    bytes and a label here, so that a folder of any size lists in little memory."""

    path: Path
    files: PackedPaths  # every image file, in the order the images are stored
    labels: np.ndarray  # int64, one per file
    classes: list[str]  # label i is the class named classes[i]

    @classmethod
    def scan(cls, folder: str | Path) -> ImageFolder:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder")
        entries = labels_csv_entries(folder) if (folder / LABELS_FILE).exists() else class_folder_entries(folder)
        files, names, one_string = PackedPaths(), [], {}
        for path, name in entries:
            files.append(path)
            names.append(one_string.setdefault(name, name))  # one string per class, not one per image
        classes = _sorted_classes(set(one_string))
        label_of = {name: label for label, name in enumerate(classes)}
        return cls(folder, files, np.fromiter((label_of[name] for name in names), np.int64, len(names)), classes)

    def __len__(self) -> int:
        return len(self.files)

    def chunks(self, channels: int = 1, size: int | None = None, chunk_bytes: int = CHUNK_BYTES,
               workers: int | None = None) -> Iterator[np.ndarray]:
        """Every image as uint8 rows×H×W×C, in order, as many at a time as fit in `chunk_bytes` (at least one)."""
        decode = partial(_decode, channels=channels, size=size)
        first_path = self.files[0]
        first = decode(first_path)  # its size sets the chunk's rows (and is checked with the others, in order)
        rows = max(1, chunk_bytes // first.nbytes)
        with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
            decoded = progress(self._decoded(pool, decode, rows), len(self), f"decoding {self.path}")
            chunk, filled = np.empty((rows, *first.shape), np.uint8), 0
            for path, image in decoded:
                chunk[filled] = _checked(path, image, first_path, first)  # copied: the decoded image is freed now
                filled += 1
                if filled == rows:
                    yield chunk
                    chunk, filled = np.empty_like(chunk), 0
            if filled:
                yield chunk[:filled]

    def _decoded(self, pool: ThreadPoolExecutor, decode: Callable[[str], np.ndarray], rows: int
                 ) -> Iterator[tuple[str, np.ndarray]]:
        """(path, image) in order. The next chunk decodes while this one is consumed, and no further: memory
        holds two chunks' images, however many the folder has."""
        pending: deque = deque()
        for start in range(0, len(self.files), rows):
            paths = self.files.between(start, start + rows)
            pending.append(zip(paths, pool.map(decode, paths)))
            if len(pending) == 2:
                yield from pending.popleft()
        yield from pending.popleft()
