"""The short form of bench/tune_soak.py: back-to-back 8-trial searches in one Ray runtime all finish, with no
failed trial and no placement group left behind after each."""

from __future__ import annotations

import pytest

from bench.tune_soak import soak

pytestmark = pytest.mark.integration


def test_back_to_back_searches_finish_and_release_everything(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = soak(families=("vae",), searches=2, modes=("one runtime",), trials=8, epochs=2)
    for record in result["searches"]:
        assert record["failed"] == 0, record["errors"]
        assert record["finished"] + record["stopped"] == 8 and record["stopped"] >= 1
        assert record["leaked_placement_groups"] == 0 and record["startup_timeouts_in_logs"] == 0
