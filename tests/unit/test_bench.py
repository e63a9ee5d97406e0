"""The benchmarks run only under `make bench`; this keeps them importable as the library changes under them."""

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench"


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_")))
def test_benchmark_module_imports(name):
    module = importlib.import_module(f"bench.{name}")
    assert callable(module.main)
