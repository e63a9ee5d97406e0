"""`mlflow models serve` of the champion, on 127.0.0.1, answers (n, seed) with generated images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from gen_platform.training.loopback import free_loopback_port

from tests.integration.workspace import make_workspace, run

pytestmark = pytest.mark.integration


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_the_champion_serves_generated_images(tmp_path):
    workspace = make_workspace(tmp_path / "ws", {"train": {"epochs": 1, "num_workers": 1}})
    run(["dvc", "repro"], workspace)
    port = free_loopback_port()
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
           "MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow.db'}"}
    server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "models", "serve",
                               "-m", "models:/vae-digits@champion", "--env-manager", "local",
                               "-h", "127.0.0.1", "-p", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, server.communicate()[0]
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        status, answer = _post(base + "/invocations", {"dataframe_records": [{"n": 4, "seed": 3}]})
        assert status == 200, answer
        images = np.asarray(answer["predictions"], dtype=np.float32)
        assert images.shape == (4, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
        _, again = _post(base + "/invocations", {"dataframe_records": [{"n": 4, "seed": 3}]})
        assert np.array_equal(images, np.asarray(again["predictions"], dtype=np.float32))  # the seed decides
        status, refused = _post(base + "/invocations", {"dataframe_records": [{"n": 100000, "seed": 0}]})
        assert status == 400 and "n: 100000 is outside" in json.dumps(refused)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
