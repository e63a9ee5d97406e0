"""Fast feedback: how long a new user waits, on a fresh clone of the committed HEAD.

1. `make run` in a fresh clone (a new virtual environment, every package installed, the whole DVC pipeline);
2. then, set-up done, `dvc repro -f --no-run-cache` (the whole default pipeline again), with the seconds of
   each stage taken from the time its "Running stage" line appeared.

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


def _round() -> tuple[float, float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="genp-feedback-") as directory:
        clone = Path(directory) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        make_run, _ = timed(["make", "run"], clone)
        repro, lines = timed(["dvc", "repro", "-f", "--no-run-cache"], clone)
    return make_run, repro, _stage_seconds(lines, repro)


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
              "dvc_repro_stage_seconds_per_round": [r[2] for r in rounds]}
    write_result(RESULT, result)


if __name__ == "__main__":
    main()
