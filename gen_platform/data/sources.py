"""Built-in datasets that ship inside packages (a user's own images: `gen_platform.data.folders`)."""

from __future__ import annotations

import gzip
import os
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


FMNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FMNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist puts them


def _read_idx(path: Path, magic: int, header: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read gzipped idx file: {error}") from None
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path}: not an idx file (magic number {magic} expected)")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range((header - 4) // 4)]
    data = np.frombuffer(raw, np.uint8, offset=header)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated, {data.size} values for a header of {dims}")
    return data.reshape(dims)


def fashion_mnist(directory: str | Path | None = None) -> ImageArrays:
    """Fashion-MNIST (70,000 28×28 images, MIT licence) from its original idx files, keeping its train/test
    split. Looks in FMNIST_DIR, else where Debian's `dataset-fashion-mnist` installs them."""
    folder = Path(directory or os.environ.get("FMNIST_DIR") or FMNIST_DEFAULT_DIR)
    missing = [name for pair in FMNIST_FILES.values() for name in pair if not (folder / name).exists()]
    if missing:
        raise DataError(f"{folder}: Fashion-MNIST files {missing} not found; install them with "
                        "`sudo apt-get install dataset-fashion-mnist` (make setup does this where apt exists) "
                        "or set FMNIST_DIR to a folder holding the four original .gz files")
    images, labels, split = [], [], []
    for index, (part, (image_file, label_file)) in enumerate(FMNIST_FILES.items()):
        part_images = _read_idx(folder / image_file, 2051, 16)
        part_labels = _read_idx(folder / label_file, 2049, 8)
        if len(part_images) != len(part_labels):
            raise DataError(f"{folder}: {part} has {len(part_images)} images but {len(part_labels)} labels")
        images.append(part_images[..., None])
        labels.append(part_labels.astype(np.int64))
        split.append(np.full(len(part_labels), index, np.uint8))
    return ImageArrays(np.concatenate(images), np.concatenate(labels), np.concatenate(split))


def photo_crops(count: int = 20_000, size: int = 64, seed: int = 0) -> ImageArrays:
    """`count` distinct size×size RGB crops of the two photographs that ship inside scikit-learn (china.jpg and
    flower.jpg, 427×640), labelled by photograph and half (top or bottom): 4 classes. Distinct crop
    positions, so no two images are identical; nothing is downloaded."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    height, width = photos[0].shape[:2]
    rows, columns = height - size + 1, width - size + 1
    if count > len(photos) * rows * columns:
        raise DataError(f"photo-crops: at most {len(photos) * rows * columns} distinct {size}×{size} crops")
    picks = np.random.default_rng(seed).choice(len(photos) * rows * columns, count, replace=False)
    photo, position = np.divmod(picks, rows * columns)
    top, left = np.divmod(position, columns)
    images = np.stack([photos[p][y:y + size, x:x + size] for p, y, x in zip(photo, top, left)])
    labels = photo * 2 + (top + size // 2 >= height // 2)
    return ImageArrays(images.astype(np.uint8), labels.astype(np.int64))


BUILTIN_DATASETS = {"digits": digits, "fashion-mnist": fashion_mnist, "photo-crops": photo_crops}
BUILTIN_CLASS_NAMES = {
    "digits": [str(digit) for digit in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "photo-crops": ["china top", "china bottom", "flower top", "flower bottom"],  # label = photograph * 2 + half
}


def builtin(name: str, count: int | None = None) -> ImageArrays:
    """A built-in dataset; `count` sizes the generated ones (photo-crops)."""
    if name not in BUILTIN_DATASETS:
        raise DataError(f"unknown built-in dataset {name!r}; known: {sorted(BUILTIN_DATASETS)}")
    if count is None:
        return BUILTIN_DATASETS[name]()
    if name != "photo-crops":
        raise DataError(f"--count: {name} has a fixed size; only photo-crops is generated to a size")
    return photo_crops(count)
