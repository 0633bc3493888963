"""The rendered NetworkPolicies allow the paths the services use, and nothing else.

Pods are given the labels the chart gives them (read from the rendered workloads), and each
path is asked of the policies with Kubernetes' NetworkPolicy semantics (tests/support/netpolicy.py).
"""

from __future__ import annotations

import pytest
from support.helm_chart import (
    NAMESPACE,
    RELEASE,
    component,
    pod_labels,
    render,
    render_set,
    workloads,
)
from support.netpolicy import Endpoint, Network, selects

NAMESPACES = {
    NAMESPACE: {"kubernetes.io/metadata.name": NAMESPACE},
    "kube-system": {"kubernetes.io/metadata.name": "kube-system"},
    "monitoring": {"kubernetes.io/metadata.name": "monitoring"},
    "team-a": {"kubernetes.io/metadata.name": "team-a"},
}
INTERNET = Endpoint("internet", ip="203.0.113.7")
API_SERVER = Endpoint("api-server", ip="10.0.0.1")
DNS = Endpoint("dns", "kube-system", {"k8s-app": "kube-dns"})
PROMETHEUS = Endpoint("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
STRANGER = Endpoint("stranger", "team-a", {"app": "something-else"})
# A canary's pod as the operator makes it (operator/edgegate_operator/manifests.py labels).
CANARY = Endpoint(
    "canary",
    "team-a",
    {
        "app.kubernetes.io/name": "edgegate-inference",
        "app.kubernetes.io/managed-by": "edgegate-operator",
        "edgegate.io/modeldeployment": "minilm",
    },
)
SERVICES = ("gateway", "inference", "taskstore", "security", "operator")
GRPC = {"gateway": 50051, "inference": 8001, "taskstore": 50053, "security": 50052}
METRICS = {
    "gateway": 9101,
    "inference": 8002,
    "taskstore": 9103,
    "security": 9102,
    "operator": 9102,
}


def world(name: str, sets: tuple[str, ...] = ()) -> tuple[Network, dict[str, Endpoint]]:
    objects = render_set(name) if not sets else render((), sets)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods = {}
    for obj, _ in workloads(objects):
        pods[component(obj)] = Endpoint(component(obj), NAMESPACE, pod_labels(obj))
    if "nats" in pods:  # a second server of a cluster, same labels
        pods["nats-1"] = Endpoint("nats-1", NAMESPACE, pods["nats"].labels)
    return Network(policies, namespaces=NAMESPACES), pods


@pytest.mark.parametrize("name", ["defaults", "production-ha", "gpu", "minimal"])
def test_every_service_reaches_nats_and_dns_and_nothing_inside(name: str) -> None:
    net, pods = world(name)
    for service in SERVICES:
        src = pods[service]
        assert net.allows(src, pods["nats"], 4222), service
        assert net.allows(src, DNS, 53, "UDP") and net.allows(src, DNS, 53, "TCP"), service
        for other, port in GRPC.items():  # services never call each other directly
            if other != service:
                assert not net.allows(src, pods[other], port), f"{service} -> {other}"
        assert not net.allows(src, pods["nats"], 8222), service  # NATS monitoring
        assert not net.allows(src, STRANGER, 8080), service


@pytest.mark.parametrize("name", ["defaults", "production-ha"])
def test_only_the_gateway_takes_traffic_from_outside(name: str) -> None:
    net, pods = world(name)
    for port in (8080, 50051):
        assert net.allows(INTERNET, pods["gateway"], port)
        assert net.allows(STRANGER, pods["gateway"], port)
    for service, port in GRPC.items():
        if service != "gateway":
            assert not net.allows(INTERNET, pods[service], port), service
            assert not net.allows(STRANGER, pods[service], port), service
    assert not net.allows(INTERNET, pods["nats"], 4222)
    assert not net.allows(STRANGER, pods["nats"], 4222)
    assert not net.allows(pods["gateway"], pods["gateway"], 9999)


def test_the_operator_s_inference_pods_reach_nats_from_any_namespace() -> None:
    net, pods = world("defaults")
    assert net.allows(CANARY, pods["nats"], 4222)
    assert not net.allows(CANARY, pods["nats"], 6222)


def test_outside_calls_only_where_a_component_makes_them() -> None:
    net, pods = world("defaults")
    assert net.allows(pods["gateway"], INTERNET, 443)  # fallback, chat platforms
    assert not net.allows(pods["gateway"], INTERNET, 25)
    for service in ("inference", "taskstore", "security"):
        assert not net.allows(pods[service], INTERNET, 443), service
    assert net.allows(pods["operator"], API_SERVER, 443)
    assert net.allows(pods["operator"], API_SERVER, 6443)
    assert not net.allows(pods["operator"], INTERNET, 80)
    # minimal fetches its model over https at start; security calls a JWKS only when set.
    net, pods = world("minimal")
    assert net.allows(pods["inference"], INTERNET, 443)
    net, pods = world("defaults", ("security.jwksUrl=https://idp.example.com/jwks",))
    assert net.allows(pods["security"], INTERNET, 443)


def test_production_narrows_the_api_server_and_the_scrapers() -> None:
    net, pods = world("production-ha")
    assert net.allows(pods["operator"], API_SERVER, 443)
    assert not net.allows(pods["operator"], INTERNET, 443)  # only 10.0.0.1/32
    for service, port in METRICS.items():
        assert net.allows(PROMETHEUS, pods[service], port), service
        assert not net.allows(STRANGER, pods[service], port), service
    net, pods = world("defaults")
    assert net.allows(STRANGER, pods["taskstore"], METRICS["taskstore"])  # default: any scraper


def test_nats_servers_route_to_each_other_only_in_a_cluster() -> None:
    net, pods = world("production-ha")
    assert net.allows(pods["nats"], pods["nats-1"], 6222)
    assert not net.allows(pods["gateway"], pods["nats"], 6222)
    assert not net.allows(pods["nats"], INTERNET, 443)
    net, pods = world("defaults")
    assert not net.allows(pods["nats"], pods["nats-1"], 6222)


def test_external_nats_is_reached_on_its_url_s_port() -> None:
    net, pods = world("external-nats")
    assert "nats" not in pods
    nats = Endpoint("external-nats", "messaging", {"app": "nats"})
    for service in SERVICES:
        assert net.allows(pods[service], nats, 4222), service
        assert not net.allows(pods[service], nats, 4223), service
    net, pods = world(
        "defaults", ("nats.enabled=false", "nats.external.url=tls://nats.example.com:7422")
    )
    assert net.allows(pods["taskstore"], Endpoint("x", ip="198.51.100.1"), 7422)
    assert not net.allows(pods["taskstore"], Endpoint("x", ip="198.51.100.1"), 4222)


def test_the_helm_test_pod_reaches_the_gateway_only() -> None:
    net, pods = world("defaults")
    tester = pods["test"]
    assert net.allows(tester, pods["gateway"], 50051)
    assert not net.allows(tester, pods["security"], 50052)
    assert not net.allows(tester, INTERNET, 443)


def test_no_policies_when_turned_off() -> None:
    objects = render((), ("networkPolicy.enabled=false",))
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"]


def test_the_evaluator_finds_a_policy_that_is_too_open() -> None:
    """The checks above can fail: an allow-all egress rule is seen as allowing everything."""
    net, pods = world("defaults")
    (policy,) = [
        p for p in net.policies if selects(p["spec"]["podSelector"], pods["taskstore"].labels)
    ]
    opened = {**policy, "spec": {**policy["spec"], "egress": [{}]}}
    others = [p for p in net.policies if p is not policy]
    loose = Network([*others, opened], namespaces=NAMESPACES)
    assert loose.allows(pods["taskstore"], INTERNET, 443)
    assert not net.allows(pods["taskstore"], INTERNET, 443)
    assert RELEASE in policy["metadata"]["name"]
