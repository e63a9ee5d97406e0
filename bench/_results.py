"""Every benchmark ends the same way: its result file written (folder created) and the result, or the part
worth reading in a terminal, printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_result(path: Path, result: dict, shown: Any = None) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result if shown is None else shown, indent=2), flush=True)
    return result
