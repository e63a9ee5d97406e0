"""Fast feedback: how long a new user waits, on a fresh clone of the committed HEAD.

1. `make run` in a fresh clone (a new virtual environment, every package installed, the whole DVC pipeline);
2. then, set-up done, `dvc repro -f --no-run-cache` (the whole default pipeline again), with the seconds of
   each stage taken from the time its "Running stage" line appeared;
3. the fixed costs behind those stages, each its own process in the clone (FLOORS): what every `genp` stage pays
   before any work (the CLI, with torch), what train, evaluate and register add for MLflow's store, validate
   for Great Expectations, and train for starting and stopping its local Ray runtime. `pipeline_floor_seconds`
   adds them up as the six stages pay them: the part of `dvc repro` no faster stage code can remove.

    python -m bench.feedback     # writes bench/results/feedback.json (about 13 minutes on 2 cores)

Both steps run `ROUNDS` times, each round in a new clone; the verdicts use the median over rounds, with every
round's time beside it (this machine's speed varies by tens of percent between runs).
Targets (issue 14): `make run` ≤ 150 s, `dvc repro -f` ≤ 30 s. Run it on an idle machine: both are wall times.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench._results import write_result

RESULT = Path(__file__).parent / "results" / "feedback.json"
REPO = Path(__file__).resolve().parents[1]
ROUNDS = 2
TARGETS = {"make_run": 150, "dvc_repro_forced": 30}
# Each a whole process: interpreter start, imports, and (Ray) a local runtime started and stopped at exit; each
# leaves as a `genp` command does (gen_platform/quick_exit.py).
CLI = "import gen_platform.cli; gen_platform.cli.quick_exit.set_status(0)"
FLOORS = {
    "python": "pass",
    "cli": CLI,
    "cli_mlflow_store": f"{CLI}; import gen_platform.tracking.runs, mlflow.store.tracking.sqlalchemy_store",
    "cli_great_expectations": f"{CLI}; import great_expectations",
    "cli_ray_runtime": f"{CLI}; from gen_platform.training.runtime import ensure_ray; ensure_ray(state_api=False)",
}
FLOOR_REPEATS = 3


def timed(command: list[str], cwd: Path, **extra_env: str) -> tuple[float, list[tuple[float, str]]]:
    """Wall seconds of `command` and its output lines, each with the second it appeared."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"}}
    env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env.update(extra_env)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [(time.perf_counter() - started, line.rstrip()) for line in process.stdout]
    if process.wait() != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n" + "\n".join(line for _, line in lines[-40:]))
    return time.perf_counter() - started, lines


def _stage_seconds(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    starts = [(at, line.split("'")[1]) for at, line in lines if line.startswith("Running stage")]
    ends = [at for at, _ in starts[1:]] + [total]
    return {name: round(end - at, 1) for (at, name), end in zip(starts, ends)}


def _floors(clone: Path) -> dict[str, float]:
    """Median seconds of each FLOORS process, the processes interleaved; then the pipeline's sum: six stages
    start the CLI, three of them MLflow's store, one Great Expectations, one a Ray runtime."""
    python = str(clone / ".venv" / "bin" / "python")
    seconds: dict[str, list[float]] = {name: [] for name in FLOORS}
    for _ in range(FLOOR_REPEATS):
        for name, code in FLOORS.items():
            seconds[name].append(timed([python, "-c", code], clone)[0])
    floor = {name: statistics.median(values) for name, values in seconds.items()}
    extra = {name: floor[f"cli_{name}"] - floor["cli"]
             for name in ("mlflow_store", "great_expectations", "ray_runtime")}
    pipeline = 6 * floor["cli"] + 3 * extra["mlflow_store"] + extra["great_expectations"] + extra["ray_runtime"]
    return {**{name: round(value, 2) for name, value in floor.items()}, "pipeline_floor_seconds": round(pipeline, 1)}


def _round() -> tuple[float, float, dict[str, float], dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="genp-feedback-") as directory:
        clone = Path(directory) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        make_run, _ = timed(["make", "run"], clone)
        repro, lines = timed(["dvc", "repro", "-f", "--no-run-cache"], clone)
        floors = _floors(clone)
    return make_run, repro, _stage_seconds(lines, repro), floors


def summary(seconds: list[float], target: float) -> dict:
    median = statistics.median(seconds)
    return {"seconds_per_round": [round(s, 1) for s in seconds], "median_seconds": round(median, 1),
            "min": round(min(seconds), 1), "max": round(max(seconds), 1), "target_seconds": target,
            "met": median <= target, "verdict_statistic": "median over rounds"}


def main() -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    rounds = [_round() for _ in range(ROUNDS)]
    stages = {name: round(statistics.median(r[2][name] for r in rounds), 1) for name in rounds[0][2]}
    result = {"benchmark": "feedback", "commit": commit, "cpus": os.cpu_count(), "rounds": ROUNDS,
              "make_run_fresh_clone": summary([r[0] for r in rounds], TARGETS["make_run"]),
              "dvc_repro_forced": summary([r[1] for r in rounds], TARGETS["dvc_repro_forced"]),
              "dvc_repro_stage_seconds_median": stages,
              "dvc_repro_stage_seconds_per_round": [r[2] for r in rounds],
              "fixed_cost_seconds_per_round": [r[3] for r in rounds],
              "fixed_cost_statistic": f"median of {FLOOR_REPEATS} interleaved processes per round"}
    write_result(RESULT, result)


if __name__ == "__main__":
    main()
