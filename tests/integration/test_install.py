"""The locked set (pyproject.toml's dependencies under constraints.txt) resolves from PyPI alone: what `make setup`
installs on a machine without this one's local wheels. A dry run: metadata only, no multi-GB CUDA download."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.conftest import REPO

pytestmark = pytest.mark.integration  # needs PyPI over the network

PYPI = "https://pypi.org/simple"


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503, so that `zc.lockfile` and `zc-lockfile` match


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, version = line.split("==")
        pins[_name(name)] = version
    return pins


def _resolve_from_pypi_alone(tmp_path: Path) -> dict[str, str]:
    uv = find_uv_bin()
    # uv reads neither pip's config nor PIP_* (the Makefile hands it pip's find-links, with this machine's CPU
    # torch), but UV_* (UV_FIND_LINKS, UV_INDEX_URL, ...) and uv.toml would add sources beside PyPI. The cache
    # stays: uv keys it by URL, so it cannot bring in another source.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UV_", "PIP_")) or key == "UV_CACHE_DIR"}
    venv, python = tmp_path / "venv", tmp_path / "venv" / "bin" / "python"
    # An empty environment: in the test's own, everything is already installed and nothing would be resolved.
    subprocess.run([uv, "venv", "--no-config", "--quiet", "--python", sys.executable, str(venv)],
                   env=env, check=True, timeout=60)
    # `uv` too: pip installs it under the same pins; with it the resolution covers every line of constraints.txt.
    result = subprocess.run(
        [uv, "pip", "install", "--dry-run", "--no-config", "--index-url", PYPI, "--python", str(python),
         "-c", "constraints.txt", "-r", "pyproject.toml", "--all-extras", "uv"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    resolved = dict(line[3:].split("==") for line in lines if line.startswith(" + "))
    assert resolved, result.stderr
    return {_name(name): version for name, version in resolved.items()}


def test_the_locked_set_resolves_from_pypi_alone(tmp_path: Path) -> None:
    resolved = _resolve_from_pypi_alone(tmp_path)
    assert resolved["torch"] == "2.13.0"  # PyPI's own build: a `+cpu` pin would resolve only from a local wheel
    pins = _pins()
    assert sorted(set(pins) - set(resolved)) == []
    assert {name: (pin, resolved[name]) for name, pin in pins.items() if resolved[name] != pin} == {}
