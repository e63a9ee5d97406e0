"""The gate in front of everything that trains: the current prepared data passed validation, unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from gen_platform.errors import ValidationFailed
from gen_platform.workspace import Workspace, read_json, write_json


def fingerprint(paths: list[Path]) -> str:
    digest = hashlib.md5()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def record_verdict(ws: Workspace, summary: dict[str, Any]) -> dict[str, Any]:
    """Write the suite's summary with the fingerprint of the data it judged."""
    verdict = summary | {"data_fingerprint": fingerprint(ws.prepared_files)}
    write_json(ws.metrics("validation"), verdict)
    return verdict


def require_valid_data(ws: Workspace) -> dict[str, Any]:
    """Nothing trains on data that did not pass validation in its current form."""
    verdict = read_json(ws.metrics("validation"), "genp validate")
    if not verdict.get("success"):
        raise ValidationFailed(f"{ws.metrics('validation')}: the prepared data failed validation; fix the data first")
    if verdict.get("data_fingerprint") != fingerprint(ws.prepared_files):
        raise ValidationFailed("data/prepared changed since it was validated; run `genp validate` again")
    return verdict
