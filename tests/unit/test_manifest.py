"""A dataset describes itself: importing writes a manifest beside the npz, the pipeline's params take the image
size, channels and classes from it, and a params value that contradicts it is an error naming both."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from gen_platform import stages
from gen_platform.config import load_params, params_for
from gen_platform.data.arrays import ImageArrays, write_npz
from gen_platform.data.manifest import FACTS, DatasetManifest, content_hash
from gen_platform.errors import ConfigError
from gen_platform.workspace import Workspace
from tests.conftest import REPO


def _rgb64(root, name="photo-crops", count=12):
    images = np.random.default_rng(0).integers(0, 256, (count, 64, 64, 3), dtype=np.uint8)
    arrays = ImageArrays(images, np.arange(count) % 4)
    write_npz(root / "data" / "raw" / f"{name}.npz", arrays)
    return DatasetManifest.describe(name, arrays, ["a", "b", "c", "d"], "test").write(root)


def _params_file(root, data: dict):
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    return path


def test_importing_a_builtin_dataset_writes_its_manifest(tmp_path):
    manifest = stages.import_dataset("digits", Workspace.at(tmp_path))
    written = json.loads((tmp_path / "data" / "raw" / "digits.manifest.json").read_text())
    assert written == {"name": "digits", "image_size": 8, "channels": 1, "num_classes": 10,
                       "class_names": [str(d) for d in range(10)], "image_count": 1797, "source": "built-in: digits",
                       "content_sha256": manifest.content_sha256}
    assert DatasetManifest.read(tmp_path, "digits") == manifest


def test_the_params_take_the_dataset_facts_from_its_manifest(tmp_path):
    _rgb64(tmp_path)
    params = load_params(_params_file(tmp_path, {"dataset": "photo-crops"}))
    assert (params.data.image_size, params.data.channels, params.data.num_classes) == (64, 3, 4)


@pytest.mark.parametrize(("stated", "overrides", "fact"), [
    ({"image_size": 8}, {}, "image_size"),  # in the file
    ({}, {"data": {"channels": 1}}, "channels"),  # as a --set override
])
def test_a_fact_that_contradicts_the_manifest_is_refused_naming_both(tmp_path, stated, overrides, fact):
    _rgb64(tmp_path)
    path = _params_file(tmp_path, {"dataset": "photo-crops", **stated})
    with pytest.raises(ConfigError) as error:
        load_params(path, overrides)
    manifest = tmp_path / "data" / "raw" / "photo-crops.manifest.json"
    assert f"data.{fact} is {(stated or overrides['data'])[fact]}, but {manifest} says" in str(error.value)


def test_a_fact_that_agrees_with_the_manifest_is_accepted(tmp_path):
    _rgb64(tmp_path)
    assert load_params(_params_file(tmp_path, {"dataset": "photo-crops", "image_size": 64})).data.channels == 3


def test_data_imported_without_a_manifest_is_named_with_the_command_that_describes_it(tmp_path):
    arrays = ImageArrays(np.zeros((20, 16, 16, 1), np.uint8), np.arange(20) % 3)
    write_npz(tmp_path / "data" / "raw" / "old.npz", arrays)
    path = _params_file(tmp_path, {"dataset": "old"})
    with pytest.raises(ConfigError, match=r"old.manifest.json: no manifest for dataset 'old'; old.npz was imported "
                                          r"before datasets had manifests: run `genp data describe old`"):
        load_params(path)
    described = stages.describe_dataset("old", Workspace.at(tmp_path))
    assert described.class_names == ["0", "1", "2"] and described.content_sha256 == content_hash(arrays)
    assert load_params(path).data.image_size == 16


def test_retargeting_to_another_dataset_takes_that_datasets_facts(tmp_path):
    """A request for photo-crops from params.yaml written for digits (even one that still states digits' size)."""
    _rgb64(tmp_path)
    path = _params_file(tmp_path, {"dataset": "digits", "image_size": 8, "channels": 1})
    params = params_for(path, "gan", "photo-crops")
    assert (params.data.image_size, params.data.channels, params.data.num_classes) == (64, 3, 4)
    assert params.registered_model_name == "gan-photo-crops"


def test_no_params_file_of_the_repository_states_a_dataset_fact():
    for path in [REPO / "params.yaml", *sorted((REPO / "presets").glob("*.yaml"))]:
        data = yaml.safe_load(path.read_text())["data"]
        assert not set(FACTS) & set(data), path
