"""The one on-disk form of a dataset: an npz with `images` (N×H×W×C) and `labels` (N)."""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gen_platform.errors import DataError

# A fixed timestamp inside the zip makes the same arrays give the same bytes, so DVC sees the same md5.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


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


def write_npz(path: str | Path, arrays: ImageArrays) -> Path:
    """Write deterministically and atomically (a reader never sees a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        named = {"images": arrays.images, "labels": arrays.labels}
        if arrays.split is not None:
            named["split"] = arrays.split
        for name, array in named.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE), buffer.getvalue(),
                             compress_type=zipfile.ZIP_DEFLATED)
    os.replace(tmp, path)
    return path


def load_npz(path: str | Path) -> ImageArrays:
    """Load and check the structure; pixel-level problems are left to the validation suite."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (import a dataset with `genp data import digits`, or `dvc pull`)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"images", "labels"} - set(archive.files)
            if missing:
                raise DataError(f"{path}: missing array(s) {sorted(missing)}; expected 'images' and 'labels'")
            images, labels = archive["images"], archive["labels"]
            split = archive["split"] if "split" in archive.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: cannot read the npz file (truncated or not an npz?): {error}") from None
    if images.ndim != 4:
        raise DataError(f"{path}: 'images' has shape {images.shape}; expected 4 dimensions N×H×W×C")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{path}: 'labels' has shape {labels.shape}; expected ({len(images)},), one label per image")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'labels' has dtype {labels.dtype}; expected integers")
    if split is not None and (split.shape != labels.shape or not np.isin(split, (0, TEST_ROW)).all()):
        raise DataError(f"{path}: 'split' must hold one 0 (train) or 1 (test) per image")
    return ImageArrays(images, labels.astype(np.int64), split)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W×C → float N×C×H×W in [0, 1], the form every model consumes."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
