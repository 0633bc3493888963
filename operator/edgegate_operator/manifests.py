"""The Kubernetes objects the operator owns, as plain dicts.

One inference Deployment and one Service per served version of a
ModelDeployment, named `<resource>-v<version>`. Labels say what a pod
serves (`edgegate.io/model`, `edgegate.io/version`, `edgegate.io/track`)
and which resource owns it (`edgegate.io/modeldeployment`); the owner
reference lets the cluster's garbage collector remove them with the
resource. The model file's location travels as pod annotations and as the
`model-fetch` init container's arguments: it downloads the file into the
pod's model repository, checks its SHA-256 and writes the resource's
`spec.runtime` into the model's config before inference starts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUP = "edgegate.io"
VERSION = "v1alpha1"
MODELDEPLOYMENTS = "modeldeployments"
TENANTQUOTAS = "tenantquotas"
LABEL_MODEL = "edgegate.io/model"
LABEL_VERSION = "edgegate.io/version"
LABEL_TRACK = "edgegate.io/track"
LABEL_OWNER = "edgegate.io/modeldeployment"
ANNOTATION_URI = "edgegate.io/model-uri"
ANNOTATION_SHA256 = "edgegate.io/model-sha256"
MANAGED_BY = {"app.kubernetes.io/managed-by": "edgegate-operator"}
# A version whose pods cannot start shows as the Deployment's Progressing=False this soon.
PROGRESS_DEADLINE_S = 120
REPOSITORY = "/models"
GRPC_PORT = 8001
METRICS_PORT = 8002
# Pod Security "restricted" asks this of every container.
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class Workload:
    """What the operator's settings add to every inference pod."""

    image: str = "edgegate/inference:latest"
    nats_url: str = "nats://nats:4222"
    metrics_snapshot_s: float = 5.0


def child_name(resource: str, version: str) -> str:
    """`<resource>-v<version>` as a DNS label that no other version shares.

    A Service name must start with a letter and stay within 63 characters of
    [a-z0-9-]. Where the plain name does not fit that (`V1` and `v1`, `1.0` and
    `1-0` would meet), a hash of the exact pair tells the versions apart.
    """
    plain = f"{resource}-v{version}"
    name = _NOT_DNS.sub("-", plain.lower()).strip("-")
    if name == plain and len(name) <= 63 and name[0].isalpha():
        return name
    digest = hashlib.sha256(f"{resource}\0{version}".encode()).hexdigest()[:8]
    stem = name[:54].rstrip("-")
    return f"{stem if stem[:1].isalpha() else 'v' + stem[:53]}-{digest}"


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": body.get("kind", "ModelDeployment"),
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_selector(resource: str) -> dict[str, str]:
    """The labels that find every child of one ModelDeployment."""
    return {LABEL_OWNER: _label_value(resource)}


def labels(resource: str, model: str, version: str, track: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "edgegate-inference",
        "app.kubernetes.io/instance": _label_value(resource),
        **MANAGED_BY,
        LABEL_OWNER: _label_value(resource),
        LABEL_MODEL: _label_value(model),
        LABEL_VERSION: _label_value(version),
        LABEL_TRACK: track,
    }


def inference_deployment(
    body: Mapping[str, Any],
    *,
    version: str,
    track: str,
    replicas: int,
    uri: str,
    sha256: str | None,
    workload: Workload,
) -> dict[str, Any]:
    """The Deployment serving `version` of the resource's model."""
    spec = body.get("spec", {})
    model = spec["model"]["name"]
    name = body["metadata"]["name"]
    tags = labels(name, model, version, track)
    selector = {k: tags[k] for k in (LABEL_OWNER, LABEL_VERSION)}
    # The pods do not carry the track: a promotion relabels the Deployment, not its pods,
    # so it restarts nothing.
    pod_labels = {k: v for k, v in tags.items() if k != LABEL_TRACK}
    annotations = {ANNOTATION_URI: uri}
    if sha256:
        annotations[ANNOTATION_SHA256] = sha256
    runtime = json.dumps(spec.get("runtime", {}), sort_keys=True)
    fetch_args = ["--uri", uri, "--dest", f"{REPOSITORY}/{model}/{version}", "--runtime", runtime]
    fetch_args += ["--sha256", sha256] if sha256 else []
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": child_name(name, version),
            "namespace": body["metadata"]["namespace"],
            "labels": tags,
            "annotations": annotations,
            "ownerReferences": [owner_reference(body)],
        },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_S,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [
                        {
                            "name": "model-fetch",
                            "image": workload.image,
                            "command": ["python", "-m", "edgegate_inference.fetch"],
                            "args": fetch_args,
                            "volumeMounts": [{"name": "models", "mountPath": REPOSITORY}],
                            "securityContext": CONTAINER_SECURITY,
                        }
                    ],
                    "containers": [_inference_container(spec, workload)],
                    "volumes": [{"name": "models", "emptyDir": {}}],
                },
            },
        },
    }


def _inference_container(spec: Mapping[str, Any], workload: Workload) -> dict[str, Any]:
    env = {
        "EDGEGATE_INFERENCE_NATS_URL": workload.nats_url,
        "EDGEGATE_INFERENCE_MODEL_REPOSITORY": REPOSITORY,
        "EDGEGATE_INFERENCE_REPOSITORY_POLL_S": "0",
        "EDGEGATE_INFERENCE_METRICS_SNAPSHOT_S": f"{workload.metrics_snapshot_s:g}",
        "EDGEGATE_INFERENCE_GRPC_PORT": str(GRPC_PORT),
        "EDGEGATE_INFERENCE_METRICS_PORT": str(METRICS_PORT),
    }
    return {
        "name": "inference",
        "image": workload.image,
        "command": ["python", "-m", "edgegate_inference"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
        "readinessProbe": {"grpc": {"port": GRPC_PORT}, "periodSeconds": 2},
        "livenessProbe": {"grpc": {"port": GRPC_PORT}, "periodSeconds": 10},
        "resources": dict(spec.get("resources", {})),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "models", "mountPath": REPOSITORY, "readOnly": True}],
    }


def inference_service(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The Service in front of a version's pods (direct gRPC, Triton-style clients)."""
    meta = deployment["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": meta["labels"],
            "ownerReferences": meta["ownerReferences"],
        },
        "spec": {
            "selector": deployment["spec"]["selector"]["matchLabels"],
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def _label_value(value: str) -> str:
    """A label value: 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", value)[:63]
    return cleaned.strip("._-") or "x"
