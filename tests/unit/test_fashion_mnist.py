import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from gen_platform.data.arrays import load_npz, write_npz
from gen_platform.data.sources import FMNIST_DEFAULT_DIR, FMNIST_FILES, fashion_mnist
from gen_platform.data.splits import split_dataset
from gen_platform.errors import DataError


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def tiny_fmnist(tmp_path):
    rng = np.random.default_rng(0)
    for part, count in (("train", 40), ("test", 10)):
        images_file, labels_file = FMNIST_FILES[part]
        _write_idx(tmp_path / images_file, rng.integers(0, 256, (count, 28, 28)), 2051)
        _write_idx(tmp_path / labels_file, np.arange(count) % 10, 2049)
    return tmp_path


def test_reads_idx_files_and_keeps_the_original_test_split(tiny_fmnist, tmp_path):
    arrays = fashion_mnist(tiny_fmnist)
    assert arrays.images.shape == (50, 28, 28, 1) and arrays.split.tolist() == [0] * 40 + [1] * 10
    round_trip = load_npz(write_npz(tmp_path / "f.npz", arrays))
    splits = split_dataset(round_trip, seed=0, val_fraction=0.25, test_fraction=0.1)
    assert {k: len(v) for k, v in splits.items()} == {"train": 30, "val": 10, "test": 10}
    assert np.array_equal(splits["test"].images, arrays.images[40:])


def test_directory_from_environment(tiny_fmnist, monkeypatch):
    monkeypatch.setenv("FMNIST_DIR", str(tiny_fmnist))
    assert len(fashion_mnist()) == 50


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*FMNIST_DIR"):
        fashion_mnist(tmp_path)


def test_truncated_idx_file_is_named(tiny_fmnist):
    path = tiny_fmnist / FMNIST_FILES["train"][0]
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    with gzip.open(path, "wb") as handle:
        handle.write(raw[:1000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: truncated"):
        fashion_mnist(tiny_fmnist)


@pytest.mark.skipif(not os.environ.get("CI") and not Path(FMNIST_DEFAULT_DIR).exists(),
                    reason="Debian package dataset-fashion-mnist not installed (make setup installs it; CI requires it)")
def test_the_debian_package_is_the_real_dataset():
    arrays = fashion_mnist()
    train = arrays.images[arrays.split == 0]
    assert arrays.images.shape == (70000, 28, 28, 1) and len(train) == 60000
    assert train.mean() == pytest.approx(72.94, abs=0.01)  # the published training-pixel mean
    assert np.bincount(arrays.labels).tolist() == [7000] * 10
