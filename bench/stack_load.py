"""Load test of the platform as a service: 8 train requests created at the same moment against the local
stack (Prefect server, MLflow server, Ray head, serve process with its limit of 2 concurrent runs).

Criteria: all 8 runs complete (none lost, none failed by contention), 8 distinct MLflow runs, each holding
the `model.vae.beta` its request asked for, and one consistent champion (the promotions form one chain ending at
the alias: none lost, none decided against a stale champion). Records wall time, the queue wait of each run (created →
started) and the peak number of runs running at once (the serve limit). Writes
bench/results/stack_load.json.

    python -m bench.stack_load      (part of `make bench`; tests/integration/test_stack.py checks the same
                                     criteria on 3 concurrent requests against its own stack)
    python -m bench.stack_load --quick --output /tmp/load.json   # smoke run: 2 requests (make test measures
                                     them against tests/integration/test_stack.py's stack)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._results import add_quick_arguments, output_path, write_result
from bench._stack_client import local_stack, reported_mlflow_run, run_together, timestamp

RESULT = Path(__file__).parent / "results" / "stack_load.json"
REPO = Path(__file__).resolve().parents[1]
REQUESTS, QUICK_REQUESTS = 8, 2
MODEL = "vae-digits"


def load_requests(count: int) -> list[dict[str, Any]]:
    """Distinct betas, so every MLflow run can be matched to the request that asked for it; one epoch and one
    single-CPU Ray worker each: the load is on the service, not on the arithmetic."""
    single_cpu = {"num_workers": 1, "cpus_per_worker": 1}
    return [{"request": {"family": "vae", "epochs": 1,
                         "overrides": {"model": {"vae": {"beta": 0.25 * (index + 1)}}, "train": single_cpu}}}
            for index in range(count)]


def champion_consistent(client, name: str) -> bool:
    """The promotion decisions form one chain. Following the alias's version back through the champion each
    promoted version replaced (`promotion.champion_version`) visits every promoted version exactly once: no
    promotion was lost or decided against a stale champion. (Under the noise-aware rule the champion need not
    have the best point estimate: a challenger inside the interval is refused.)"""
    tags = {version.version: version.tags for version in client.search_model_versions(f"name='{name}'")}
    promoted = {version for version, tag in tags.items() if tag.get("promotion.promoted") == "True"}
    chain, current = [], client.get_model_version_by_alias(name, "champion").version
    while current in tags and current not in chain:
        chain.append(current)
        current = tags[current].get("promotion.champion_version")
    return current == "None" and set(chain) == promoted


def peak_concurrency(flow_runs: list[dict[str, Any]]) -> int:
    """The most runs that were running at the same moment (a run ending as another starts does not overlap it)."""
    events = sorted([(timestamp(run["start_time"]), 1) for run in flow_runs if run["start_time"]]
                    + [(timestamp(run["end_time"]), -1) for run in flow_runs if run["start_time"] and run["end_time"]])
    running = peak = 0
    for _, change in events:  # at equal times the end (-1) sorts first
        running += change
        peak = max(peak, running)
    return peak


def measure(urls: dict[str, str], count: int = REQUESTS, timeout: float = 1800) -> dict[str, Any]:
    import mlflow

    requests = load_requests(count)
    started = time.monotonic()
    finished = run_together(urls["prefect"], "train/train", requests, timeout)
    wall = time.monotonic() - started
    states = Counter(run["state_type"] for run in finished)
    waits = [timestamp(run["start_time"]) - timestamp(run["created"]) for run in finished if run["start_time"]]
    client = mlflow.MlflowClient(urls["mlflow"])
    runs, params_match = set(), True
    for flow_run, request in zip(finished, requests):
        if flow_run["state_type"] != "COMPLETED":
            continue
        run_id = reported_mlflow_run(urls["prefect"], flow_run["id"])
        runs.add(run_id)
        asked = request["request"]["overrides"]["model"]["vae"]["beta"]
        params_match &= float(client.get_run(run_id).data.params["model.vae.beta"]) == asked
    result = {"requests": count, "completed": states["COMPLETED"],
              "not_completed": {state: n for state, n in states.items() if state != "COMPLETED"},
              "mlflow_runs": len(runs), "params_match_requests": params_match,
              "champion_consistent": champion_consistent(client, MODEL),
              "wall_s": round(wall, 1), "max_queue_wait_s": round(max(waits), 1),
              "median_queue_wait_s": round(statistics.median(waits), 1), "peak_concurrent_runs": peak_concurrency(finished),
              "flow_run_ids": [run["id"] for run in finished]}
    result["criteria_met"] = (result["completed"] == count and result["mlflow_runs"] == count
                              and params_match and result["champion_consistent"])
    return result


def described(measured: dict[str, Any], quick: bool) -> dict[str, Any]:
    """A measurement with what it ran against."""
    return measured | {"quick": quick, "serve_limit": int(os.environ.get("GENP_MAX_CONCURRENT_RUNS", "2")),
                       "machine": platform.machine(), "cpus": os.cpu_count(), "prefect_store": "sqlite",
                       "date": time.strftime("%Y-%m-%d")}


def main(quick: bool = False, output: Path | None = None) -> dict[str, Any]:
    output = output_path(RESULT, quick, output)
    if not (REPO / "data" / "raw" / "digits.npz").exists():
        subprocess.run(["genp", "data", "import", "digits"], cwd=REPO, check=True)
    with tempfile.TemporaryDirectory(prefix="genp-load-") as stack_dir:
        # Its own MLflow store: the benchmark's runs stay out of the repository's registry.
        with local_stack(REPO, Path(stack_dir), GENP_DATA_POLL_SECONDS="0", GENP_MLFLOW_STORE_DIR=stack_dir) as urls:
            result = described(measure(urls, QUICK_REQUESTS if quick else REQUESTS), quick)
    return write_result(output, result, shown={k: v for k, v in result.items() if k != "flow_run_ids"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_arguments(parser, RESULT, f"{QUICK_REQUESTS} requests")
    arguments = parser.parse_args()
    main(arguments.quick, arguments.output)
