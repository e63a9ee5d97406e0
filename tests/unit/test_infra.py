"""Cluster deployment files (infra/): valid for the tools that read them, secret-free, pinned, consistent.

Kubernetes manifests are checked against the Kubernetes OpenAPI schemas bundled in kubernetes-validate
(strict: unknown fields fail); KubeRay's RayCluster/RayJob against tests/unit/schemas/kuberay-v1.schema.json
(derived from the KubeRay v1 CRD, see its description), their pod templates against core/v1, and the RayCluster
with the parser Ray's autoscaler runs on it; the AWS cluster config with Ray's own `ray up` validation.
All offline, in about a second.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
KUBERAY_SCHEMA = Path(__file__).resolve().parent / "schemas" / "kuberay-v1.schema.json"
# The oldest and newest Kubernetes minor this project supports; both are bundled by kubernetes-validate 1.37.
K8S_VERSIONS = ("1.31.0", "1.37.0")
NAMESPACE = "gen-platform"
TRAIN_COMMAND = "genp train --set train.use_gpu=true --set train.num_workers=4 --set train.storage_path=/mnt/checkpoints"
WORKSPACE, CHECKPOINTS = "/mnt/workspace", "/mnt/checkpoints"


# --- loading -------------------------------------------------------------------------------------------------

def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


K8S_FILES = sorted((INFRA / "k8s").glob("*.yaml"))
KUBERAY_FILES = sorted((INFRA / "kuberay").glob("*.yaml"))
AWS_CONFIG = INFRA / "ray" / "cluster-aws.yaml"
DOCS = [(path, doc) for path in K8S_FILES + KUBERAY_FILES for doc in _documents(path)]
K8S_DOCS = [(path, doc) for path, doc in DOCS if not doc["apiVersion"].startswith("ray.io/")]
KUBERAY_DOCS = [(path, doc) for path, doc in DOCS if doc["apiVersion"].startswith("ray.io/")]


def _id(item: tuple[Path, dict]) -> str:
    path, doc = item
    return f"{path.relative_to(INFRA)}:{doc['kind']}/{doc['metadata']['name']}"


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for _, doc in DOCS if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return copy.deepcopy(found[0])


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
WORKER_IMAGE = f"gen-platform-worker:{PROJECT['version']}"  # infra/docker/worker.Dockerfile, as the manifests name it


def _pyproject_pins() -> dict[str, str]:
    """The pins of the dependencies and of every extra."""
    pins = {}
    for requirement in PROJECT["dependencies"] + sum(PROJECT["optional-dependencies"].values(), []):
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^;\s]+)", requirement.strip())
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) for every pod a manifest (or RayCluster / RayJob) creates."""
    spec = doc.get("spec", {})
    if doc["kind"] == "Pod":
        yield "spec", spec
    if "template" in spec:  # Deployment, StatefulSet, Job, ...
        yield "spec.template.spec", spec["template"]["spec"]
    cluster = spec.get("rayClusterSpec", spec) if doc["kind"] in {"RayCluster", "RayJob"} else None
    if cluster:
        if "headGroupSpec" in cluster:
            yield "headGroupSpec", cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster.get("workerGroupSpecs", []):
            yield f"workerGroupSpecs[{group['groupName']}]", group["template"]["spec"]
    if "submitterPodTemplate" in spec:
        yield "submitterPodTemplate", spec["submitterPodTemplate"]["spec"]


def containers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, container, its pod spec) for every container of every pod of a manifest."""
    for where, pod in pod_specs(doc):
        for field in ("initContainers", "containers", "ephemeralContainers"):
            for container in pod.get(field, []):
                yield f"{where}.{container['name']}", container, pod


def env_value(container: dict[str, Any], name: str) -> str | None:
    return next((e.get("value") for e in container.get("env", []) if e["name"] == name), None)


# --- Kubernetes schemas (kubernetes-validate) ------------------------------------------------------------------

def test_kubernetes_validate_bundles_the_versions_we_check() -> None:
    # validate() silently falls back to the newest bundled version below the one asked for: insist on exact ones.
    bundled = set(all_versions())
    assert set(K8S_VERSIONS) <= bundled, f"kubernetes-validate bundles {sorted(bundled)}"


def test_every_manifest_file_is_covered() -> None:
    assert {p.name for p in K8S_FILES} >= {"base.yaml", "mlflow.yaml", "prefect.yaml"}
    assert {p.name for p in KUBERAY_FILES} == {"raycluster.yaml", "rayjob.yaml"}
    assert {doc["kind"] for _, doc in KUBERAY_DOCS} == {"RayCluster", "RayJob"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("item", K8S_DOCS, ids=_id)
def test_kubernetes_manifest_is_valid(item: tuple[Path, dict], version: str) -> None:
    _, doc = item
    # Raises SchemaNotFoundError for a kind/apiVersion that this Kubernetes version does not serve.
    kubernetes_validate.validate(doc, version, strict=True)


def _pod_template(template: dict[str, Any]) -> dict[str, Any]:
    """A core/v1 PodTemplate object around a pod template (metadata and spec), for kubernetes-validate."""
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}


def kuberay_pod_templates(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = doc["spec"]
    cluster = spec.get("rayClusterSpec", spec)
    yield "headGroupSpec", cluster["headGroupSpec"]["template"]
    for group in cluster.get("workerGroupSpecs", []):
        yield f"workerGroupSpecs[{group['groupName']}]", group["template"]
    if "submitterPodTemplate" in spec:
        yield "submitterPodTemplate", spec["submitterPodTemplate"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("item", KUBERAY_DOCS, ids=_id)
def test_kuberay_pod_templates_are_valid_core_v1(item: tuple[Path, dict], version: str) -> None:
    _, doc = item
    templates = list(kuberay_pod_templates(doc))
    assert len(templates) >= 2, "a head and at least one worker group"
    for where, template in templates:
        try:
            kubernetes_validate.validate(_pod_template(template), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")


def _set(doc: dict, path: str, value: Any) -> dict:
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


@pytest.mark.parametrize(("kind", "name", "path", "value"), [
    ("Deployment", "mlflow", "spec.replicas", "1"),                                            # string, not int
    ("Deployment", "mlflow", "spec.template.spec.containers.0.ports.0.containerPort", "5000"),
    ("Deployment", "prefect-server", "spec.template.spec.containers.0.command", "prefect server start"),
    ("Deployment", "prefect-worker", "spec.template.spec.containers.0.imagePullPolicyy", "Always"),  # unknown
    ("Service", "mlflow", "spec.ports.0.port", "http"),
    ("StatefulSet", "postgres", "spec.template.spec.containers.0.env.1.value", 5),
    ("PersistentVolumeClaim", "gen-platform-checkpoints", "spec.accessModes", "ReadWriteMany"),
])
def test_kubernetes_validation_rejects_wrong_fields(kind: str, name: str, path: str, value: Any) -> None:
    broken = _set(_one(kind, name), path, value)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_pod_template_validation_rejects_a_misspelt_gpu_limit() -> None:
    template = _one("RayCluster")["spec"]["workerGroupSpecs"][0]["template"]
    resources = template["spec"]["containers"][0]["resources"]
    resources["limit"] = resources.pop("limits")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(_pod_template(template), K8S_VERSIONS[-1], strict=True)


# --- KubeRay CRDs ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kuberay_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(KUBERAY_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("item", KUBERAY_DOCS, ids=_id)
def test_kuberay_manifest_matches_crd_schema(item: tuple[Path, dict], kuberay_validator) -> None:
    _, doc = item
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in kuberay_validator.iter_errors(doc)]
    assert not errors, errors


@pytest.mark.parametrize(("kind", "path", "value"), [
    ("RayCluster", "spec.workerGroupSpecs.0.minReplicas", "0"),
    ("RayCluster", "spec.workerGroupSpecs.0.maxReplicas", -1),
    ("RayCluster", "spec.headGroupSpec.rayStartParams.num-cpus", 0),       # ray start params are strings
    ("RayCluster", "spec.enableInTreeAutoscaling", "true"),
    ("RayCluster", "spec.autoscalerOptions.upscalingMode", "Fast"),
    ("RayCluster", "spec.workerGroupSpec", []),                            # misspelt: unknown field
    ("RayCluster", "apiVersion", "ray.io/v1alpha1"),
    ("RayJob", "spec.shutdownAfterJobFinishes", "yes"),
    ("RayJob", "spec.entrypoint", ["genp", "train"]),
    ("RayJob", "spec.rayClusterSpec.workerGroupSpecs.0.template.specs", {}),
])
def test_kuberay_schema_rejects_wrong_fields(kind: str, path: str, value: Any, kuberay_validator) -> None:
    broken = _set(_one(kind), path, value)
    assert list(kuberay_validator.iter_errors(broken))


def test_kuberay_schema_rejects_missing_required_fields(kuberay_validator) -> None:
    cluster = _one("RayCluster")
    del cluster["spec"]["headGroupSpec"]
    assert list(kuberay_validator.iter_errors(cluster))
    cluster = _one("RayCluster")
    del cluster["spec"]["workerGroupSpecs"][0]["groupName"]
    assert list(kuberay_validator.iter_errors(cluster))


def _cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    cluster, job = _one("RayCluster"), _one("RayJob")
    return [("RayCluster", cluster), ("RayJob", {"metadata": job["metadata"], "spec": job["spec"]["rayClusterSpec"]})]


@pytest.mark.parametrize(("kind", "cr"), _cluster_specs(), ids=lambda v: v if isinstance(v, str) else "")
def test_ray_autoscaler_reads_the_cluster_spec(kind: str, cr: dict[str, Any]) -> None:
    # What the autoscaler sidecar of the head pod does with the RayCluster (it ends in Ray's validate_config).
    config = _derive_autoscaling_config_from_ray_cr(cr)
    gpu = config["available_node_types"]["gpu"]
    assert gpu["resources"]["GPU"] == 1 and gpu["resources"]["CPU"] >= 1
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 4
    assert config["available_node_types"]["headgroup"]["resources"]["CPU"] == 0


# --- what the Ray clusters must provide ------------------------------------------------------------------------

def test_raycluster_is_an_autoscaling_gpu_cluster() -> None:
    spec = _one("RayCluster")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {}), "the head is a CPU node"
    (group,) = spec["workerGroupSpecs"]
    worker = group["template"]["spec"]["containers"][0]
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
    assert group["minReplicas"] < group["maxReplicas"]


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_ray_pods_share_checkpoints_workspace_and_mlflow(kind: str) -> None:
    doc = _one(kind)
    mlflow_uri = _service_url("mlflow")
    for where, container, pod in containers(doc):
        if where.startswith("submitterPodTemplate"):  # not a Ray node: it only runs `ray job submit`
            continue
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: claims.get(m["name"]) for m in container.get("volumeMounts", [])}
        assert mounts.get(CHECKPOINTS) == "gen-platform-checkpoints", where
        assert mounts.get(WORKSPACE) == "gen-platform-workspace", where
        assert env_value(container, "MLFLOW_TRACKING_URI") == mlflow_uri, where
        # checkpoints go to the shared volume, writable here, whatever a run's params say (the workspace is
        # read-only on GPU workers)
        assert env_value(container, "GENP_STORAGE_PATH") == CHECKPOINTS, where
        assert not any(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] == CHECKPOINTS), where
        # the worker image holds gen_platform: nothing is installed at start, KubeRay's own `ray start` runs
        assert container["image"] == WORKER_IMAGE, where
        assert "command" not in container and "args" not in container, where
    assert "ray.io/overwrite-container-cmd" not in doc["metadata"].get("annotations", {})


def test_rayjob_runs_the_training_stage_and_cleans_up() -> None:
    job = _one("RayJob")["spec"]
    assert TRAIN_COMMAND in " ".join(job["entrypoint"].split())
    assert job["shutdownAfterJobFinishes"] is True
    # Every worker gets a GPU: the cluster can hold train.num_workers of them.
    (group,) = job["rayClusterSpec"]["workerGroupSpecs"]
    gpus = int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert group["maxReplicas"] * gpus >= 4


def test_rayjob_overrides_are_valid_pipeline_params() -> None:
    from gen_platform.config import deep_merge, load_params, parse_override

    words = shlex.split(TRAIN_COMMAND)
    overrides: dict = {}
    for flag, text in zip(words[2::2], words[3::2]):
        assert flag == "--set"
        overrides = deep_merge(overrides, parse_override(text))
    params = load_params(REPO / "params.yaml", overrides)
    assert params.train.use_gpu is True and params.train.num_workers == 4
    assert params.train.storage_path == CHECKPOINTS


def test_rayjob_cluster_is_the_raycluster() -> None:
    cluster, job = _one("RayCluster")["spec"], _one("RayJob")["spec"]["rayClusterSpec"]
    for spec in (cluster, job):  # a job's cluster starts with its workers; otherwise the two are the same
        for group in spec["workerGroupSpecs"]:
            group.pop("replicas", None)
    assert job == cluster


def test_aws_cluster_config_passes_ray_validation() -> None:
    config = yaml.safe_load(AWS_CONFIG.read_text())
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does before validating
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws" and prepared["provider"]["region"]
    types = prepared["available_node_types"]
    assert set(types) == {prepared["head_node_type"], "gpu_worker"}
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith(("g", "p"))  # a GPU instance family
    assert types["gpu_worker"]["max_workers"] <= prepared["max_workers"]
    assert prepared["docker"]["image"] == WORKER_IMAGE and prepared["setup_commands"] == []  # nothing to install
    assert "." in prepared["file_mounts"].values()


@pytest.mark.parametrize(("mutate", "error"), [
    (lambda c: c.pop("provider"), jsonschema.ValidationError),                      # required
    (lambda c: c.update(max_workers="8"), jsonschema.ValidationError),              # wrong type
    (lambda c: c.update(max_worker=8), jsonschema.ValidationError),                 # unknown field
    (lambda c: c["available_node_types"]["gpu_worker"].pop("resources"), jsonschema.ValidationError),
    (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=9), ValueError),  # > max_workers
    (lambda c: c.update(head_node_type="missing"), ValueError),
])
def test_ray_validation_rejects_broken_aws_config(mutate, error) -> None:
    prepared = prepare_config(copy.deepcopy(yaml.safe_load(AWS_CONFIG.read_text())))
    mutate(prepared)
    with pytest.raises(error):
        validate_config(prepared)


def test_ray_up_refuses_a_config_without_provider() -> None:
    config = yaml.safe_load(AWS_CONFIG.read_text())
    del config["provider"]
    with pytest.raises((KeyError, jsonschema.ValidationError)):
        validate_config(prepare_config(config))


# --- secrets ---------------------------------------------------------------------------------------------------

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|API_KEY|CREDENTIAL|CONNECTION_URL|DATABASE_URL",
                         re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:([^@\s/]*)@", re.IGNORECASE)
ENV_REFERENCE = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*\)")


def _strings(node: Any, where: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(where, key, value) for every mapping entry and list item, recursively."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{where}.{key}", key, value
            yield from _strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield f"{where}[{index}]", None, value
            yield from _strings(value, f"{where}[{index}]")


def secret_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    if doc.get("kind") == "Secret":
        problems.append(f"Secret/{doc['metadata']['name']}: secrets are created out of band, not committed")
    for where, container, _ in containers(doc):
        for entry in container.get("env", []):
            if SECRET_NAME.search(entry["name"]) and ("value" in entry or
                                                      "secretKeyRef" not in entry.get("valueFrom", {})):
                problems.append(f"{where}: env {entry['name']} must come from a secretKeyRef")
    for where, key, value in _strings(doc):
        if not isinstance(value, str):
            continue
        if isinstance(key, str) and SECRET_NAME.search(key) and value:
            problems.append(f"{where}: literal value for {key}")
        for password in URL_WITH_PASSWORD.findall(value):
            if not ENV_REFERENCE.fullmatch(password):
                problems.append(f"{where}: a URL with a literal password")
    return problems


@pytest.mark.parametrize("item", DOCS, ids=_id)
def test_no_literal_secrets_in_manifests(item: tuple[Path, dict]) -> None:
    _, doc = item
    assert not secret_problems(doc)


def test_secrets_referenced_are_documented() -> None:
    referenced = {e["valueFrom"]["secretKeyRef"]["name"] for _, doc in DOCS for _, c, _ in containers(doc)
                  for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    assert referenced == {"postgres-credentials", "mlflow-s3", "prefect-db", "gen-platform-ray-token",
                          "gen-platform-data-s3"}
    readme = (INFRA / "README.md").read_text()
    for name in referenced:
        assert f"create secret generic {name}" in readme, f"infra/README.md must say how to create {name}"


def test_every_ray_process_and_job_client_requires_the_token_from_the_secret() -> None:
    """Ray's token authentication on every node of both clusters and in the Prefect worker that submits jobs: the
    token comes from the Secret, never from a value in the repository."""
    pods = [(kind, where, c) for kind in ("RayCluster", "RayJob") for where, c, _ in containers(_one(kind))]
    pods += [("Deployment", where, c) for where, c, _ in containers(_one("Deployment", "prefect-worker"))]
    for kind, where, container in pods:
        env = {e["name"]: e for e in container.get("env", [])}
        assert env_value(container, "RAY_AUTH_MODE") == "token", (kind, where)
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "gen-platform-ray-token", "key": "token"}, \
            (kind, where)


def test_the_cluster_launcher_starts_every_node_with_the_token_from_the_launching_machine() -> None:
    config = yaml.safe_load(AWS_CONFIG.read_text())
    for command in (config["head_start_ray_commands"] + config["worker_start_ray_commands"]):
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=~/.ray/auth_token" in command, command
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # a file of the user's, not a value


def test_secret_checker_finds_planted_secrets() -> None:
    mlflow = _one("Deployment", "mlflow")
    env = mlflow["spec"]["template"]["spec"]["containers"][0]["env"]
    env[0] = {"name": "POSTGRES_PASSWORD", "value": "hunter2"}
    env[1]["value"] = "postgresql://gen_platform:hunter2@postgres:5432/mlflow"
    cluster = _one("RayCluster")
    cluster["spec"]["headGroupSpec"]["rayStartParams"]["redis-password"] = "hunter2"
    assert len(secret_problems(mlflow)) == 2
    assert len(secret_problems(cluster)) == 1
    assert secret_problems({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}})


def test_no_credentials_in_any_infra_file() -> None:
    # the files a commit would hold (tracked, or new and not ignored): not the bytecode of a local run
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "infra"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed
    for path in sorted(REPO / name for name in listed):
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----", text), path
        for password in URL_WITH_PASSWORD.findall(text):  # only references ($VAR, $(VAR)) or placeholders
            assert re.fullmatch(r"\$\(?\w+\)?|<\w+>|\.\.\.", password), f"{path}: {password!r}"


# --- images ----------------------------------------------------------------------------------------------------

def image_is_pinned(reference: str) -> bool:
    """A tag other than `latest`, or a digest; `host:port/name` is not a tag."""
    if re.search(r"@sha256:[0-9a-f]{64}$", reference):
        return True
    name = reference.rsplit("/", 1)[-1]
    return ":" in name and name.split(":", 1)[1] not in ("", "latest")


def _all_images() -> list[tuple[str, str]]:
    images = [(f"{_id((path, doc))}:{where}", container["image"])
              for path, doc in DOCS for where, container, _ in containers(doc)]
    docker = yaml.safe_load(AWS_CONFIG.read_text()).get("docker", {})
    images += [(f"cluster-aws.yaml:docker.{key}", docker[key]) for key in ("image", "head_image", "worker_image")
               if key in docker]
    return images


def test_image_pin_rule() -> None:
    for good in ("postgres:17.6", "localhost:5000/team/pg:1.2", "ghcr.io/mlflow/mlflow:v3.17.2",
                 "busybox@sha256:" + "a" * 64):
        assert image_is_pinned(good), good
    for bad in ("postgres", "postgres:latest", "localhost:5000/postgres", "ghcr.io/mlflow/mlflow", "x:"):
        assert not image_is_pinned(bad), bad


def test_every_image_is_pinned() -> None:
    images = _all_images()
    assert {image for _, image in images} >= {WORKER_IMAGE, "rayproject/ray:2.60.0-py311-gpu", "postgres:17.6",
                                              "prefecthq/prefect:3.9.1-python3.11"}
    unpinned = [f"{where}: {image}" for where, image in images if not image_is_pinned(image)]
    assert not unpinned


def test_images_match_the_pinned_python_packages() -> None:
    pins = _pyproject_pins()
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in python  # the images below are Python 3.11 builds
    for _, image in _all_images():
        name, tag = image.rsplit(":", 1)
        if name == "rayproject/ray":
            assert tag == f"{pins['ray']}-py311-gpu", image
        elif name == "ghcr.io/mlflow/mlflow":
            assert tag == f"v{pins['mlflow']}", image
        elif name == "prefecthq/prefect":
            assert tag == f"{pins['prefect']}-python3.11", image
    for kind in ("RayCluster", "RayJob"):
        spec = _one(kind)["spec"]
        assert spec.get("rayClusterSpec", spec)["rayVersion"] == pins["ray"]


# --- wiring between the manifests ------------------------------------------------------------------------------

def _service_url(name: str, scheme: str = "http") -> str:
    service = _one("Service", name)
    port = service["spec"]["ports"][0]["port"]
    return f"{scheme}://{name}.{service['metadata']['namespace']}.svc.cluster.local:{port}"


def test_everything_lives_in_the_namespace_base_yaml_creates() -> None:
    assert _one("Namespace")["metadata"]["name"] == NAMESPACE
    for path, doc in DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, _id((path, doc))


def test_urls_point_at_the_services() -> None:
    expected = {
        "MLFLOW_TRACKING_URI": _service_url("mlflow"),
        "PREFECT_API_URL": _service_url("prefect-server") + "/api",
        # KubeRay names the head service <RayCluster name>-head-svc; 8265 serves Ray's Jobs API.
        "GENP_RAY_JOBS_ADDRESS": f"http://{_one('RayCluster')['metadata']['name']}-head-svc.{NAMESPACE}.svc.cluster.local:8265",
    }
    seen = set()
    for path, doc in DOCS:
        for where, container, _ in containers(doc):
            for name, url in expected.items():
                value = env_value(container, name)
                if value is not None:
                    assert value == url, f"{_id((path, doc))}:{where}"
                    seen.add(name)
    assert seen == set(expected)
    head = _one("RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert 8265 in {port["containerPort"] for port in head["ports"]}
    assert _one("Deployment", "prefect-worker")["spec"]["template"]["spec"]["containers"][0]["args"][0].count(
        "--pool gen-platform")


def test_the_prefect_worker_reads_data_versions_from_an_s3_remote_with_credentials_from_a_secret() -> None:
    from gen_platform.data.remote import DVC_REMOTE

    worker = _one("Deployment", "prefect-worker")["spec"]["template"]["spec"]["containers"][0]
    assert (env_value(worker, DVC_REMOTE) or "").startswith("s3://")
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in worker["env"] if "valueFrom" in e}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        assert secrets[name] == {"name": "gen-platform-data-s3", "key": name} | (
            {"optional": True} if name == "AWS_ENDPOINT_URL" else {}), name


def test_backend_urls_point_at_postgres() -> None:
    postgres = _one("StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0]
    user, database = env_value(postgres, "POSTGRES_USER"), env_value(postgres, "POSTGRES_DB")
    mlflow = _one("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    host = f"postgres.{NAMESPACE}.svc.cluster.local:5432"
    assert env_value(mlflow, "MLFLOW_BACKEND_STORE_URI") == (
        f"postgresql://{user}:$(POSTGRES_PASSWORD)@{host}/{database}")
    names = [e["name"] for e in mlflow["env"]]  # $(VAR) expands only from variables defined before it
    assert names.index("POSTGRES_PASSWORD") < names.index("MLFLOW_BACKEND_STORE_URI")
    assert "--artifacts-destination s3://" in mlflow["args"][0]
    assert "CREATE DATABASE prefect" in _one("ConfigMap", "postgres-init")["data"]["10-prefect.sql"]


def test_workloads_services_and_volumes_fit_together() -> None:
    claims = {doc["metadata"]["name"] for _, doc in DOCS if doc["kind"] == "PersistentVolumeClaim"}
    config_maps = {doc["metadata"]["name"] for _, doc in DOCS if doc["kind"] == "ConfigMap"}
    pods = []  # (labels, container port names) of every pod template
    for path, doc in DOCS:
        spec = doc.get("spec", {})
        if "selector" in spec and "template" in spec:  # Deployment, StatefulSet
            labels = spec["template"]["metadata"]["labels"]
            assert spec["selector"]["matchLabels"].items() <= labels.items(), _id((path, doc))
        for where, pod in pod_specs(doc):
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for volume in volumes.values():
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims, f"{_id((path, doc))}:{where}"
                if "configMap" in volume:
                    assert volume["configMap"]["name"] in config_maps, f"{_id((path, doc))}:{where}"
            templates = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
            for container in pod["containers"]:
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes or mount["name"] in templates, f"{_id((path, doc))}:{where}"
        if "template" in spec and "metadata" in spec["template"]:
            ports = {p.get("name") for c in spec["template"]["spec"]["containers"] for p in c.get("ports", [])}
            pods.append((spec["template"]["metadata"]["labels"], ports))
    for path, doc in DOCS:
        if doc["kind"] == "Service":
            selector = doc["spec"]["selector"]
            matches = [ports for labels, ports in pods if selector.items() <= labels.items()]
            assert len(matches) == 1, f"{_id((path, doc))} selects {len(matches)} workloads"
            for port in doc["spec"]["ports"]:
                assert port["targetPort"] in matches[0], f"{_id((path, doc))}: no container port {port['targetPort']}"


def test_probes_check_health_endpoints() -> None:
    mlflow = _one("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert mlflow["readinessProbe"]["httpGet"]["path"] == "/health"
    server = _one("Deployment", "prefect-server")["spec"]["template"]["spec"]["containers"][0]
    assert server["readinessProbe"]["httpGet"]["path"] == "/api/health"
    assert server["command"] == ["prefect", "server", "start", "--host", "0.0.0.0"]
    for _, doc in K8S_DOCS:
        for where, container, _ in containers(doc):
            assert container["resources"]["requests"], f"{doc['metadata']['name']}:{where} has no resource requests"


# --- bootstrap.sh ----------------------------------------------------------------------------------------------

def _run_bootstrap(workspace: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    fake_pip = tmp_path / "fake-pip"
    fake_pip.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$RECORD/args"\n'
                        'cp "$5" "$RECORD/constraints.txt"; cp -R "${6%%[*}" "$RECORD/src"\n')
    fake_pip.chmod(0o755)
    record = tmp_path / "record"
    record.mkdir()
    env = {**os.environ, "GEN_PLATFORM_WORKSPACE": str(workspace), "GEN_PLATFORM_PIP": str(fake_pip),
           "RECORD": str(record), "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", str(INFRA / "bootstrap.sh")], env=env, capture_output=True, text=True,
                          timeout=30)


def test_bootstrap_installs_the_project_with_cuda_torch(tmp_path: Path) -> None:
    result = _run_bootstrap(REPO, tmp_path)
    assert result.returncode == 0, result.stderr
    record = tmp_path / "record"
    args = (record / "args").read_text().split()
    assert args[:4] == ["install", "--no-cache-dir", "--quiet", "--constraint"]
    assert args[5].endswith("[worker,pipeline]")  # the whole platform: the Prefect worker runs the flows
    constraints = (record / "constraints.txt").read_text().splitlines()
    assert constraints == (REPO / "constraints.txt").read_text().splitlines()  # the lock file as it is
    assert [line for line in constraints if line.startswith("torch==")] == ["torch==2.13.0"]  # PyPI's CUDA build
    assert (record / "src" / "pyproject.toml").is_file() and (record / "src" / "gen_platform").is_dir()


def test_bootstrap_refuses_an_empty_workspace(tmp_path: Path) -> None:
    result = _run_bootstrap(tmp_path / "nothing", tmp_path)
    assert result.returncode == 1
    assert "copy the repository" in result.stderr


# --- the worker image ------------------------------------------------------------------------------------------

DOCKERFILE = INFRA / "docker" / "worker.Dockerfile"
# What a Ray node never runs: the orchestrator, the data tools, the MLflow server (the `pipeline` extra).
NOT_ON_A_RAY_NODE = {"prefect", "dvc", "dvc-s3", "great-expectations", "mlflow", "flask", "gunicorn"}


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(line for line in path.read_text().splitlines()
                                             if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def _docker_context_admits(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context: the last pattern that matches decides."""
    admitted = True
    for pattern in (REPO / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern):
            admitted = negated
    return admitted


def test_the_worker_image_is_rays_cuda_image_with_the_worker_extra() -> None:
    instructions = _instructions(DOCKERFILE)
    defaults = dict(arguments.split("=", 1) for kind, arguments in instructions if kind == "ARG")
    (base,) = [arguments for kind, arguments in instructions if kind == "FROM"]
    assert re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], base) == f"rayproject/ray:{_pyproject_pins()['ray']}-py311-gpu"
    (install,) = [arguments for kind, arguments in instructions if kind == "RUN"]
    assert "--constraint /tmp/gen_platform/constraints.txt" in install  # the lock file: torch==2.13.0, PyPI's CUDA build
    assert '"/tmp/gen_platform[worker]"' in install and "bootstrap" not in install
    sources = [word for kind, arguments in instructions if kind == "COPY"
               for word in arguments.split()[:-1] if not word.startswith("--")]
    assert set(sources) == {"pyproject.toml", "constraints.txt", "README.md", "gen_platform"}
    for source in sources:
        assert (REPO / source).exists() and _docker_context_admits(source), source
    assert not _docker_context_admits(".venv") and not _docker_context_admits("data")


def _closure(requirement: str) -> set[str]:
    """The distributions `requirement` installs, read from the installed packages' metadata (extras followed)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    found: set[tuple[str, frozenset]] = set()
    pending = [Requirement(requirement)]
    while pending:
        wanted = pending.pop()
        key = (re.sub(r"[-_.]+", "-", wanted.name).lower(), frozenset(wanted.extras))
        if key in found:
            continue
        found.add(key)
        try:
            needs = [Requirement(text) for text in requires(wanted.name) or []]
        except PackageNotFoundError:
            continue
        pending += [need for need in needs if need.marker is None
                    or any(need.marker.evaluate({"extra": extra}) for extra in wanted.extras or {""})]
    return {name for name, _ in found}


def test_the_worker_extra_holds_ray_torch_and_the_mlflow_client_but_no_server() -> None:
    installed = _closure("gen_platform[worker]")
    assert {"torch", "ray", "mlflow-skinny", "gen-platform"} <= installed
    assert not installed & NOT_ON_A_RAY_NODE, sorted(installed & NOT_ON_A_RAY_NODE)
    assert NOT_ON_A_RAY_NODE <= _closure("gen_platform[worker,pipeline]")  # what `make setup` installs
    assert ["torch==2.13.0"] == [line for line in (REPO / "constraints.txt").read_text().splitlines()
                                 if line.startswith("torch==")]
