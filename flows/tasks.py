"""The pipeline's stage functions as Prefect tasks, plus the artifacts every run shows in the Prefect UI."""

from __future__ import annotations

import base64
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact
from prefect.cache_policies import NONE

from gen_platform import stages
from gen_platform.config import PipelineParams
from gen_platform.tracking.links import run_page
from gen_platform.training.jobs import jobs_address, run_stage_as_job
from gen_platform.validation.gate import require_valid_data
from gen_platform.workspace import Workspace, read_json

# Stages write to the workspace and MLflow, so their results must never come from Prefect's cache.
prepare = task(stages.prepare, name="prepare data split", cache_policy=NONE)
validate = task(stages.validate, name="validate with Great Expectations", cache_policy=NONE)
features = task(stages.features, name="train domain classifier", cache_policy=NONE)


def _train(params: PipelineParams, workspace: Workspace) -> dict[str, float]:
    """As a Ray job (Jobs API) on the cluster that GENP_RAY_JOBS_ADDRESS names, its logs in this run's; else in this
    process (with a local Ray runtime, or RAY_ADDRESS's cluster)."""
    address = jobs_address()
    if address is None:
        return stages.train(params, workspace)
    run_stage_as_job(address, "train", params, workspace)
    return read_json(workspace.metrics("train"), "the train task")


def _tune(params: PipelineParams, workspace: Workspace) -> dict[str, Any]:
    """As `_train`: a Ray job where GENP_RAY_JOBS_ADDRESS names a cluster; the search's summary either way."""
    address = jobs_address()
    if address is None:
        return stages.tune(params, workspace)
    run_stage_as_job(address, "tune", params, workspace)
    return read_json(workspace.report("tune.json"), "the tune task")


train = task(_train, name="train on Ray Train", cache_policy=NONE)
evaluate = task(stages.evaluate, name="evaluate", cache_policy=NONE)
# MLflow registration talks to a server: retry transient failures.
register = task(stages.register, name="register and apply champion rule", cache_policy=NONE, retries=2,
                retry_delay_seconds=5)
tune = task(_tune, name="search with Ray Tune", cache_policy=NONE, retries=0)


def publish_decision(reason: str) -> None:
    """Why a retrain run did what it did: in the run's logs and, so the UI shows it at a glance, an artifact."""
    get_run_logger().info(reason)
    create_markdown_artifact(key="retrain-decision", description="retrain decision", markdown=f"# Retrain\n\n{reason}\n")


def _run_link(run_id: str) -> str:
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith("http"):
        return f"[{run_id}]({run_page(run_id)})"
    return f"`{run_id}` (store `{uri}`)"


def _comparison_table(comparison: dict[str, Any] | None) -> str:
    """Challenger and champion re-scored on the same validation images, and the improvement's interval."""
    if comparison is None:
        return ""
    return f"""
| `{comparison["metric"]}` on {comparison["samples"]} validation images | value |
|---|---|
| challenger | {comparison["challenger"]:.5g} |
| champion (re-scored) | {comparison["champion"]:.5g} |
| improvement | {comparison["improvement"]:.5g} |
| {comparison["level"]:.0%} bootstrap interval | [{comparison["low"]:.5g}, {comparison["high"]:.5g}] |
"""


@task(name="publish artifacts", cache_policy=NONE)
def publish(workspace: Workspace, title: str, scores: dict[str, float], registration: dict[str, Any],
            run_id: str) -> None:
    verdict = require_valid_data(workspace)
    rows = "\n".join(f"| `{name}` | {value:.5g} |" for name, value in sorted(scores.items()))
    promoted = "promoted to" if registration["promoted"] else "not promoted to"
    create_markdown_artifact(key="run-report", description=title, markdown=f"""# {title}

- MLflow run: {_run_link(run_id)}
- validation: **{"passed" if verdict["success"] else "failed"}** ({len(verdict["expectations"])} expectations on {verdict["rows"]} images)
- registry: `{registration["model_name"]}` v{registration["version"]} {promoted} `@{registration["alias"]}` ({registration["reason"]})
{_comparison_table(registration["comparison"])}

| metric | value |
|---|---|
{rows}
""")
    grid = workspace.report("samples.png")
    if grid.exists():
        create_image_artifact(image_url="data:image/png;base64," + base64.b64encode(grid.read_bytes()).decode(),
                              key="sample-grid", description=f"{title}: samples")
