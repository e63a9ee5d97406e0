"""Ways to get a dataset into data/raw: built-in datasets that ship inside packages, or a user's folder."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from gen_platform.data.arrays import ImageArrays
from gen_platform.errors import DataError


def digits() -> ImageArrays:
    """scikit-learn's 1,797 8×8 digits (values 0–16), rescaled to uint8 0–255; ships in the sklearn wheel."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return ImageArrays(images, bunch.target.astype(np.int64))


BUILTIN_DATASETS = {"digits": digits}


def builtin(name: str) -> ImageArrays:
    try:
        return BUILTIN_DATASETS[name]()
    except KeyError:
        raise DataError(f"unknown built-in dataset {name!r}; known: {sorted(BUILTIN_DATASETS)}") from None


def image_folder(folder: str | Path, grayscale: bool = True) -> ImageArrays:
    """Read `folder/labels.csv` (columns `file,label`) and the image files it names, all of one size."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    index = folder / "labels.csv"
    if not index.exists():
        raise DataError(f"{index}: not found; an image folder needs labels.csv with columns file,label")
    with index.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise DataError(f"{index}: header is {reader.fieldnames}; expected columns file,label")
        rows = list(reader)
    images, labels = [], []
    for line, row in enumerate(rows, start=2):
        path = folder / row["file"]
        try:
            label = int(row["label"])
        except ValueError:
            raise DataError(f"{index}:{line}: label {row['label']!r} is not an integer") from None
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("L" if grayscale else "RGB"))
        except (OSError, UnidentifiedImageError) as error:
            raise DataError(f"{path}: cannot read image ({error})") from None
        array = array[..., None] if array.ndim == 2 else array
        if images and array.shape != images[0].shape:
            raise DataError(f"{path}: size {array.shape} differs from the first image's {images[0].shape}")
        images.append(array)
        labels.append(label)
    if not images:
        raise DataError(f"{index}: lists no images")
    return ImageArrays(np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int64))
