"""deploy/kubernetes, rendered without kubectl and held to what the platform needs.

Four renderings: the runtime base and its production overlay, the migrations base and its
production overlay (tests/deploy/kustomize.py, a strict renderer of exactly the kustomize
fields used). Every built-in object is validated by `kubernetes_validate` in strict mode (no
unknown field anywhere) against Kubernetes 1.30; KEDA's ScaledObject, a custom resource, against
a JSON schema of the fields used here. Then the platform's own rules: one worker and one scaler
per task queue, hardened containers, requests and limits, pinned images, no secret in the repo,
settings the platform knows, one database per process, probes, and the connection budget.
"""

from __future__ import annotations

import math
import os
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from api.app import API_DOMAINS
from kit.settings import (
    DOMAINS,
    ELSEWHERE,
    PRODUCTION_CHECKS,
    ConfigurationError,
    Group,
    ProcessRole,
    Settings,
)
from kit.temporal import WORKFLOW_QUEUES
from tests.deploy import kustomize
from workflows.checkout.contract import TaskQueue

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBE = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30"
RUNTIME = {"base": KUBE / "base", "production": KUBE / "overlays" / "production"}
MIGRATIONS = {
    "base": KUBE / "base" / "migrations",
    "production": KUBE / "overlays" / "production" / "migrations",
}
RENDERINGS = [
    *(pytest.param(path, id=f"runtime-{env}") for env, path in RUNTIME.items()),
    *(pytest.param(path, id=f"migrations-{env}") for env, path in MIGRATIONS.items()),
]
RUNTIME_RENDERINGS = [pytest.param(path, id=env) for env, path in RUNTIME.items()]

# Read by asyncpg itself (libpq's names), not by Settings; set on purpose (configmap.yaml).
DRIVER_VARIABLES = {"PGSSLMODE", "PGSSLROOTCERT"}
# PostgreSQL budget the production overlay must fit: max_connections, less what is kept for
# superusers, replication, monitoring and an operator's psql (docs/deployment.md).
POSTGRES_MAX_CONNECTIONS = 1000
POSTGRES_RESERVED = 50


# --- rendering and small helpers -------------------------------------------------------------


_CACHE: dict[Path, list[dict[str, Any]]] = {}


def render(path: Path) -> list[dict[str, Any]]:
    """The rendered objects of a kustomization (rendered once per session; do not mutate)."""
    if path not in _CACHE:
        _CACHE[path] = kustomize.render(path)
    return _CACHE[path]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deployments and Jobs: everything that runs pods."""
    return [o for o in objects if o["kind"] in ("Deployment", "Job")]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def component(workload: dict[str, Any]) -> str:
    return str(workload["metadata"]["labels"]["app.kubernetes.io/component"])


def config(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = named(objects, "ConfigMap", "checkout-platform")["data"]
    return data


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's `env` entries by name."""
    entries = container.get("env", [])
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"{container['name']}: an env name twice: {names}"
    return {e["name"]: e for e in entries}


def secret_ref(entry: dict[str, Any]) -> dict[str, Any] | None:
    ref: dict[str, Any] | None = entry.get("valueFrom", {}).get("secretKeyRef")
    return ref


def worker_queue(workload: dict[str, Any]) -> str | None:
    """The task queue a worker Deployment's command serves (`python -m workers <queue>`)."""
    command = containers(workload)[-1].get("command", [])
    if command[:3] == ["python", "-m", "workers"] and command[3:4] != ["relay"]:
        assert len(command) == 4, f"one queue per worker Deployment: {command}"
        return str(command[3])
    return None


def relay_domains(workload: dict[str, Any]) -> list[str]:
    """The domains a relay Deployment relays (`python -m workers relay <domain> ...`)."""
    command = containers(workload)[-1].get("command", [])
    return list(command[4:]) if command[:4] == ["python", "-m", "workers", "relay"] else []


def role_of(workload: dict[str, Any]) -> ProcessRole:
    """What the workload's process is, from its command: it reads the secrets of that role."""
    command = containers(workload)[-1].get("command", [])
    assert command[:2] == ["python", "-m"], f"{workload['metadata']['name']}: {command}"
    module, arguments = command[2], command[3:]
    if module == "api":
        return ProcessRole("api")
    if module == "db.migrate":
        return ProcessRole("migrate")
    assert module == "workers", f"{workload['metadata']['name']}: unknown process {command}"
    if arguments[:1] == ["relay"]:
        return ProcessRole("relay", tuple(arguments[1:]))
    return ProcessRole("worker", tuple(arguments))


def settings_variables() -> set[str]:
    """Every environment variable Settings reads: `<GROUP>_<FIELD>`, top-level fields, and the
    exceptions listed in ELSEWHERE (kit/settings.py's module docstring)."""
    names = set(ELSEWHERE)
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Group):
            names |= {f"{name}_{sub}".upper() for sub in annotation.model_fields}
        else:
            names.add(name.upper())
    return names


def secret_variables() -> set[str]:
    """The variables of SecretStr fields: never a literal value in the repo."""
    names = set()
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Group):
            for sub, subfield in annotation.model_fields.items():
                if SecretStr in (subfield.annotation, *typing.get_args(subfield.annotation)):
                    names.add(f"{name}_{sub}".upper())
    return names


def clear_platform_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every variable Settings would read from this process's environment."""
    known = settings_variables() | {"DATABASE_URL"}
    for key in list(os.environ):
        if key.upper() in known or key.upper().endswith("_DATABASE_URL"):
            monkeypatch.delenv(key)


def process_environment(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """What the container's process sees, with a stand-in value for each Secret reference."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"only ConfigMaps are envFrom sources: {source}"
        environment |= named(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
    for name, entry in env_of(container).items():
        ref = secret_ref(entry)
        if ref is None:
            assert "value" in entry, f"{name}: only literal values and Secret references"
            environment[name] = entry["value"]
        elif ref.get("optional"):
            continue  # absent unless created: the process must start without it
        elif name.endswith("_DATABASE_URL"):
            domain = name.removesuffix("_DATABASE_URL").lower()
            environment[name] = f"postgresql://{domain}@postgres.invalid:5432/{domain}"
        elif name == "NATS_URL":
            environment[name] = "nats://nats.invalid:4222"
        elif name == "TEMPORAL_PAYLOAD_KEYS":
            # A well-formed stand-in: one id and 32 bytes.
            environment[name] = "from-secret:c3RhbmQtaW4tZm9yLXRoZS1zZWNyZXQta2V5LTAxMjM="
        elif name == "STRIPE_API_KEY":
            environment[name] = "rk_live_from-secret-" + ref["name"]  # production takes live keys
        else:
            environment[name] = f"from-secret-{ref['name']}-{ref['key']}"
    return environment


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity as a number (cores or bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


# --- schema validation ---------------------------------------------------------------------

_DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
# KEDA's ScaledObject (keda.sh/v1alpha1), restricted to the fields these manifests may use.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": _DNS1123, "maxLength": 253},
                "namespace": {"type": "string", "pattern": _DNS1123},
                "labels": _STRINGS,
                "annotations": _STRINGS,
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                # Validated as an HPA's behavior by kubernetes_validate below.
                                "behavior": {"type": "object"},
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            # map[string]string in the CRD: an unquoted number is refused.
                            "metadata": _STRINGS,
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
# The temporal scaler's metadata keys (keda.sh/docs/2.17+/scalers/temporal).
TEMPORAL_TRIGGER_KEYS = {
    "endpoint",
    "endpointFromEnv",
    "namespace",
    "taskQueue",
    "targetQueueSize",
    "activationTargetQueueSize",
    "queueTypes",
    "workerDeploymentName",
    "workerDeploymentNameFromEnv",
    "workerDeploymentBuildId",
    "workerDeploymentBuildIdFromEnv",
    "buildId",
    "selectAllActive",
    "selectUnversioned",
    "minConnectTimeout",
    "unsafeSsl",
    "tlsServerName",
    "enableTLS",
}
TEMPORAL_TRIGGER_REQUIRED = {"endpoint", "namespace", "taskQueue", "targetQueueSize"}


def validate(obj: dict[str, Any]) -> None:
    """Raise unless the object is valid for its kind (built-in: strict Kubernetes schema)."""
    if kustomize.is_builtin(obj):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        return
    if obj["kind"] != "ScaledObject":
        raise AssertionError(f"no schema for custom resource {obj['apiVersion']}/{obj['kind']}")
    jsonschema.validate(obj, SCALED_OBJECT_SCHEMA)
    spec = obj["spec"]
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior is not None:  # KEDA hands it to the HPA it creates: validate it as one
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": obj["metadata"]["name"]},
            "spec": {
                # envSourceContainerName is KEDA's own: the HPA's reference has the other three.
                "scaleTargetRef": {
                    k: v
                    for k, v in spec["scaleTargetRef"].items()
                    if k in ("apiVersion", "kind", "name")
                },
                "maxReplicas": spec.get("maxReplicaCount", 100),
                "behavior": behavior,
            },
        }
        kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    for trigger in spec["triggers"]:
        if trigger["type"] == "temporal":
            keys = set(trigger["metadata"])
            assert keys <= TEMPORAL_TRIGGER_KEYS, f"unknown: {keys - TEMPORAL_TRIGGER_KEYS}"
            assert keys >= TEMPORAL_TRIGGER_REQUIRED, f"missing: {TEMPORAL_TRIGGER_REQUIRED - keys}"
            queue_types = set(trigger["metadata"].get("queueTypes", "workflow").split(","))
            assert queue_types <= {"workflow", "activity", "nexus"}, queue_types
            _check_deployment_keys(keys)


def _check_deployment_keys(keys: set[str]) -> None:
    """KEDA's rule: a Worker Deployment version is named by both its name and build id (each
    literal or `...FromEnv`), and never with the older build-id selectors."""
    name = keys & {"workerDeploymentName", "workerDeploymentNameFromEnv"}
    build_id = keys & {"workerDeploymentBuildId", "workerDeploymentBuildIdFromEnv"}
    assert len(name) <= 1, keys
    assert len(build_id) <= 1, keys
    assert bool(name) == bool(build_id), f"a deployment name and a build id, or neither: {keys}"
    if name:
        assert not keys & {"buildId", "selectAllActive", "selectUnversioned"}, keys


@pytest.mark.parametrize("path", RENDERINGS)
def test_every_object_is_valid_for_its_kind(path: Path) -> None:
    objects = render(path)
    assert objects, f"{path} renders nothing"
    for obj in objects:
        try:
            validate(obj)
        except kubernetes_validate.ValidationError as exc:
            location = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{kustomize.object_id(obj)}: {location}: {exc.message}")


def test_the_validation_refuses_what_a_cluster_would_refuse() -> None:
    objects = render(RUNTIME["production"])
    deployment = kustomize.merge(
        named(objects, "Deployment", "checkout-api"),
        {"spec": {"template": {"spec": {"containers": [{"name": "api", "securityContex": {}}]}}}},
        strategic=True,
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = kustomize.merge(
        named(objects, "ScaledObject", "worker-payments"),
        {"spec": {"maxReplicas": 3}},
        strategic=False,
    )
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    unquoted = kustomize.merge(
        named(objects, "ScaledObject", "worker-payments"),
        {"spec": {"triggers": [{"type": "temporal", "metadata": {"targetQueueSize": 10}}]}},
        strategic=False,
    )
    with pytest.raises(jsonschema.ValidationError):
        validate(unquoted)
    versioned = named(objects, "ScaledObject", "worker-checkout")
    (trigger,) = versioned["spec"]["triggers"]
    nameless = {k: v for k, v in trigger["metadata"].items() if k != "workerDeploymentName"}
    half = kustomize.merge(
        versioned, {"spec": {"triggers": [{**trigger, "metadata": nameless}]}}, strategic=False
    )
    with pytest.raises(AssertionError, match="a deployment name and a build id"):
        validate(half)


# --- the platform's rules ------------------------------------------------------------------


@pytest.mark.parametrize("path", RUNTIME_RENDERINGS)
def test_every_task_queue_has_one_worker_and_one_scaler(path: Path) -> None:
    objects = render(path)
    settings = config(objects)
    workers = [w for w in of_kind(objects, "Deployment") if worker_queue(w) is not None]
    scalers = of_kind(objects, "ScaledObject")
    assert len(workers) == len(TaskQueue) == len(scalers)
    for queue in TaskQueue:
        served = [w for w in workers if worker_queue(w) == queue.value]
        assert len(served) == 1, f"{queue}: {len(served)} worker Deployments"
        deployment = served[0]
        assert component(deployment) == "worker"
        triggers = [
            (scaler, trigger)
            for scaler in scalers
            for trigger in scaler["spec"]["triggers"]
            if trigger["metadata"].get("taskQueue") == queue.value
        ]
        assert len(triggers) == 1, f"{queue}: {len(triggers)} scalers"
        scaler, trigger = triggers[0]
        target = scaler["spec"]["scaleTargetRef"]
        assert (target.get("kind"), target["name"]) == (
            "Deployment",
            deployment["metadata"]["name"],
        )
        assert trigger["type"] == "temporal"
        metadata = trigger["metadata"]
        assert metadata["endpoint"] == settings["TEMPORAL_ADDRESS"]
        assert metadata["namespace"] == settings["TEMPORAL_NAMESPACE"]
        expected_type = "workflow" if queue.value in WORKFLOW_QUEUES else "activity"
        assert metadata["queueTypes"] == expected_type
        assert int(metadata["targetQueueSize"]) > 0
        # Never zero: /healthz (the API's readiness) needs a poller on every queue.
        assert 1 <= scaler["spec"]["minReplicaCount"] <= scaler["spec"]["maxReplicaCount"]
        # KEDA owns the count; a replicas field would reset it on every apply.
        assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize("path", RUNTIME_RENDERINGS)
def test_workflow_workers_are_versioned_by_their_image_and_scaled_per_version(path: Path) -> None:
    """docs/deployment.md, "Worker versioning": the workflow workers poll as the release's
    version (build id = image tag), are ready only while it is current, and their scaler counts
    that version's backlog; activity workers stay unversioned."""
    objects = render(path)
    settings = config(objects)
    assert settings["WORKER_VERSIONING"] == "true"
    workers = {q: w for w in of_kind(objects, "Deployment") if (q := worker_queue(w))}
    scalers = {
        t["metadata"]["taskQueue"]: (s, t)
        for s in of_kind(objects, "ScaledObject")
        for t in s["spec"]["triggers"]
    }
    for queue, deployment in workers.items():
        (container,) = containers(deployment)
        env = env_of(container)
        scaler, trigger = scalers[queue]
        ready = container["readinessProbe"]["exec"]["command"]
        if queue not in WORKFLOW_QUEUES:
            assert "WORKER_BUILD_ID" not in env, queue
            assert "--current-version" not in ready, queue
            assert not {k for k in trigger["metadata"] if k.startswith("workerDeployment")}, queue
            continue
        _name, tag, _digest = kustomize.split_image(container["image"])
        build_id = env["WORKER_BUILD_ID"]["value"]
        assert build_id == tag, "WORKER_BUILD_ID is the image's tag: set them together"
        Settings.model_validate({"worker": {"versioning": True, "build_id": build_id}})
        assert "--current-version" in ready
        metadata = trigger["metadata"]
        assert metadata["workerDeploymentName"] == f"{settings['WORKER_DEPLOYMENT_NAME']}-{queue}"
        assert metadata["workerDeploymentBuildIdFromEnv"] == "WORKER_BUILD_ID"
        assert scaler["spec"]["scaleTargetRef"]["envSourceContainerName"] == container["name"]


@pytest.mark.parametrize("path", RUNTIME_RENDERINGS)
def test_every_domain_outbox_is_relayed_exactly_once_per_process_kind(path: Path) -> None:
    objects = render(path)
    assert config(objects)["RELAY_ENABLED"] == "true"  # worker processes relay their own domain
    deployments = of_kind(objects, "Deployment")
    by_workers = [q for w in deployments if (q := worker_queue(w)) is not None]
    by_relays = [d for w in deployments for d in relay_domains(w)]
    assert len(by_relays) == len(set(by_relays)) == 2
    assert sorted(by_workers + by_relays) == sorted(DOMAINS)


@pytest.mark.parametrize("path", RENDERINGS)
def test_every_container_is_hardened(path: Path) -> None:
    objects = render(path)
    checked = 0
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        assert not spec.get("hostNetwork"), name
        assert not spec.get("hostPID"), name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(workload):
            context = container["securityContext"]
            assert context.get("runAsNonRoot", pod["runAsNonRoot"]) is True, name
            assert context.get("runAsUser", pod["runAsUser"]) != 0, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert not context.get("privileged"), name
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1, name
            assert "emptyDir" in volumes[tmp[0]["name"]], name
            checked += 1
    assert checked == len(workloads(objects)) > 0


@pytest.mark.parametrize("path", RENDERINGS)
def test_every_container_has_requests_and_limits(path: Path) -> None:
    objects = render(path)
    checked = 0
    for workload in workloads(objects):
        for container in containers(workload):
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resources["requests"][resource])
                limit = quantity(resources["limits"][resource])
                assert 0 < request <= limit, (workload["metadata"]["name"], resource)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("path", RENDERINGS)
def test_images_are_pinned(path: Path) -> None:
    objects = render(path)
    images = [c["image"] for w in workloads(objects) for c in containers(w)]
    assert images
    for image in images:
        _name, tag, digest = kustomize.split_image(image)
        assert tag or digest, f"{image}: no tag means latest"
        assert tag != "latest", image
        if digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), image
    if "overlays" in path.parts:  # the overlay's `images` reached every container
        assert {kustomize.split_image(i)[0] for i in images} == {
            "registry.example.com/checkout/checkout-platform"
        }


def test_no_secret_value_is_in_the_repository() -> None:
    for manifest in sorted(DEPLOY.rglob("*.yaml")):
        for document in kustomize.load_documents(manifest):
            assert document["kind"] != "Secret", f"{manifest}: create Secrets out of band"
    secrets = secret_variables()
    assert {"AUTH_JWT_SECRET", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"} <= secrets
    checked = 0
    for path in (*RUNTIME.values(), *MIGRATIONS.values()):
        objects = render(path)
        if of_kind(objects, "ConfigMap"):
            data = config(objects)
            assert not set(data) & secrets
            assert not [k for k in data if k.endswith("DATABASE_URL") or k == "NATS_URL"]
        for workload in workloads(objects):
            for container in containers(workload):
                for name, entry in env_of(container).items():
                    if name in secrets:  # never a literal, not even a stand-in
                        assert secret_ref(entry), name
                        assert "value" not in entry, name
                        checked += 1
                    if name.endswith("DATABASE_URL") or name == "NATS_URL":
                        assert secret_ref(entry), f"{name} may carry a password: a Secret"
    assert checked > 0


@pytest.mark.parametrize("path", RENDERINGS)
def test_processes_hold_only_the_secrets_they_use(path: Path) -> None:
    """Least privilege: a container is given exactly the secrets its process needs (each from a
    Secret), may be given those it reads when set (optional references), and no other one."""
    objects = render(path)
    secrets = secret_variables()
    roles: set[str] = set()
    for workload in workloads(objects):
        name, role = workload["metadata"]["name"], role_of(workload)
        roles.add(role.kind)
        needed = role.secrets() & set(PRODUCTION_CHECKS)
        for container in containers(workload):
            env = env_of(container)
            held = {variable for variable in env if variable in secrets}
            assert held <= role.secrets(), (name, sorted(held - role.secrets()))
            assert needed <= held, (name, sorted(needed - held))
            for variable in held:
                ref = secret_ref(env[variable])
                assert ref, (name, variable)
                assert ref["name"].startswith("checkout-"), (name, variable)
                assert bool(ref.get("optional")) == (variable not in needed), (name, variable)
    if "migrations" in path.parts:
        assert roles == {"migrate"}
    else:
        assert roles == {"api", "worker", "relay"}


def test_only_the_payments_worker_holds_the_stripe_key() -> None:
    objects = render(RUNTIME["production"])
    holders = [
        w["metadata"]["name"]
        for w in workloads(objects)
        for c in containers(w)
        if "STRIPE_API_KEY" in env_of(c)
    ]
    assert holders == ["worker-payments"]


@pytest.mark.parametrize("path", RENDERINGS)
def test_every_variable_is_one_the_platform_reads(path: Path) -> None:
    objects = render(path)
    known = settings_variables() | DRIVER_VARIABLES
    assert {"API_PORT", "WORKER_SHUTDOWN_GRACE_S", "DB_POOL_SIZE", "PAYMENTS_DATABASE_URL"} <= known
    names: set[str] = set()
    if of_kind(objects, "ConfigMap"):
        names |= set(config(objects))
    for workload in workloads(objects):
        for container in containers(workload):
            names |= set(env_of(container))
    assert names, "nothing configured"
    assert not names - known, f"unknown to kit.settings: {sorted(names - known)}"


@pytest.mark.parametrize("path", RENDERINGS)
def test_each_process_starts_with_its_environment(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every process starts with its environment under ENV=production: values parse, and each
    secret its role needs is there and not a documented development value."""
    objects = render(path)
    for workload in workloads(objects):
        for container in containers(workload):
            with monkeypatch.context() as patch:
                clear_platform_environment(patch)
                for name, value in process_environment(objects, container).items():
                    patch.setenv(name, value)
                try:
                    settings = Settings().validate_for(role_of(workload))
                except (ConfigurationError, ValueError) as exc:
                    pytest.fail(f"{workload['metadata']['name']}: {exc}")
            assert settings.env == "production"
            assert settings.database.domain_urls, "every process names its own databases"


def test_the_start_check_would_catch_a_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(RUNTIME["production"])
    api = containers(named(objects, "Deployment", "checkout-api"))[0]
    environment = process_environment(objects, api)
    del environment["AUTH_JWT_SECRET"]
    clear_platform_environment(monkeypatch)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="api process: AUTH_ISSUER or AUTH_JWT_SECRET"):
        Settings().validate_for(ProcessRole("api"))
    # And a worker's without the payload keys.
    worker = named(objects, "Deployment", "worker-payments")
    environment = process_environment(objects, containers(worker)[0])
    del environment["TEMPORAL_PAYLOAD_KEYS"]
    clear_platform_environment(monkeypatch)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="worker:payments process: TEMPORAL_PAYLOAD_KEYS"):
        Settings().validate_for(role_of(worker))


@pytest.mark.parametrize("path", RENDERINGS)
def test_each_process_holds_only_its_own_databases(path: Path) -> None:
    objects = render(path)
    checked = 0
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        for container in containers(workload):
            env = env_of(container)
            assert "DATABASE_URL" not in env, f"{name}: never the whole server"
            urls = {
                n.removesuffix("_DATABASE_URL").lower(): secret_ref(e)
                for n, e in env.items()
                if n.endswith("_DATABASE_URL")
            }
            queue, relayed = worker_queue(workload), relay_domains(workload)
            if component(workload) == "migrations":
                expected = set(DOMAINS)
                refs = {d: ("checkout-db-migrations", d) for d in DOMAINS}
            elif component(workload) == "api":
                expected = set(API_DOMAINS)
                refs = {d: (f"checkout-db-{d}", "url") for d in API_DOMAINS}
            else:
                own = [queue] if queue is not None else relayed
                assert len(own) == 1, f"{name}: one domain per worker or relay Deployment"
                expected = set(own)
                refs = {d: (f"checkout-db-{d}", "url") for d in own}
            assert set(urls) == expected, name
            for domain, ref in urls.items():
                assert ref is not None, name
                assert (ref["name"], ref["key"]) == refs[domain], name
            checked += 1
    assert checked == len(workloads(objects)) > 0


@pytest.mark.parametrize("path", RUNTIME_RENDERINGS)
def test_liveness_never_checks_dependencies_and_readiness_does(path: Path) -> None:
    objects = render(path)
    settings = config(objects)
    api = named(objects, "Deployment", "checkout-api")
    (container,) = containers(api)
    (port,) = container["ports"]
    assert port["name"] == "http"
    assert port["containerPort"] == int(settings["API_PORT"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] != "/healthz", probe
    assert container["readinessProbe"]["timeoutSeconds"] > 2 * 3  # /healthz: 3 checks of 2 s
    long_running = [w for w in of_kind(objects, "Deployment") if w is not api]
    assert len(long_running) == len(TaskQueue) + 2
    for workload in long_running:
        (container,) = containers(workload)
        live = container["livenessProbe"]["exec"]["command"]
        ready = container["readinessProbe"]["exec"]["command"]
        assert container["startupProbe"]["exec"]["command"] == live
        assert live[-1] == "live"
        assert "ready" in ready
        assert live != ready
        queue, relayed = worker_queue(workload), relay_domains(workload)
        if queue is not None:
            assert f"--task-queue={queue}" in ready
            assert f"--relay={queue}" in ready
        else:
            assert ready[-1] == f"--relay={relayed[0]}"
    # The probe reads the metrics port from the environment; every process must have it.
    assert settings["WORKER_METRICS_PORT"].isdigit()


@pytest.mark.parametrize("path", RUNTIME_RENDERINGS)
def test_workers_outlive_their_drain(path: Path) -> None:
    objects = render(path)
    drain = float(config(objects)["WORKER_SHUTDOWN_GRACE_S"])
    for workload in of_kind(objects, "Deployment"):
        if component(workload) in ("worker", "relay"):
            grace = pod_spec(workload)["terminationGracePeriodSeconds"]
            assert grace >= drain + 15, workload["metadata"]["name"]


@pytest.mark.parametrize("path", RENDERINGS)
def test_no_process_can_reach_the_kubernetes_api(path: Path) -> None:
    objects = render(path)
    accounts = of_kind(objects, "ServiceAccount")
    assert accounts
    assert all(a["automountServiceAccountToken"] is False for a in accounts)
    names = {a["metadata"]["name"] for a in accounts}
    for workload in workloads(objects):
        assert pod_spec(workload)["serviceAccountName"] in names
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding", "ClusterRoleBinding")]


@pytest.mark.parametrize("path", RUNTIME_RENDERINGS)
def test_selectors_match_their_pods(path: Path) -> None:
    objects = render(path)
    deployments = of_kind(objects, "Deployment")
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), deployment["metadata"]["name"]

    def selected(selector: dict[str, str]) -> list[str]:
        return [
            d["metadata"]["name"]
            for d in deployments
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]

    for budget in of_kind(objects, "PodDisruptionBudget"):
        chosen = selected(budget["spec"]["selector"]["matchLabels"])
        assert chosen == [budget["metadata"]["name"]], chosen
    assert selected(named(objects, "Service", "checkout-api")["spec"]["selector"]) == [
        "checkout-api"
    ]
    hpa = named(objects, "HorizontalPodAutoscaler", "checkout-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "checkout-api"
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in named(objects, "Deployment", "checkout-api")["spec"]


@pytest.mark.parametrize("path", RUNTIME_RENDERINGS)
def test_network_policies_deny_by_default_and_allow_each_flow(path: Path) -> None:
    objects = render(path)
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objects, "NetworkPolicy")}
    deny = policies["checkout-default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def egress_ports(spec: dict[str, Any]) -> set[tuple[str, int]]:
        return {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}

    assert egress_ports(policies["checkout-allow-dns"]) == {("UDP", 53), ("TCP", 53)}
    assert ("TCP", 5432) in egress_ports(policies["checkout-egress-postgres"])
    assert egress_ports(policies["checkout-egress-temporal"]) == {("TCP", 7233)}
    assert egress_ports(policies["checkout-egress-nats"]) == {("TCP", 4222)}
    assert egress_ports(policies["checkout-egress-https"]) == {("TCP", 443)}
    api_port = int(config(objects)["API_PORT"])
    ingress = policies["checkout-api-ingress"]
    assert ingress["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "api"}}
    assert {p["port"] for rule in ingress["ingress"] for p in rule["ports"]} == {api_port}
    allowing_ingress = {n for n, p in policies.items() if "Ingress" in p["policyTypes"]}
    assert allowing_ingress == {
        "checkout-default-deny",
        "checkout-api-ingress",
        "checkout-metrics-ingress",
    }
    # Only Prometheus reaches a worker or relay, only on the metrics port.
    metrics = policies["checkout-metrics-ingress"]
    (scrape,) = metrics["ingress"]
    assert scrape["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert {p["port"] for p in scrape["ports"]} == {int(config(objects)["WORKER_METRICS_PORT"])}
    # Only the processes calling Stripe and EasyPost (labels; rates at checkout) may leave.
    https = policies["checkout-egress-https"]["podSelector"]["matchLabels"]
    outside = [
        w["metadata"]["name"]
        for w in workloads(objects)
        if https.items() <= w["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert sorted(outside) == ["checkout-api", "worker-payments", "worker-shipping"]


def test_migrations_run_as_a_job_before_the_rollout() -> None:
    for path in RUNTIME.values():
        assert not of_kind(render(path), "Job"), "the runtime kustomization never migrates"
    for path in MIGRATIONS.values():
        (job,) = of_kind(render(path), "Job")
        (container,) = containers(job)
        assert container["command"][:3] == ["python", "-m", "db.migrate"]
        assert pod_spec(job)["restartPolicy"] == "Never"
        assert job["spec"]["backoffLimit"] <= 2
        assert job["spec"]["activeDeadlineSeconds"] > 0
    production = render(MIGRATIONS["production"])
    assert {o["metadata"].get("namespace") for o in production if o["kind"] != "Namespace"} == {
        named(production, "Namespace", "checkout")["metadata"]["name"]
    }


# --- connection budget -----------------------------------------------------------------------

# Connection pools per process and domain database, as workers/bootstrap.py and api/app.py open
# them: a worker process has its activities' pool and its relay's pool (RELAY_ENABLED), plus
# the relay's LISTEN connection (the inventory sweeper shares the activities' pool); a relay
# process one pool and the LISTEN connection; the API one pool per domain it serves.
POOLS = {"api": 1, "worker": 2, "relay": 1}
LISTEN = {"api": 0, "worker": 1, "relay": 1}
MIGRATION_CONNECTIONS = 1  # Alembic with NullPool, one domain after the other


def surge(maximum: int, strategy: dict[str, Any]) -> int:
    value = strategy.get("rollingUpdate", {}).get("maxSurge", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(maximum * int(value[:-1]) / 100)
    return int(value)


def worst_case_connections(objects: list[dict[str, Any]]) -> dict[str, int]:
    """Per Deployment: connections at its maximum replica count plus its rolling-update surge."""
    settings = config(objects)
    per_pool = int(settings["DB_POOL_SIZE"]) + int(settings["DB_MAX_OVERFLOW"])
    maxima = {
        s["spec"]["scaleTargetRef"]["name"]: s["spec"]["maxReplicaCount"]
        for s in of_kind(objects, "ScaledObject")
    } | {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"]
        for h in of_kind(objects, "HorizontalPodAutoscaler")
    }
    budget = {}
    for deployment in of_kind(objects, "Deployment"):
        name, kind = deployment["metadata"]["name"], component(deployment)
        (container,) = containers(deployment)
        assert "DB_POOL_SIZE" not in env_of(container), "the formula assumes one pool size"
        databases = [n for n in env_of(container) if n.endswith("_DATABASE_URL")]
        per_pod = len(databases) * (POOLS[kind] * per_pool + LISTEN[kind])
        maximum = maxima.get(name, deployment["spec"].get("replicas", 1))
        budget[name] = (maximum + surge(maximum, deployment["spec"]["strategy"])) * per_pod
    return budget


def test_production_fits_the_postgres_connection_budget() -> None:
    budget = worst_case_connections(render(RUNTIME["production"]))
    total = sum(budget.values()) + MIGRATION_CONNECTIONS
    assert len(budget) == len(TaskQueue) + 3
    assert total <= POSTGRES_MAX_CONNECTIONS - POSTGRES_RESERVED, budget
    # The worked example in the docs is this very computation.
    documented = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    match = re.search(r"worst case of the production overlay: \*\*(\d+)\*\*", documented)
    assert match, "docs/deployment.md states the production worst case"
    assert int(match[1]) == total, budget
    # And every process checks it against the server at start (kit/budget.py).
    assert int(config(render(RUNTIME["production"]))["DB_FLEET_CONNECTIONS"]) == total


def iter_documents() -> Iterator[Path]:
    yield from sorted(KUBE.rglob("*.yaml"))


def test_every_manifest_file_is_rendered() -> None:
    """A YAML file no kustomization lists is never deployed: a forgotten resource or patch."""
    used: set[Path] = set()
    for directory in {p.parent for p in KUBE.rglob("kustomization.yaml")}:
        used.add(directory / "kustomization.yaml")
        listed = yaml.safe_load((directory / "kustomization.yaml").read_text())
        used |= {(directory / r).resolve() for r in listed.get("resources", [])}
        used |= {(directory / p["path"]).resolve() for p in listed.get("patches", [])}
    unused = [p for p in iter_documents() if p.resolve() not in used]
    assert not unused, unused
