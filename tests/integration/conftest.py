from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from bench._stack_client import local_stack
from gen_platform.training.loopback import free_loopback_port
from tests.conftest import REPO


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A Ray head on loopback for this test process, started as a user starts one (`stack.py up ray`, token
    authentication included), and the environment that attaches a `genp` or `dvc repro` subprocess to it. Without
    it each training or search subprocess starts and stops a runtime of its own: about 7 s of a 2-epoch digits
    training. Tests of what dies with a driver keep the local runtime, which dies with it."""
    with local_stack(REPO, tmp_path_factory.mktemp("ray-head") / ".stack", services=("ray",)) as stack:
        yield stack["client_env"]


@pytest.fixture(scope="session")
def s3_store() -> Iterator[dict[str, str]]:
    """An S3-compatible object store on loopback for this test process (moto's server stands in for S3 or MinIO)
    and the standard AWS variables that point every client at it: boto3, DVC's S3 remote, and the pyarrow
    filesystem with which Ray's workers write checkpoints. Tests make a bucket of their own (`make_bucket`)."""
    port = free_loopback_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def make_bucket(env: dict[str, str], name: str) -> Any:
    """A new bucket in the `s3_store`; returns a boto3 client of it."""
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket=name)
    return client


def keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
