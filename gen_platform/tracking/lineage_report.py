"""Where a registered model came from, read back from MLflow: `genp lineage vae-digits@champion`."""

from __future__ import annotations

from typing import Any

import mlflow

from gen_platform.errors import GenPlatformError
from gen_platform.tracking.links import run_page


def _version(client: mlflow.MlflowClient, reference: str):
    """NAME@ALIAS, NAME/VERSION, or either as a models:/ URI."""
    name_ref = reference.removeprefix("models:/")
    try:
        if "@" in name_ref:
            name, alias = name_ref.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        if "/" in name_ref:
            name, version = name_ref.rsplit("/", 1)
            return client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as error:
        raise GenPlatformError(f"{reference}: no such registered model version ({error.message})") from None
    raise GenPlatformError(f"{reference}: expected NAME@ALIAS, NAME/VERSION or models:/NAME@ALIAS")


def _artifact(client: mlflow.MlflowClient, run, path: str) -> str | None:
    listed = {entry.path for entry in client.list_artifacts(run.info.run_id, "lineage")}
    return f"{run.info.artifact_uri}/{path}" if path in listed else None


def model_lineage(reference: str) -> dict[str, Any]:
    client = mlflow.MlflowClient()
    version = _version(client, reference)
    run = client.get_run(version.run_id)
    tags = run.data.tags
    parent = client.get_run(tags["mlflow.parentRunId"]) if "mlflow.parentRunId" in tags else None
    gated = parent or run  # a search gates its trials once, on the parent run
    commit = tags.get("git_commit", "unknown")
    return {
        "model": f"{version.name}/{version.version}", "aliases": list(version.aliases),
        "run_id": run.info.run_id, "run_name": run.info.run_name, "tracking_uri": mlflow.get_tracking_uri(),
        "mlflow_ui": run_page(run.info.run_id),
        "data": {"md5": tags.get("data_version"), "dvc_path": tags.get("data_path", "data/raw"),
                 "dataset": tags.get("dataset")},
        "code": {"git_commit": commit.removesuffix("-dirty"), "clean": not commit.endswith("-dirty"),
                 "uncommitted": tags.get("git_uncommitted", "").split(", ") if tags.get("git_uncommitted") else [],
                 "diff": _artifact(client, gated, "lineage/uncommitted.diff")},
        "validation": {"verdict": tags.get("validation"), "report": _artifact(client, gated, "lineage/validation.html"),
                       "summary": _artifact(client, gated, "lineage/validation.json")},
        "params": dict(run.data.params), "metrics": dict(run.data.metrics),
        "search": {"parent_run_id": parent.info.run_id, "trial_id": tags.get("trial_id")} if parent else None,
        "flow_run_id": tags.get("flow_run_id"),
        "promotion": {key.removeprefix("promotion."): value for key, value in version.tags.items()
                      if key.startswith("promotion.")},
    }


def format_lineage(record: dict[str, Any]) -> str:
    code, data, validation = record["code"], record["data"], record["validation"]
    state = "clean" if code["clean"] else "uncommitted changes to " + ", ".join(code["uncommitted"])
    lines = [
        f"{record['model']}" + (f" (@{', @'.join(record['aliases'])})" if record["aliases"] else ""),
        f"  MLflow run      {record['run_id']} ({record['run_name']}) in {record['tracking_uri']}",
        f"  MLflow UI       {record['mlflow_ui']}",
        f"  data            {data['dataset']}: md5 {data['md5']} at {data['dvc_path']} (data.dvc)",
        f"  code            git {code['git_commit']}, {state}" + (f"; diff {code['diff']}" if code["diff"] else ""),
        f"  validation      {validation['verdict']}; report {validation['report']}",
    ]
    if record["search"]:
        lines.append(f"  search          trial {record['search']['trial_id']} of parent run {record['search']['parent_run_id']}")
    if record["flow_run_id"]:
        lines.append(f"  Prefect         flow run {record['flow_run_id']}")
    if record["promotion"]:
        lines.append(f"  promotion       {record['promotion'].get('promoted')}: {record['promotion'].get('reason')}")
    lines.append("  params          " + ", ".join(f"{k}={v}" for k, v in sorted(record["params"].items())))
    lines.append("  final metrics   " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(record["metrics"].items())
                                                 if not k.startswith("system/")))
    return "\n".join(lines)
