from dataclasses import asdict
import os

import pytest
import torch

from gen_platform.errors import ModelLoadError
from gen_platform.models.vae import ConvVAE, VAEArchitecture
from gen_platform.tracking.model_io import load_model_dir
from gen_platform.checkpoint import STATE_FILE, load_checkpoint, save_checkpoint


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


def test_tampered_checkpoint_is_refused(tmp_path, monkeypatch):
    _saved(tmp_path)
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {}, "evil": _Payload()}, tmp_path / STATE_FILE)
    with pytest.raises(ModelLoadError, match="refused to load checkpoint"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_corrupt_and_incomplete_checkpoints(tmp_path):
    _saved(tmp_path)
    (tmp_path / STATE_FILE).write_bytes(b"\x80\x04garbage")
    with pytest.raises(ModelLoadError, match="refused"):
        load_checkpoint(tmp_path)
    (tmp_path / STATE_FILE).unlink()
    with pytest.raises(ModelLoadError, match="missing state.pt"):
        load_checkpoint(tmp_path)


def test_weights_that_do_not_match_the_config(tmp_path):
    model = ConvVAE(VAEArchitecture(8, 1, 4, 8))
    save_checkpoint(tmp_path, {"model": model.state_dict()}, asdict(VAEArchitecture(8, 1, 6, 8)), family="vae")
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model_dir(tmp_path)

