"""The library is layered: a module imports only from its own layer or the ones below it, and never from an
orchestrator. Read bottom-up, each layer can be understood without the ones above it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

LAYERS = [
    {"errors", "nets", "checkpoint", "settings", "data", "workspace", "progress", "startup"},  # plumbing, plain data
    {"evaluation", "validation"},  # metrics and pictures of any model; the data gate
    {"models"},  # the families: settings, networks, recipes
    {"config"},  # params.yaml assembled from the sections and the families' blocks
    {"training", "scoring"},  # Ray Train; scoring one trained model
    {"tuning"},  # Ray Tune over trainings
    {"tracking"},  # MLflow: runs, lineage, registry
    {"stages", "cli", "quick_exit"},  # the pipeline and its command line
]
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}
ORCHESTRATORS = ("prefect", "dvc", "flows")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def _component(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "gen_platform" and len(parts) > 1 else None


def test_every_module_has_a_layer():
    components = {path.stem if path.parent.name == "gen_platform" else path.parent.name
                  for path in (REPO / "gen_platform").rglob("*.py") if path.name != "__init__.py"}
    assert components <= set(LAYER_OF), f"add {sorted(components - set(LAYER_OF))} to LAYERS"


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for path in (REPO / "gen_platform").rglob("*.py"):
        own = _component("gen_platform." + ".".join(path.relative_to(REPO / "gen_platform").with_suffix("").parts))
        if own is None or own == "__init__":
            continue
        for imported in filter(None, map(_component, _imports(path))):
            if imported in LAYER_OF and LAYER_OF[imported] > LAYER_OF[own]:
                upward.append(f"{path.relative_to(REPO)} imports gen_platform.{imported}")
    assert not upward, upward


def test_the_library_never_imports_an_orchestrator():
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in (REPO / "gen_platform").rglob("*.py")
                 for name in _imports(path) if name.split(".")[0] in ORCHESTRATORS]
    assert not offenders, offenders
