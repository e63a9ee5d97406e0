"""Prefect flow for one training: the pipeline's stage functions as tasks, nothing more.

Runs without a Prefect server (Prefect starts a temporary local one):
    python -m flows.training_flow --set model.beta=4
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE

from gen_platform import stages
from gen_platform.config import deep_merge, load_params, parse_override

# Stages write to the workspace and MLflow, so their results must never come from Prefect's cache.
prepare = task(stages.prepare, name="prepare", cache_policy=NONE)
validate = task(stages.validate, name="validate", cache_policy=NONE)
features = task(stages.features, name="features", cache_policy=NONE)
train = task(stages.train, name="train", cache_policy=NONE)
evaluate = task(stages.evaluate, name="evaluate", cache_policy=NONE)
register = task(stages.register, name="register", cache_policy=NONE, retries=2, retry_delay_seconds=5)


@flow(name="train", log_prints=True)
def training_flow(overrides: dict[str, Any] | None = None, params_path: str = "params.yaml",
                  root: str = ".") -> dict[str, Any]:
    """prepare → validate → features → train → evaluate → register; `overrides` e.g. {"model": {"beta": 4}}."""
    workspace = stages.Workspace.at(root)
    params = load_params(workspace.root / params_path, overrides)
    prepare(params, workspace)
    validate(params, workspace)
    features(params, workspace)
    train(params, workspace)
    evaluate(params, workspace)
    return register(params, workspace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", "-s", action="append", default=[], help="override, e.g. model.beta=4")
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    overrides: dict[str, Any] = {}
    for text in args.set:
        overrides = deep_merge(overrides, parse_override(text))
    training_flow(overrides=overrides, root=args.root)


if __name__ == "__main__":
    main()
