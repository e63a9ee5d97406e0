# The image of every Ray node: the pods of infra/kuberay/*.yaml and the VMs of infra/ray/cluster-aws.yaml. Ray's own
# CUDA image (its Ray = the ray pin in pyproject.toml) with gen_platform and its `worker` extra, locked by
# constraints.txt: torch as PyPI serves it (the build with its CUDA libraries), Ray Train and Tune, the MLflow
# client. No DVC, Great Expectations, Prefect or MLflow server: Ray nodes run drivers, trainings and searches, and
# the flows that need the rest run in the Prefect worker (infra/k8s/prefect.yaml). Build from the repository root,
# push to a registry the cluster pulls from, and name it in the manifests (infra/README.md):
#   docker build -f infra/docker/worker.Dockerfile -t <registry>/gen-platform-worker:0.1.0 .
# The image holds the code it was built from: rebuild it after changing gen_platform/.
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu
FROM ${RAY_IMAGE}

COPY --chown=ray:users pyproject.toml constraints.txt README.md /tmp/gen_platform/
COPY --chown=ray:users gen_platform /tmp/gen_platform/gen_platform
RUN python -m pip install --no-cache-dir --quiet --constraint /tmp/gen_platform/constraints.txt \
        "/tmp/gen_platform[worker]" \
    && rm -rf /tmp/gen_platform \
    && python -c "import gen_platform.training.loop, ray.train.torch, mlflow, torch"
