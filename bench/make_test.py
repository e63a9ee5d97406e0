"""`make test` on a fresh clone of the committed HEAD, exactly as CI runs it (`CI=true bash .ci/run`): a new
virtual environment, every package installed, then the whole suite (unit and integration tiers).

    python -m bench.make_test     # writes bench/results/make_test.json (about 10 minutes per round on 2 cores)

`ROUNDS` rounds, each in a new clone; the verdict uses the median over rounds, with every round beside it. Each
round also records pytest's own time and test count (from its summary line) and the set-up, the rest of the wall
time. Target (issue 14): ≤ 10 minutes on 2 cores. Run it on an idle machine: it is a wall time.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench._results import write_result
from bench.feedback import REPO, summary, timed

RESULT = Path(__file__).parent / "results" / "make_test.json"
ROUNDS = 2
TARGET_SECONDS = 600
SUMMARY_LINE = re.compile(r"=+ (\d+) passed.* in ([\d.]+)s")


def pytest_summary(lines: list[str]) -> tuple[int, float]:
    """Tests passed and pytest's seconds, from its last summary line ("== 341 passed, 1 warning in 548.81s ==")."""
    for line in reversed(lines):
        if match := SUMMARY_LINE.search(line):
            return int(match.group(1)), float(match.group(2))
    raise SystemExit("no pytest summary line in the output of `make test`")


def _round() -> dict:
    with tempfile.TemporaryDirectory(prefix="genp-make-test-") as directory:
        clone = Path(directory) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        total, lines = timed(["bash", ".ci/run"], clone, CI="true")
    passed, pytest_seconds = pytest_summary([line for _, line in lines])
    return {"total_seconds": round(total, 1), "pytest_seconds": pytest_seconds,
            "setup_seconds": round(total - pytest_seconds, 1), "tests_passed": passed}


def main() -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    rounds = [_round() for _ in range(ROUNDS)]
    result = {"benchmark": "make_test", "commit": commit, "cpus": os.cpu_count(), "rounds": ROUNDS,
              "command": "CI=true bash .ci/run (= make test) in a fresh clone",
              "make_test_fresh_clone": summary([r["total_seconds"] for r in rounds], TARGET_SECONDS),
              "pytest_seconds_median": round(statistics.median(r["pytest_seconds"] for r in rounds), 1),
              "setup_seconds_median": round(statistics.median(r["setup_seconds"] for r in rounds), 1),
              "per_round": rounds}
    write_result(RESULT, result)


if __name__ == "__main__":
    main()
