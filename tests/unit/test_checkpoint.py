from dataclasses import asdict
import hashlib
import json
import os

import pytest
import torch

from gen_platform.errors import ModelLoadError
from gen_platform.models.vae import ConvVAE, VAEArchitecture
from gen_platform.tracking.model_io import load_model_dir
from gen_platform.checkpoint import CONFIG_FILE, STATE_FILE, load_checkpoint, save_checkpoint


def _saved(tmp_path):
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    save_checkpoint(tmp_path, {"model": model.state_dict(), "epoch": 3, "history": [{"epoch": 1, "loss": 2.5}]},
                    asdict(model.architecture), family="vae")
    return model


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = _saved(tmp_path)
    loaded = load_model_dir(tmp_path)
    x = torch.rand(2, 1, 8, 8)
    assert not loaded.training
    assert torch.equal(loaded.reconstruct(x), model.eval().reconstruct(x))
    state, meta = load_checkpoint(tmp_path)
    assert state["epoch"] == 3 and meta == {"family": "vae", "config": asdict(model.architecture)}


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_records_the_hash_of_its_weights(tmp_path):
    _saved(tmp_path)
    recorded = json.loads((tmp_path / CONFIG_FILE).read_text())["sha256"]
    assert recorded == {STATE_FILE: hashlib.sha256((tmp_path / STATE_FILE).read_bytes()).hexdigest()}


def test_altered_weights_are_refused_naming_the_file(tmp_path):
    _saved(tmp_path)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    state["model"]["to_stats.bias"][0] += 1.0  # still a valid weights-only file with matching shapes
    torch.save(state, tmp_path / STATE_FILE)
    for load in (load_checkpoint, load_model_dir):
        with pytest.raises(ModelLoadError, match=r"does not match the sha256 recorded") as refused:
            load(tmp_path)
        assert str(tmp_path / STATE_FILE) in str(refused.value)


def test_pickled_code_is_refused_even_with_a_matching_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_checkpoint(tmp_path, {"model": {}, "evil": _Payload()}, {}, family="vae")
    with pytest.raises(ModelLoadError, match="refused to load checkpoint"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_without_a_recorded_hash_is_refused(tmp_path):
    _saved(tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    del meta["sha256"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))  # as versions before the hash wrote it
    with pytest.raises(ModelLoadError, match=r"state\.pt: no sha256 recorded.*re-save it"):
        load_checkpoint(tmp_path)


def test_corrupt_and_incomplete_checkpoints(tmp_path):
    _saved(tmp_path)
    (tmp_path / STATE_FILE).write_bytes(b"\x80\x04garbage")
    with pytest.raises(ModelLoadError, match="does not match"):
        load_checkpoint(tmp_path)
    (tmp_path / STATE_FILE).unlink()
    with pytest.raises(ModelLoadError, match="missing state.pt"):
        load_checkpoint(tmp_path)
    (tmp_path / CONFIG_FILE).write_text('{"family": "vae", "con')
    with pytest.raises(ModelLoadError, match="model_config.json: refused to load checkpoint, not JSON"):
        load_checkpoint(tmp_path)


def test_weights_that_do_not_match_the_config(tmp_path):
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    save_checkpoint(tmp_path, {"model": model.state_dict()}, asdict(VAEArchitecture(8, 1, 6, 8)), family="vae")
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model_dir(tmp_path)

