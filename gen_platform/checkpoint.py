"""Checkpoint files: plain tensors and numbers, saved with torch.save and loaded with weights_only=True.

`model_config.json` records the sha256 of `state.pt`; a load reads the weights once, checks that hash and only then
unpickles those same bytes, so weights altered or replaced after they were saved are refused before torch sees them.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from gen_platform.errors import ModelLoadError

STATE_FILE = "state.pt"
CONFIG_FILE = "model_config.json"
HASHES = "sha256"  # in CONFIG_FILE: {file name: hex digest}


def save_checkpoint(directory: str | Path, state: dict[str, Any], architecture: dict[str, Any], family: str) -> Path:
    """`state` (tensors, numbers, lists) beside `model_config.json`: {"family", "config", "sha256": {"state.pt"}}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    weights = buffer.getvalue()
    (directory / STATE_FILE).write_bytes(weights)
    # Written last: a save interrupted in between leaves weights that no config vouches for, refused on load.
    meta = {"family": family, "config": architecture, HASHES: {STATE_FILE: hashlib.sha256(weights).hexdigest()}}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return directory


def _verify(path: Path, content: bytes, recorded: Any) -> None:
    if not isinstance(recorded, str):
        raise ModelLoadError(f"{path}: no sha256 recorded in {CONFIG_FILE} (a checkpoint written before hashes "
                             "were recorded); refusing unverified weights. Re-create it by re-running the step that "
                             "wrote it or, if you trust the file, re-save it with "
                             "gen_platform.checkpoint.save_checkpoint")
    actual = hashlib.sha256(content).hexdigest()
    if actual != recorded:
        raise ModelLoadError(f"{path}: content does not match the sha256 recorded in {CONFIG_FILE} "
                             f"(expected {recorded[:12]}..., file has {actual[:12]}...): it changed after it was saved "
                             "(altered or corrupted); refusing to load it")


def load_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns (state, {"family": ..., "config": ...}); refuses weights whose hash does not match the recorded one
    and anything that is not plain tensors/data."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text())
        weights = (directory / STATE_FILE).read_bytes()
    except FileNotFoundError as error:
        raise ModelLoadError(f"{directory}: incomplete checkpoint, missing {Path(error.filename).name}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{directory / CONFIG_FILE}: refused to load checkpoint, not JSON: {error}") from None
    hashes = meta.pop(HASHES, None) if isinstance(meta, dict) else None
    _verify(directory / STATE_FILE, weights, hashes.get(STATE_FILE) if isinstance(hashes, dict) else None)
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{directory}: refused to load checkpoint (corrupt or not weights-only): {first_line}"
                             ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise ModelLoadError(f"{directory}/{STATE_FILE}: expected a dict with a 'model' state_dict")
    return state, meta
