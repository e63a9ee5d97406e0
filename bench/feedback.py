"""Fast feedback: how long a new user waits, on a fresh clone of the committed HEAD.

1. `make run` in a fresh clone (a new virtual environment, every package installed, the whole DVC pipeline), and
   what its champion looks like: the precision and recall of its samples (metrics/evaluate.json: the default
   evaluation, in the domain classifier's features, against the training digits);
2. then, set-up done, `dvc repro -f --no-run-cache` (the whole default pipeline again), with the seconds of
   each stage taken from the time its "Running stage" line appeared; once with a local Ray runtime of its own
   (started and stopped by the train stage), once attached to a running Ray head (`stack.py up ray` in the
   clone, as a user with the stack up works), the local one first in even rounds and last in odd ones;
3. the fixed costs behind those stages, each its own process in the clone (FLOORS): what every `genp` stage pays
   before any work (the CLI, with torch), what train, evaluate and register add for MLflow's store, validate
   for Great Expectations, and train for starting and stopping its local Ray runtime. `pipeline_floor_seconds`
   adds them up as the six stages pay them: the part of `dvc repro` no faster stage code can remove.
4. the train stage of each forced repro split into phases at the lines it prints (`_train_phases`): before Ray
   Train, Ray Train's start-up to the first epoch, the epochs, and what follows them.

    python -m bench.feedback     # writes bench/results/feedback.json (about 20 minutes on 2 cores)
    python -m bench.feedback --quick --output /tmp/feedback.json   # smoke run (about 2 minutes): one round, the
                                 # local forced repro only (no Ray head), each fixed cost measured once

Both steps run `ROUNDS` times, each round in a new clone; the verdicts use the median over rounds, with every
round's time beside it (this machine's speed varies by tens of percent between runs).
Targets (issues 14 and 32): `make run` ≤ 150 s, `dvc repro -f` ≤ 30 s, and the champion `make run` registers
with precision ≥ 0.6 and recall ≥ 0.3 (the default job's model looks like its data; every seed is fixed, so the
rounds repeat one training). Run it on an idle machine: the times are wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from bench._results import add_quick_arguments, output_path, write_result
from bench._stack_client import local_stack

RESULT = Path(__file__).parent / "results" / "feedback.json"
REPO = Path(__file__).resolve().parents[1]
ROUNDS = 2
TARGETS = {"make_run": 150, "dvc_repro_forced": 30}
CHAMPION_TARGETS = {"precision": 0.6, "recall": 0.3}  # at least
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


# Lines the train stage prints, in order: where its phases meet.
TRAIN_MARKS = {"started_training": "training on Ray Train", "first_epoch": " epoch 1/", "after_training": "after training:"}


def _train_phases(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """The train stage of one `dvc repro` split at TRAIN_MARKS: `before_ray_train` (the CLI process, imports, a
    local Ray runtime where there is one, the MLflow run), `ray_train_startup` (Ray Train's controller and worker
    processes up to the first epoch's report), `epochs` (the first epoch's report to the last one's),
    `after_training` (the checkpoint read back, the latent prior's fit, the logs, until the next stage starts)."""
    start = next(at for at, line in lines if line.startswith("Running stage 'train'"))
    stage = [(at, line) for at, line in lines if at >= start]
    end = next((at for at, line in stage[1:] if line.startswith("Running stage")), total)
    marks = {name: next(at for at, line in stage if text in line) for name, text in TRAIN_MARKS.items()}
    last_epoch = max(at for at, line in stage if " epoch " in line and at <= marks["after_training"])
    return {name: round(seconds, 1) for name, seconds in (
        ("before_ray_train", marks["started_training"] - start),
        ("ray_train_startup", marks["first_epoch"] - marks["started_training"]),
        ("epochs", last_epoch - marks["first_epoch"]), ("after_training", end - last_epoch))}


def _floors(clone: Path, repeats: int = FLOOR_REPEATS) -> dict[str, float]:
    """Median seconds of each FLOORS process, the processes interleaved; then the pipeline's sum: six stages
    start the CLI, three of them MLflow's store, one Great Expectations, one a Ray runtime."""
    python = str(clone / ".venv" / "bin" / "python")
    seconds: dict[str, list[float]] = {name: [] for name in FLOORS}
    for _ in range(repeats):
        for name, code in FLOORS.items():
            seconds[name].append(timed([python, "-c", code], clone)[0])
    floor = {name: statistics.median(values) for name, values in seconds.items()}
    extra = {name: floor[f"cli_{name}"] - floor["cli"]
             for name in ("mlflow_store", "great_expectations", "ray_runtime")}
    pipeline = 6 * floor["cli"] + 3 * extra["mlflow_store"] + extra["great_expectations"] + extra["ray_runtime"]
    return {**{name: round(value, 2) for name, value in floor.items()}, "pipeline_floor_seconds": round(pipeline, 1)}


class Round(NamedTuple):
    make_run: float
    repro: float
    stages: dict[str, float]
    floors: dict[str, float]
    champion: dict[str, float]
    attached: float | None  # None: not measured (a quick round)
    attached_stages: dict[str, float] | None
    train_phases: dict[str, dict[str, float]]  # "local" and, where measured, "attached"


def _forced_repro(clone: Path, attached: bool) -> tuple[float, list[tuple[float, str]]]:
    """`dvc repro -f` with a Ray runtime of its own, or attached to a Ray head started for it in the clone."""
    command = ["dvc", "repro", "-f", "--no-run-cache"]
    if not attached:
        return timed(command, clone)
    with local_stack(clone, clone / ".stack", services=("ray",), python=str(clone / ".venv" / "bin" / "python")
                     ) as stack:
        return timed(command, clone, **stack["client_env"])


def _round(index: int, quick: bool = False) -> Round:
    """One round in a new clone; the two forced repros in alternating order (local first on even rounds). Quick:
    the local one only, each fixed cost once."""
    with tempfile.TemporaryDirectory(prefix="genp-feedback-") as directory:
        clone = Path(directory) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        make_run, _ = timed(["make", "run"], clone)
        evaluation = json.loads((clone / "metrics" / "evaluate.json").read_text())
        champion = {name: evaluation[name] for name in CHAMPION_TARGETS}
        order = ((False,),) if quick else ((False, True), (True, False))
        repros = {attached: _forced_repro(clone, attached) for attached in order[index % len(order)]}
        floors = _floors(clone, 1 if quick else FLOOR_REPEATS)
    repro, lines = repros[False]
    phases = {"local": _train_phases(lines, repro)}
    attached = attached_stages = None
    if True in repros:
        attached, attached_lines = repros[True]
        attached_stages, phases["attached"] = _stage_seconds(attached_lines, attached), _train_phases(attached_lines,
                                                                                                       attached)
    return Round(make_run, repro, _stage_seconds(lines, repro), floors, champion, attached, attached_stages, phases)


def summary(seconds: list[float], target: float) -> dict:
    median = statistics.median(seconds)
    return {"seconds_per_round": [round(s, 1) for s in seconds], "median_seconds": round(median, 1),
            "min": round(min(seconds), 1), "max": round(max(seconds), 1), "target_seconds": target,
            "met": median <= target, "verdict_statistic": "median over rounds"}


def champion_summary(rounds: list[dict[str, float]]) -> dict:
    medians = {name: statistics.median(r[name] for r in rounds) for name in CHAMPION_TARGETS}
    return {"per_round": rounds, "median": medians, "targets_at_least": CHAMPION_TARGETS,
            "met": all(medians[name] >= target for name, target in CHAMPION_TARGETS.items()),
            "verdict_statistic": "median over rounds"}


def main(quick: bool = False, output: Path | None = None) -> dict:
    output = output_path(RESULT, quick, output)
    rounds = [_round(index, quick) for index in range(1 if quick else ROUNDS)]
    stages = {name: round(statistics.median(r.stages[name] for r in rounds), 1) for name in rounds[0].stages}
    result = {"benchmark": "feedback", "quick": quick, "cpus": os.cpu_count(), "rounds": len(rounds),
              "make_run_fresh_clone": summary([r.make_run for r in rounds], TARGETS["make_run"]),
              "make_run_champion": champion_summary([r.champion for r in rounds]),
              "dvc_repro_forced": summary([r.repro for r in rounds], TARGETS["dvc_repro_forced"]),
              "dvc_repro_stage_seconds_median": stages,
              "dvc_repro_stage_seconds_per_round": [r.stages for r in rounds],
              "train_stage_phases_per_round": [r.train_phases for r in rounds],
              "fixed_cost_seconds_per_round": [r.floors for r in rounds],
              "fixed_cost_statistic": f"median of {1 if quick else FLOOR_REPEATS} interleaved processes per round"}
    if not quick:
        result |= {"dvc_repro_forced_attached_to_ray_head": summary([r.attached for r in rounds],
                                                                    TARGETS["dvc_repro_forced"]),
                   "dvc_repro_attached_stage_seconds_per_round": [r.attached_stages for r in rounds]}
    return write_result(output, result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_arguments(parser, RESULT, "one round, the local forced repro only, each fixed cost once")
    arguments = parser.parse_args()
    main(arguments.quick, arguments.output)
