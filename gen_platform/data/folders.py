"""A user's image folder → one array dataset, in either layout people already have:

- one subfolder per class (the torchvision / Hugging Face `imagefolder` convention): `folder/<class>/<image>`;
- `folder/labels.csv` with columns `file,label`, where `label` is a class *name* and `file` a path inside the
  folder.

Class names map to labels 0..K-1 in sorted order (numerically when every name is an integer, so `0..9` stay
`0..9`); the mapping is returned so that it can be saved beside the data. Images decode in parallel threads
(PIL releases the GIL while decoding). Every image must decode completely and, without `size`, all must share
one square size; with `size` each is centre-cropped to a square and resized. Any problem raises `DataError`
naming the file, before anything is written.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen_platform.data.arrays import ImageArrays
from gen_platform.errors import DataError
from gen_platform.progress import progress

LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class FolderDataset:
    arrays: ImageArrays
    classes: list[str]  # label i is the class named classes[i]


def _sorted_classes(names: set[str]) -> list[str]:
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")  # .DS_Store, editor and sync files are not part of a dataset


def class_folder_entries(folder: Path) -> list[tuple[Path, str]]:
    """(image path, class name) for every file in every class subfolder."""
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))
    if not class_dirs:
        raise DataError(f"{folder}: neither {LABELS_FILE} nor class subfolders found; use folder/<class>/<image> "
                        f"or a {LABELS_FILE} with columns file,label")
    entries = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and _visible(p))
        if not files:
            raise DataError(f"{class_dir}: class {class_dir.name!r} holds no images")
        entries += [(path, class_dir.name) for path in files]
    return entries


def labels_csv_entries(folder: Path) -> list[tuple[Path, str]]:
    """(image path, class name) for every row of folder/labels.csv; paths must stay inside the folder."""
    index, root = folder / LABELS_FILE, folder.resolve()
    with index.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise DataError(f"{index}: header is {reader.fieldnames}; expected columns file,label")
        rows = list(reader)
    entries = []
    for line, row in enumerate(rows, start=2):
        name, label = (row["file"] or "").strip(), (row["label"] or "").strip()
        if not name or not label:
            raise DataError(f"{index}:{line}: empty file or label")
        path = (folder / name).resolve()
        if not path.is_relative_to(root):
            raise DataError(f"{index}:{line}: {name!r} leaves the folder {folder}; paths must stay inside it")
        if not path.is_file():
            raise DataError(f"{index}:{line}: {name!r} does not exist")
        entries.append((path, label))
    if not entries:
        raise DataError(f"{index}: lists no images")
    return entries


def _decode(path: Path, channels: int, size: int | None) -> np.ndarray:
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


def read_image_folder(folder: str | Path, channels: int = 1, size: int | None = None,
                      workers: int | None = None) -> FolderDataset:
    """Every image of `folder` (either layout) as uint8 N×H×W×C with integer labels and the class names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    entries = labels_csv_entries(folder) if (folder / LABELS_FILE).exists() else class_folder_entries(folder)
    classes = _sorted_classes({name for _, name in entries})
    label_of = {name: label for label, name in enumerate(classes)}
    workers = workers or min(8, os.cpu_count() or 1)
    images = []
    with ThreadPoolExecutor(workers) as pool:
        decoded = pool.map(lambda entry: _decode(entry[0], channels, size), entries)
        for (path, _), array in progress(zip(entries, decoded), len(entries), f"decoding {folder}"):
            if array.shape[0] != array.shape[1]:
                raise DataError(f"{path}: {array.shape[1]}×{array.shape[0]} is not square; pass --size to "
                                "centre-crop and resize every image")
            if images and array.shape != images[0].shape:
                raise DataError(f"{path}: size {array.shape[1]}×{array.shape[0]} differs from the first image's "
                                f"{images[0].shape[1]}×{images[0].shape[0]} ({entries[0][0]}); pass --size to "
                                "resize every image")
            images.append(array)
    labels = np.asarray([label_of[name] for _, name in entries], dtype=np.int64)
    return FolderDataset(ImageArrays(np.stack(images), labels), classes)
