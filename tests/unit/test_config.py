import numpy as np
import pytest

from gen_platform.config import load_params, parse_override, parse_params
from gen_platform.data.arrays import ImageArrays, write_npz
from gen_platform.data.manifest import DatasetManifest
from gen_platform.errors import ConfigError
from tests.conftest import REPO


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.model.family == "vae"
    assert params.registered_model_name == "vae-digits"


def test_the_rgb64_preset_is_valid(tmp_path):
    preset = tmp_path / "params.yaml"
    preset.write_text((REPO / "presets" / "rgb64.yaml").read_text())
    arrays = ImageArrays(np.zeros((4, 64, 64, 3), np.uint8), np.arange(4))
    write_npz(tmp_path / "data" / "raw" / "photo-crops.npz", arrays)
    DatasetManifest.describe("photo-crops", arrays, list("abcd"), "test").write(tmp_path)
    params = load_params(preset)
    assert (params.data.image_size, params.data.channels) == (64, 3)
    assert params.registered_model_name == "vae-photo-crops"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"train\.epoch: Extra inputs are not permitted"):
        parse_params({"train": {"epoch": 3}})


def test_out_of_range_value_is_named_with_the_value():
    with pytest.raises(ConfigError, match=r"model\.vae\.beta: .*greater than 0.*got -1"):
        parse_params({"model": {"vae": {"beta": -1}}})


def test_family_settings_outside_their_block_point_to_it():
    with pytest.raises(ConfigError, match=r"model\.beta: not a family; .* e\.g\. model\.vae\.beta"):
        parse_params({"model": {"beta": 2}})


def test_switching_family_is_one_value_and_keeps_every_block():
    params = parse_params({"model": {"family": "gan", "vae": {"beta": 3}, "gan": {"loss": "hinge"}}})
    assert params.model.settings.loss == "hinge" and params.model.vae.beta == 3
    assert params.registered_model_name == "gan-digits"
    assert params.model.logged()["model.gan.loss"] == "hinge" and "model.vae.beta" not in params.model.logged()
    with pytest.raises(ConfigError, match=r"model\.family: unknown family 'diffusion'; known: \['gan', 'vae'\]"):
        parse_params({"model": {"family": "diffusion"}})


def test_overrides_win_over_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  vae:\n    beta: 2.0\ntrain:\n  epochs: 3\n")
    params = load_params(path, {"model": {"vae": {"beta": 4}}})
    assert (params.model.settings.beta, params.train.epochs, params.model.settings.latent_dim) == (4, 3, 16)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_parse_override():
    assert parse_override("model.vae.beta=4") == {"model": {"vae": {"beta": 4}}}
    assert parse_override("train.use_gpu=true") == {"train": {"use_gpu": True}}
    with pytest.raises(ConfigError, match="SECTION.FIELD=VALUE"):
        parse_override("beta")


def test_inconsistent_validation_bounds():
    with pytest.raises(ConfigError, match="min_rows"):
        parse_params({"validation": {"min_rows": 10, "max_rows": 5}})
