import numpy as np
import pytest

from gen_platform.settings import DataParams, ValidationParams
from gen_platform.data.arrays import ImageArrays
from gen_platform.data.splits import split_dataset
from gen_platform.validation.suite import validate_splits


def _check(arrays: ImageArrays, **rules):
    return validate_splits(split_dataset(arrays, 0, 0.1, 0.1), DataParams(), ValidationParams(**rules))


def _failed(report) -> dict[str, str]:
    return {f"{o.expectation}:{o.kwargs.get('column', '')}": o.observed for o in report.failures}


def test_digits_pass(digits):
    report = _check(digits)
    assert report.success and report.rows == 1797 and len(report.outcomes) == 11


def test_nan_and_out_of_range_pixels_are_named(digits):
    images = digits.images.astype(np.float32)
    images[3, 0, 0, 0] = np.nan
    images[5, 1, 1, 0] = 300.0
    report = _check(ImageArrays(images, digits.labels))
    failed = _failed(report)
    assert not report.success
    assert set(failed) == {"expect_column_values_to_be_between:nan_count",
                           "expect_column_values_to_be_between:pixel_max",
                           "expect_column_values_to_be_in_set:dtype"}
    assert "300.0" in failed["expect_column_values_to_be_between:pixel_max"]
    assert "nan_count" in report.summary() and "pixel_max" in report.summary()


def test_wrong_image_shape(digits):
    report = _check(ImageArrays(digits.images[:, :6, :6], digits.labels))
    assert set(_failed(report)) == {"expect_column_values_to_be_in_set:height",
                                    "expect_column_values_to_be_in_set:width"}
    assert "[6]" in report.summary()


def test_empty_dataset(digits):
    report = _check(ImageArrays(digits.images[:0], digits.labels[:0]))
    assert set(_failed(report)) == {"expect_table_row_count_to_be_between:"}
    assert "observed 0" in report.summary()


def test_labels_outside_the_set(digits):
    labels = digits.labels.copy()
    labels[:40] = 12
    report = _check(ImageArrays(digits.images, labels))
    assert "expect_column_values_to_be_in_set:label" in _failed(report)
    assert "[12]" in _failed(report)["expect_column_values_to_be_in_set:label"]


def test_duplicates_and_class_imbalance(digits):
    images, labels = digits.images.copy(), digits.labels.copy()
    images[:100] = images[0]
    labels[:1200] = 0
    failed = _failed(_check(ImageArrays(images, labels)))
    assert set(failed) == {"expect_column_values_to_be_unique:sha1", "expect_column_values_to_be_between:fraction"}


@pytest.mark.parametrize("rows", [50])
def test_row_count_bound_is_configurable(digits, rows):
    assert not _check(ImageArrays(digits.images[:rows], digits.labels[:rows]), min_rows=100).success
    assert _check(ImageArrays(digits.images[:rows], digits.labels[:rows]), min_rows=10, min_class_fraction=0.0).success
