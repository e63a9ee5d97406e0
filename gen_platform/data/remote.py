"""Where data versions come from when they are not in the local DVC cache: the repository's own default remote
(`.dvc/config`), unless GENP_DVC_REMOTE names one for every run in this environment. A cluster's manifests set it
(an `s3://` bucket): its pods cannot reach the local remote of the machine that made the workspace.

S3 credentials and the endpoint of an S3-compatible store come from the standard AWS variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL) or the pod's role, as for every other AWS client, so
that no secret is written into a DVC config file."""

from __future__ import annotations

import os

DVC_REMOTE = "GENP_DVC_REMOTE"
REMOTE_NAME = "genp-environment"


def dvc_remote_config() -> dict | None:
    """DVC config that makes GENP_DVC_REMOTE the default remote; None where it is not set."""
    url = os.environ.get(DVC_REMOTE, "").strip()
    if not url:
        return None
    return {"core": {"remote": REMOTE_NAME}, "remote": {REMOTE_NAME: {"url": url}}}
