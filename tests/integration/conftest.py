from __future__ import annotations

from typing import Iterator

import pytest

from bench._stack_client import local_stack
from tests.conftest import REPO


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A Ray head on loopback for this test process, started as a user starts one (`stack.py up ray`, token
    authentication included), and the environment that attaches a `genp` or `dvc repro` subprocess to it. Without
    it each training or search subprocess starts and stops a runtime of its own: about 7 s of a 2-epoch digits
    training. Tests of what dies with a driver keep the local runtime, which dies with it."""
    with local_stack(REPO, tmp_path_factory.mktemp("ray-head") / ".stack", services=("ray",)) as stack:
        yield stack["client_env"]
