"""Soak test of searches: consecutive searches of each family, each in a fresh Ray runtime and back to back
in one runtime, on this machine, in two trial shapes: single-process trials (Tune function trainables, 8 per
search) and trials that are Ray Train runs of 2 workers each (a Train controller and its worker group per
trial, 4 per search; on 2 cores they run one at a time). Criteria: every search finishes with no failed
trial, no placement group is left after a search, no Train worker group timed out, and the slowest search
takes at most 1.5× the median of its shape, family and mode. Writes bench/results/tune_soak.json.

    python -m bench.tune_soak            (part of `make bench`; about 25 minutes)
    python -m bench.tune_soak --quick --output /tmp/soak.json   # smoke run: 2 searches of 2 single-process VAE
                                                                # trials of 1 epoch, in one runtime
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen_platform.config import parse_params
from gen_platform.data.sources import digits
from gen_platform.data.splits import split_dataset
from gen_platform.evaluation.classifier import ClassifierArchitecture, SavedClassifier, train_classifier
from gen_platform.training.runtime import ensure_ray
from gen_platform.tuning.search import run_search

from bench._results import add_quick_arguments, output_path, write_result

RESULT = Path(__file__).parent / "results" / "tune_soak.json"
MODES = ("fresh runtime", "one runtime")
SLOWEST_OVER_MEDIAN = 1.5


@dataclass(frozen=True)
class Shape:
    """The trials of one soaked set of searches."""
    workers_per_trial: int
    trials: int
    searches: int


SHAPES = (Shape(workers_per_trial=1, trials=8, searches=5), Shape(workers_per_trial=2, trials=4, searches=3))
QUICK_SHAPES, QUICK_MODES = (Shape(workers_per_trial=1, trials=2, searches=2),), ("one runtime",)


def leaked_placement_groups(timeout: float = 20.0) -> int:
    """Placement groups not yet removed, after giving Tune `timeout` seconds to remove those of ended trials."""
    import ray
    from ray.util.state import list_placement_groups

    address = ray.get_runtime_context().gcs_address  # this runtime's, even when others run on the machine
    deadline = time.monotonic() + timeout
    while True:
        alive = [group for group in list_placement_groups(address=address, limit=10_000) if group.state != "REMOVED"]
        if not alive or time.monotonic() > deadline:
            return len(alive)
        time.sleep(0.5)


def startup_timeouts() -> int:
    """`WorkerGroupStartupTimeoutError`s in this runtime's session logs."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    return sum(path.read_text(errors="replace").count("WorkerGroupStartupTimeoutError")
               for path in logs.rglob("*") if path.is_file() and path.suffix in {".log", ".err", ".out"})


def one_search(shape: Shape, family: str, mode: str, index: int, splits: dict, classifier: SavedClassifier,
               root: Path, epochs: int) -> dict[str, Any]:
    params = parse_params({"model": {"family": family}, "tune": {
        "trials": shape.trials, "max_epochs": epochs, "seed": index, "workers_per_trial": shape.workers_per_trial}})
    name = f"soak-{shape.workers_per_trial}w-{family}-{mode.split()[0]}-{index}"
    started = time.perf_counter()
    search = run_search(params, splits["train"], splits["val"], root, classifier, name=name)
    wall = time.perf_counter() - started
    return {"workers_per_trial": shape.workers_per_trial, "family": family, "mode": mode, "search": index,
            "trials": shape.trials, "wall_seconds": round(wall, 1), **search.counts(),
            "trial_epochs": search.trial_epochs, "leaked_placement_groups": leaked_placement_groups(),
            "errors": [t.error for t in search.trials if t.error]}


def soak(shapes: tuple[Shape, ...] = SHAPES, families: tuple[str, ...] = ("vae", "gan"),
         modes: tuple[str, ...] = MODES, epochs: int = 4) -> dict[str, Any]:
    import ray

    splits = split_dataset(digits(), 0, 0.1, 0.1)
    classifier = SavedClassifier.of(train_classifier(splits["train"], ClassifierArchitecture(8, 1, 10), 2, 128, 1e-3, 0))
    records, summaries = [], []
    with tempfile.TemporaryDirectory() as root:
        for shape, family, mode in itertools.product(shapes, families, modes):
            ray.shutdown()
            ensure_ray()
            group = []
            for index in range(shape.searches):
                if mode == "fresh runtime" and index:
                    ray.shutdown()
                    ensure_ray()
                record = one_search(shape, family, mode, index, splits, classifier, Path(root), epochs)
                record["startup_timeouts_in_logs"] = startup_timeouts()
                print(json.dumps(record), flush=True)
                group.append(record)
            walls = [r["wall_seconds"] for r in group]
            median = statistics.median(walls)
            summaries.append({
                "workers_per_trial": shape.workers_per_trial, "family": family, "mode": mode,
                "trials_per_search": shape.trials, "searches": len(group), "median_wall_seconds": median,
                "min_wall_seconds": min(walls), "max_wall_seconds": max(walls),
                "slowest_over_median": round(max(walls) / median, 3),
                "trials_finished": sum(r["finished"] for r in group), "trials_stopped": sum(r["stopped"] for r in group),
                "trials_failed": sum(r["failed"] for r in group),
                "leaked_placement_groups": sum(r["leaked_placement_groups"] for r in group),
                "startup_timeouts_in_logs": max(r["startup_timeouts_in_logs"] for r in group)})
            records += group
    ray.shutdown()
    met = all(s["trials_failed"] == 0 and s["leaked_placement_groups"] == 0 and s["startup_timeouts_in_logs"] == 0
              and s["slowest_over_median"] <= SLOWEST_OVER_MEDIAN for s in summaries)
    return {"benchmark": "tune_soak", "max_epochs": epochs,
            "criteria": f"no failed trial, no leaked placement group, no worker-group start-up timeout, slowest "
                        f"search ≤ {SLOWEST_OVER_MEDIAN}× the median (per trial shape, family and mode)",
            "criteria_met": met, "summaries": summaries, "searches": records}


def main(quick: bool = False, output: Path | None = None) -> dict:
    import os

    output = output_path(RESULT, quick, output)
    result = soak(QUICK_SHAPES, ("vae",), QUICK_MODES, epochs=1) if quick else soak()
    return write_result(output, result | {"quick": quick, "machine": f"{os.cpu_count()} CPUs"},
                        shown=result["summaries"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_arguments(parser, RESULT, "2 searches of 2 single-process VAE trials of 1 epoch, in one runtime")
    arguments = parser.parse_args()
    main(arguments.quick, arguments.output)
