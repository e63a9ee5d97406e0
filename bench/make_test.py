"""`make test` on a fresh clone of the committed HEAD, exactly as CI runs it (`CI=true bash .ci/run`): a new
virtual environment, every package installed, then the whole suite (unit and integration tiers). Then, in
another fresh clone, the order a new user follows: `make run`, then `make test` (the two commands must compose:
the suite passes beside what `make run` left in the working tree).

    python -m bench.make_test     # writes bench/results/make_test.json (about 13 minutes per round on 2 cores, two rounds)
    python -m bench.make_test --quick --output /tmp/make_test.json   # smoke run: the fresh-clone round with the
                                  # suite narrowed to QUICK_TESTS (the set-up is whole), no `make run` round

`ROUNDS` rounds of each kind, each in a new clone; the verdict uses the median of the CI rounds, with every round
beside it. Each round also records pytest's own time and test count (from its summary line) and the set-up, the
rest of the wall time (after `make run` the set-up is already done), and the fresh-clone round where the CPU went
(`bench._cpu_share.CpuLedger`: CPU seconds per process name, and per kind of process): on 2 cores the suite is
CPU-bound, so this says which work a shorter `make test` has to remove. Target (issue 34): under 10 minutes on 2
cores, 8 as the aim. Run it on an idle machine: it is a wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench._cpu_share import CpuLedger
from bench._results import add_quick_arguments, output_path, write_result
from bench.feedback import REPO, summary, timed

RESULT = Path(__file__).parent / "results" / "make_test.json"
ROUNDS = 1
TARGET_SECONDS = 600
AIM_SECONDS = 480
QUICK_TESTS = "tests/unit/test_stack_load.py"  # a few constructed cases: the quick round times the set-up
SUMMARY_LINE = re.compile(r"=+ (\d+) passed.* in ([\d.]+)s")
# Kinds of process, by the names `bench._cpu_share.process_name` gives them; the first kind that matches counts.
RAY_DAEMONS = {"raylet", "gcs_server", "log_monitor.py", "dashboard.py", "agent.py", "monitor.py", "main.py",
               "runtime_env_agent", "ray"}
PROCESS_KINDS = (
    ("Ray actor processes (Train controllers, workers, sync actors; Tune trials)",
     lambda name: name.startswith("ray::") or name in {"setup_worker.py", "default_worker.py"}),
    ("Ray runtime daemons (GCS, raylet, dashboard and its modules, agents, log monitor)",
     lambda name: name in RAY_DAEMONS or name.startswith("ray-dashboard-")),
    ("pytest's workers (unit tests; flows, benchmarks and clients run in-process)", lambda name: name == "python -c"),
    ("pipeline stages and CLIs (genp, dvc, mlflow, prefect commands)",
     lambda name: name in {"genp", "dvc", "mlflow", "prefect", "models:/vae-digits@champion"}),
    ("Prefect flow runs (serve's subprocesses) and the stacks' servers",
     lambda name: name.startswith(("prefect.", "flows.", "uvicorn", "gunicorn", "infra.")) or name == "stack.py"),
    ("set-up (pip, uv, byte-compiling)", lambda name: name in {"pip", "uv", "pip_compileall.py", "ensurepip", "venv"}),
)


def cpu_by_kind(totals: dict[str, list[float]]) -> dict[str, float]:
    """CPU seconds per kind of process (PROCESS_KINDS, then "other"), from a ledger's totals, largest first."""
    kinds: dict[str, float] = {}
    for name, (seconds, _) in totals.items():
        kind = next((kind for kind, matches in PROCESS_KINDS if matches(name)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    return {kind: round(seconds, 1) for kind, seconds in sorted(kinds.items(), key=lambda item: -item[1])}


def pytest_summary(lines: list[str]) -> tuple[int, float]:
    """Tests passed and pytest's seconds, from its last summary line ("== 341 passed, 1 warning in 548.81s ==")."""
    for line in reversed(lines):
        if match := SUMMARY_LINE.search(line):
            return int(match.group(1)), float(match.group(2))
    raise SystemExit("no pytest summary line in the output of `make test`")


def _round(after_make_run: bool, quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="genp-make-test-") as directory:
        clone = Path(directory) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        if after_make_run:
            timed(["make", "run"], clone)
        with CpuLedger() as ledger:  # pytest takes test paths from PYTEST_ADDOPTS: the whole suite, or the quick one
            total, lines = timed(["bash", ".ci/run"], clone, CI="true", PYTEST_ADDOPTS=QUICK_TESTS if quick else "")
    passed, pytest_seconds = pytest_summary([line for _, line in lines])
    cpu_seconds = sum(seconds for seconds, _ in ledger.totals.values())
    cores = os.cpu_count() or 1
    return {"total_seconds": round(total, 1), "pytest_seconds": pytest_seconds,
            "setup_seconds": round(total - pytest_seconds, 1), "tests_passed": passed,
            "cpu": {"seconds": round(cpu_seconds, 1), "cores": cores,
                    "share_of_all_cores": round(cpu_seconds / (cores * ledger.wall_seconds), 3),
                    "by_kind": cpu_by_kind(ledger.totals),
                    "by_process_name": {name: {"seconds": seconds, "processes": count}
                                        for name, (seconds, count) in list(ledger.totals.items())[:20]}}}


def main(quick: bool = False, output: Path | None = None) -> dict:
    output = output_path(RESULT, quick, output)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    rounds = [_round(after_make_run=False, quick=quick) for _ in range(ROUNDS)]
    user_rounds = [] if quick else [_round(after_make_run=True) for _ in range(ROUNDS)]
    result = {"benchmark": "make_test", "quick": quick, "commit": commit, "cpus": os.cpu_count(), "rounds": ROUNDS,
              "command": "CI=true bash .ci/run (= make test) in a fresh clone"
                         + (f", pytest narrowed to {QUICK_TESTS}" if quick else ""),
              "make_test_fresh_clone": summary([r["total_seconds"] for r in rounds], TARGET_SECONDS)
              | {"aim_seconds": AIM_SECONDS, "aim_met": statistics.median(r["total_seconds"] for r in rounds)
                 <= AIM_SECONDS},
              "pytest_seconds_median": round(statistics.median(r["pytest_seconds"] for r in rounds), 1),
              "setup_seconds_median": round(statistics.median(r["setup_seconds"] for r in rounds), 1),
              "per_round": rounds,
              "after_make_run": {"command": "make run, then CI=true bash .ci/run, in one fresh clone",
                                 "per_round": user_rounds}}  # a failed round aborts the run
    return write_result(output, result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_arguments(parser, RESULT, f"the fresh-clone round, pytest narrowed to {QUICK_TESTS}")
    arguments = parser.parse_args()
    main(arguments.quick, arguments.output)
