import numpy as np
import pytest

from gen_platform.data.arrays import ImageArrays, load_npz, open_npz, to_tensor, write_npz
from gen_platform.data.sources import builtin
from gen_platform.data.splits import split_dataset
from gen_platform.errors import DataError
from tests.conftest import tiny_dataset


def test_digits_is_the_real_dataset(digits):
    assert digits.images.shape == (1797, 8, 8, 1) and digits.images.dtype == np.uint8
    assert digits.images.max() == 255 and set(np.unique(digits.labels)) == set(range(10))


def test_npz_round_trip_is_byte_deterministic(tmp_path, digits):
    first, second = write_npz(tmp_path / "a.npz", digits), write_npz(tmp_path / "b.npz", digits)
    assert first.read_bytes() == second.read_bytes()
    loaded = load_npz(first)
    assert np.array_equal(loaded.images, digits.images) and loaded.labels.dtype == np.int64


@pytest.mark.parametrize("read", [load_npz, open_npz])
def test_truncated_file_is_reported_with_its_path(tmp_path, digits, read):
    path = write_npz(tmp_path / "digits.npz", digits)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"digits\.npz: cannot read the npz file"):
        read(path)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(4, np.int64)}, "expected 4 dimensions"),
    ({"images": np.zeros((4, 8, 8, 1), np.uint8), "labels": np.zeros(3, np.int64)}, "one label per image"),
    ({"images": np.zeros((4, 8, 8, 1), np.uint8)}, r"missing array\(s\) \['labels'\]"),
    ({"images": np.zeros((4, 8, 8, 1), np.uint8), "labels": np.zeros(4, np.float32)}, "expected integers"),
    ({"images": np.zeros((4, 8, 8, 1), np.uint8), "labels": np.zeros(4, np.int64), "split": np.full(4, 2, np.uint8)},
     "'split' must hold one 0"),
])
@pytest.mark.parametrize("read", [load_npz, open_npz])
def test_structural_problems_are_named(tmp_path, arrays, message, read):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        read(path)


@pytest.mark.parametrize("read", [load_npz, open_npz])
def test_missing_file_says_how_to_get_it(tmp_path, read):
    with pytest.raises(DataError, match="genp data import digits"):
        read(tmp_path / "nope.npz")


def test_unknown_builtin():
    with pytest.raises(DataError, match="known: \\[.digits., .fashion-mnist., .photo-crops.\\]"):
        builtin("cifar")


def test_split_is_deterministic_disjoint_and_complete():
    data = tiny_dataset(1000)
    first, second = split_dataset(data, 7, 0.1, 0.2), split_dataset(data, 7, 0.1, 0.2)
    assert {k: len(v) for k, v in first.items()} == {"train": 700, "val": 100, "test": 200}
    for name in first:
        assert np.array_equal(first[name].images, second[name].images)
    hashes = [{img.tobytes() for img in part.images} for part in first.values()]
    assert sum(map(len, hashes)) == len(set().union(*hashes)) == 1000
    other = split_dataset(data, 8, 0.1, 0.2)
    assert not np.array_equal(other["val"].images, first["val"].images)


def test_split_of_empty_dataset():
    empty = ImageArrays(np.zeros((0, 8, 8, 1), np.uint8), np.zeros(0, np.int64))
    assert all(len(part) == 0 for part in split_dataset(empty, 0, 0.1, 0.1).values())


def test_to_tensor_layout_and_range():
    tensor = to_tensor(np.full((2, 8, 8, 3), 255, np.uint8))
    assert tensor.shape == (2, 3, 8, 8) and float(tensor.max()) == 1.0


def test_photo_crops_are_distinct_rgb_crops_in_four_classes():
    crops = builtin("photo-crops")
    assert crops.images.shape == (20_000, 64, 64, 3) and crops.images.dtype == np.uint8
    assert set(np.unique(crops.labels)) == {0, 1, 2, 3}
    assert len({image.tobytes() for image in crops.images[:2000]}) == 2000
