"""Great Expectations keeps every validation of a workspace in its project context, browsable as Data Docs;
failed validations included."""

from __future__ import annotations

import numpy as np

from gen_platform.data.arrays import ImageArrays
from gen_platform.data.splits import split_dataset
from gen_platform.settings import DataParams, ValidationParams
from gen_platform.validation.suite import data_docs_index, validate_splits


def test_each_validation_is_stored_and_the_data_docs_list_them(digits, tmp_path):
    def validate(arrays):
        return validate_splits(split_dataset(arrays, 0, 0.1, 0.1), DataParams(), ValidationParams(),
                               project_root=tmp_path)

    assert validate(digits).success
    images = digits.images.astype(np.float32)
    images[3, 0, 0, 0] = np.nan
    assert not validate(ImageArrays(images, digits.labels)).success
    stored = sorted((tmp_path / "gx" / "uncommitted" / "validations" / "images_suite").rglob("*.json"))
    assert len(stored) == 2  # the passing and the failing validation, both kept
    index = data_docs_index(tmp_path).read_text()
    assert "images_suite" in index and "classes_suite" in index
