"""Every benchmark ends the same way: its result file written (folder created), stamped with the commit it ran
on and the machine and library versions it ran with, and the result, or the part worth reading in a terminal,
printed."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any


def current_commit() -> str:
    """HEAD, marked `-dirty` when tracked files differ from it; GENP_COMMIT where the tree travelled without its
    git history (a GPU machine)."""
    if os.environ.get("GENP_COMMIT"):
        return os.environ["GENP_COMMIT"]
    root = Path(__file__).parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    if not head:
        return "unknown"
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ".", ":!bench/results"], cwd=root).returncode
    return head + ("-dirty" if dirty else "")


# The packages whose versions move the numbers: the compute (torch, numpy), the platform's parts, the references.
LIBRARIES = ("torch", "numpy", "ray", "mlflow", "prefect", "dvc", "great_expectations", "pythae", "clean-fid")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None  # not installed where this benchmark ran (pythae outside `make bench`)


def environment() -> dict:
    """What a reading depends on besides the code: CPU model and cores (the CPUs this process may use), GPU,
    Python and the library versions."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"machine": {"cpu": _cpu_model(), "cores": cores, "gpu": gpu, "platform": platform.platform()},
            "python": platform.python_version(), "libraries": {name: _version(name) for name in LIBRARIES}}


# Read when the benchmark starts, not when it writes: the code that ran is the code of this moment, whatever is
# committed or edited while it runs.
COMMIT_AT_START = current_commit()


def write_result(path: Path, result: dict, shown: Any = None) -> dict:
    stamp = {"commit": COMMIT_AT_START, "environment": environment()}
    result = stamp | result  # a result measured elsewhere (a GPU machine) brings its own stamp
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result if shown is None else shown, indent=2), flush=True)
    return result


def output_path(committed: Path, quick: bool, output: Path | None) -> Path:
    """Where a run writes: `output`, else the committed result file, or for a quick run (a small real case, as
    `make test` runs it) the temp directory. A quick run never overwrites the committed result."""
    chosen = output or (Path(tempfile.gettempdir()) / f"{committed.stem}_quick.json" if quick else committed)
    if quick and chosen.resolve() == committed.resolve():
        raise SystemExit(f"a quick run does not overwrite {committed}")
    return chosen


def add_quick_arguments(parser: argparse.ArgumentParser, committed: Path, quick_run: str) -> None:
    """The options every benchmark with a quick mode takes: `--quick` (or GENP_BENCH_QUICK=1) and `--output`."""
    parser.add_argument("--quick", action="store_true", default=os.environ.get("GENP_BENCH_QUICK") == "1",
                        help=f"smoke run: {quick_run} (or GENP_BENCH_QUICK=1)")
    parser.add_argument("--output", type=Path, help=f"default {committed} (quick: the temp directory)")
