"""The operator's children as a cluster would take them, and kopf's credentials."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes
import pytest
import yaml
from kubernetes_validate import validate

from edgegate_operator.handlers import connection_info
from edgegate_operator.manifests import (
    LABEL_TRACK,
    Workload,
    child_name,
    inference_deployment,
    inference_service,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "modeldeployment.yaml"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def example() -> dict:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["uid"] = "0f6e0c64-5a3c-4c55-9a55-2f7b9d2a7d10"
    return body


def test_children_pass_kubernetes_own_schemas_and_promotion_restarts_no_pod() -> None:
    body = example()
    canary = inference_deployment(
        body, version="2", track="canary", replicas=3,
        uri="https://models.example/m/2/model.onnx", sha256="a" * 64, workload=Workload(),
    )  # fmt: skip
    stable = inference_deployment(
        body, version="2", track="stable", replicas=3,
        uri="https://models.example/m/2/model.onnx", sha256="a" * 64, workload=Workload(),
    )  # fmt: skip
    for obj in (canary, inference_service(canary)):
        validate(obj, "1.31.0", strict=True)
    template = canary["spec"]["template"]
    assert LABEL_TRACK not in template["metadata"]["labels"]
    assert template == stable["spec"]["template"]  # a promotion relabels the Deployment only
    selector = canary["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    fetch = template["spec"]["initContainers"][0]
    assert fetch["args"][fetch["args"].index("--sha256") + 1] == "a" * 64


@pytest.mark.parametrize(
    ("resource", "version"),
    [("minilm", "2"), ("MiniLM", "V1"), ("minilm", "v1"), ("1model", "2"), ("m" * 70, "3")],
)
def test_child_names_are_dns_labels(resource: str, version: str) -> None:
    assert DNS_LABEL.match(child_name(resource, version))


def test_versions_that_would_share_a_name_do_not() -> None:
    assert child_name("m", "1.0") != child_name("m", "1-0")
    assert child_name("M", "1") != child_name("m", "1")
    assert child_name("minilm", "2") == "minilm-v2"  # plain names stay readable


def test_kopf_logs_in_with_the_kubeconfig_token(tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "s3cr3t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    client = kubernetes.config.new_client_from_config(config_file=str(path))
    info = connection_info(client.configuration)
    assert info.server == "https://10.0.0.1:6443"
    assert (info.scheme, info.token) == ("Bearer", "s3cr3t")


def test_rollouts_by_phase_count_each_resource_once() -> None:
    from prometheus_client import CollectorRegistry

    from edgegate_operator.metrics import OperatorMetrics

    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.observe_phase("edgegate", "a", "Progressing")
    metrics.observe_phase("edgegate", "b", "Progressing")
    metrics.observe_phase("edgegate", "a", "Healthy")  # a moved on
    gauge = "edgegate_operator_rollouts"
    assert registry.get_sample_value(gauge, {"phase": "Progressing"}) == 1
    assert registry.get_sample_value(gauge, {"phase": "Healthy"}) == 1
    metrics.forget("edgegate", "b")
    assert registry.get_sample_value(gauge, {"phase": "Progressing"}) == 0
