"""Every benchmark ends the same way: its result file written (folder created), stamped with the commit it ran
on, and the result, or the part worth reading in a terminal, printed."""

from __future__ import annotations

import json
import os
import subprocess
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


def write_result(path: Path, result: dict, shown: Any = None) -> dict:
    result = {"commit": current_commit(), **result} if "commit" not in result else result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result if shown is None else shown, indent=2), flush=True)
    return result
