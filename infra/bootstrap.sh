#!/usr/bin/env bash
# Make a stock container ready to run the whole platform: install the project with its `worker` and `pipeline`
# extras (Ray, torch, the MLflow client; DVC, Great Expectations, Prefect), its dependency tree locked by
# constraints.txt, from a checkout of this repository. Runs before the Prefect worker (infra/k8s/prefect.yaml),
# which runs the flows. Ray nodes run the worker image instead (infra/docker/worker.Dockerfile), which holds
# the `worker` extra only.
#
#   GEN_PLATFORM_WORKSPACE  the checkout (default: /mnt/workspace, the shared volume of infra/k8s/base.yaml)
#   GEN_PLATFORM_PIP        the pip command (default: python -m pip)
set -euo pipefail

workspace="${GEN_PLATFORM_WORKSPACE:-/mnt/workspace}"
pip_cmd="${GEN_PLATFORM_PIP:-python -m pip}"

for file in pyproject.toml constraints.txt gen_platform/__init__.py; do
  if [[ ! -f "$workspace/$file" ]]; then
    echo "bootstrap: $workspace/$file is missing: copy the repository to $workspace first (infra/README.md)" >&2
    exit 1
  fi
done

# Build from a private copy: the workspace is shared by every pod (pip builds in the source tree).
build="$(mktemp -d)"
mkdir "$build/src"
cp -R "$workspace/pyproject.toml" "$workspace/gen_platform" "$build/src/"
if [[ -f "$workspace/README.md" ]]; then cp "$workspace/README.md" "$build/src/"; fi

# constraints.txt pins torch as PyPI serves it: on a cluster node that is the build which carries CUDA (a
# laptop's `make setup` takes a local CPU wheel of the same version where pip's find-links hold one).
$pip_cmd install --no-cache-dir --quiet --constraint "$workspace/constraints.txt" "$build/src[worker,pipeline]"
echo "bootstrap: gen_platform installed from $workspace"
