"""Checkpoint files: plain tensors and numbers, saved with torch.save and loaded with weights_only=True."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from gen_platform.errors import ModelLoadError

STATE_FILE = "state.pt"
CONFIG_FILE = "model_config.json"


def save_checkpoint(directory: str | Path, state: dict[str, Any], architecture: dict[str, Any], family: str) -> Path:
    """`state` (tensors, numbers, lists) beside `model_config.json`: {"family": family, "config": architecture}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / STATE_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps({"family": family, "config": architecture}, indent=2))
    return directory


def load_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns (state, {"family": ..., "config": ...}); refuses anything that is not plain tensors/data."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text())
        state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise ModelLoadError(f"{directory}: incomplete checkpoint, missing {Path(error.filename).name}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, json.JSONDecodeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{directory}: refused to load checkpoint (corrupt or not weights-only): {first_line}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ModelLoadError(f"{directory}/{STATE_FILE}: expected a dict with a 'model' state_dict")
    return state, meta
