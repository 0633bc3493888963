"""The ModelDeployment and TenantQuota CRDs: their shape, and what they let into the cluster.

The CRDs are the operator's input validation: whatever they let through, the operator must
cope with, and whatever they refuse, an SRE hears about from `kubectl apply` at once, with the
field named, instead of from a rollout that stalls later. The schemas are checked as the API
server would check them (tests/support/crd_schema.py), the manifests by `kubernetes-validate`
against Kubernetes 1.31's own CustomResourceDefinition schema.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.crd_schema import (
    CEL_PREDICATES,
    CRDS,
    GROUP,
    REPO,
    CrdChecker,
    UncheckedRule,
    checker,
    fold,
    load_crd,
    rules,
    structural_problems,
    undocumented,
)

EXAMPLES = REPO / "deploy" / "examples"
KUBERNETES_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
PLURALS = ["modeldeployments", "tenantquotas"]

Json = dict[str, Any]


def example(name: str) -> Json:
    loaded: Json = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))
    return loaded


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", "1.31.0", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- the manifests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plural", "kind", "short"),
    [("modeldeployments", "ModelDeployment", "md"), ("tenantquotas", "TenantQuota", "tq")],
)
def test_names_scope_and_version(plural: str, kind: str, short: str) -> None:
    crd = load_crd(plural)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.edgegate.io"
    spec = crd["spec"]
    assert spec["group"] == "edgegate.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": [short],
        "categories": ["edgegate"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_the_crds_folder_holds_exactly_the_two_crds() -> None:
    """The chart installs crds/ as it is: one file per CRD, no second copy anywhere.

    Besides ours, crds/ holds kopf's two peering CRDs (tests/deploy checks the whole folder).
    """
    ours = sorted(p.name for p in CRDS.iterdir() if p.name.endswith(f".{GROUP}.yaml"))
    assert ours == [f"{p}.edgegate.io.yaml" for p in PLURALS]
    copies = [
        p
        for p in [*REPO.rglob("*.yaml"), *REPO.rglob("*.yml")]
        if not any(part.startswith(".") for part in p.relative_to(REPO).parts)
        and p.parent != CRDS
        and "kind: CustomResourceDefinition" in p.read_text(encoding="utf-8")
    ]
    assert copies == []


def printer_columns(plural: str) -> list[tuple[str, str, str]]:
    (version,) = load_crd(plural)["spec"]["versions"]
    return [
        (c["name"].upper(), c["jsonPath"], c["type"])  # kubectl prints names upper-cased
        for c in version["additionalPrinterColumns"]
        if c.get("priority", 0) == 0
    ]


def test_kubectl_get_md_columns() -> None:
    assert printer_columns("modeldeployments") == [
        ("STABLE", ".status.stableVersion", "string"),
        ("CANARY", ".status.canaryVersion", "string"),
        ("WEIGHT", ".status.weight", "integer"),
        ("STEP", ".status.step", "integer"),
        ("PHASE", ".status.phase", "string"),
        ("BREAKER", ".status.breakerSummary", "string"),
        ("AGE", ".metadata.creationTimestamp", "date"),
    ]


def test_kubectl_get_tq_columns() -> None:
    assert printer_columns("tenantquotas") == [
        ("TENANT", ".spec.tenant", "string"),
        ("NAMESPACE", ".spec.namespace", "string"),
        ("RATE", ".spec.rate.requestsPerSecond", "number"),
        ("APPLIED", ".status.applied", "boolean"),
        ("AGE", ".metadata.creationTimestamp", "date"),
    ]


@pytest.mark.parametrize("plural", PLURALS)
def test_kubernetes_validate_accepts_the_crd(plural: str) -> None:
    result = kubernetes_validate(CRDS / f"{plural}.edgegate.io.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_refuses_a_malformed_crd(tmp_path: Path) -> None:
    """The check above can fail: a misspelt schema keyword is refused under --strict."""
    crd = copy.deepcopy(load_crd("modeldeployments"))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["replicas"]["maximun"] = 100
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(crd), encoding="utf-8")
    result = kubernetes_validate(broken)
    assert result.returncode != 0
    assert "maximun" in result.stdout + result.stderr


@pytest.mark.parametrize("plural", PLURALS)
def test_the_schema_is_structural(plural: str) -> None:
    assert structural_problems(checker(plural).schema) == []


def test_the_structural_check_finds_what_it_looks_for() -> None:
    schema: Json = {
        "type": "object",
        "properties": {
            "a": {"description": "no type"},
            "b": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "c": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "d": {"type": "integer", "default": 500, "maximum": 100},
            "e": {
                "type": "object",
                "properties": {"f": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.f > 0", "fieldPath": ".g"}],
            },
        },
    }
    problems = "\n".join(structural_problems(schema))
    for expected in (
        "a: a type",
        "b: uniqueItems",
        "c: x-kubernetes-preserve-unknown-fields",
        "d: default 500",
        "e: rule 'self.f > 0' has no message",
        "e: rule 'self.f > 0': fieldPath .g names no field",
    ):
        assert expected in problems


@pytest.mark.parametrize("plural", PLURALS)
def test_every_field_is_documented(plural: str) -> None:
    assert undocumented(checker(plural).schema) == []


# --- the CEL rules ---------------------------------------------------------------------------


def test_every_cel_rule_has_a_predicate_and_every_predicate_a_rule() -> None:
    used = {fold(r["rule"]) for p in PLURALS for _, r in rules(checker(p).schema)}
    assert used == set(CEL_PREDICATES)


def test_a_cel_rule_without_a_predicate_is_refused() -> None:
    crd = copy.deepcopy(load_crd("tenantquotas"))
    rate = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rate["properties"]["rate"]["x-kubernetes-validations"].append(
        {"rule": "self.burst >= self.requestsPerSecond", "message": "burst below the rate"}
    )
    with pytest.raises(UncheckedRule, match=r"self\.burst >= self\.requestsPerSecond"):
        CrdChecker(crd)


# --- custom resources --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plural", "name"),
    [("modeldeployments", "modeldeployment"), ("tenantquotas", "tenantquota")],
)
def test_the_example_is_accepted(plural: str, name: str) -> None:
    cr = example(name)
    assert cr["apiVersion"] == "edgegate.io/v1alpha1"
    assert checker(plural).refusals(cr) == []


def test_the_md_example_is_a_realistic_canary() -> None:
    spec = example("modeldeployment")["spec"]
    steps = spec["canary"]["steps"]
    assert [s["setWeight"] for s in steps if "setWeight" in s] == [5, 25, 50, 100]
    assert {"pause", "analysis"} <= {key for s in steps for key in s}
    assert {} in [s.get("pause") for s in steps]  # one hold until an SRE promotes
    assert spec["canary"]["shadowPercent"] > 0 and "minAgreement" in spec["canary"]["analysis"]
    assert spec["fallback"]["apiKeySecretRef"]["name"]


def test_defaults_are_what_the_operator_reads() -> None:
    """A minimal ModelDeployment, as the API server stores it and the operator reads it."""
    minimal: Json = {"spec": {"model": {"name": "m", "version": "1", "uri": "file:///m.onnx"}}}
    spec = checker("modeldeployments").defaulted(minimal)["spec"]
    assert spec["runtime"] == {
        "executionProviders": ["cpu"],
        "maxBatchSize": 64,
        "maxQueueDelayMicroseconds": 0,
        "queueTimeoutSeconds": 2,
        "instances": 1,
    }
    assert (spec["replicas"], spec["paused"]) == (1, False)
    assert spec["canary"] == {
        "analysis": {
            "interval": "30s",
            "maxErrorRate": 0.01,
            "maxP99LatencySeconds": 1,
            "minRequests": 20,
            "failureLimit": 2,
            "inconclusiveLimit": 3,
        },
        "shadowPercent": 0,
        "progressDeadlineSeconds": 600,
    }
    assert "fallback" not in spec
    with_fallback = copy.deepcopy(minimal)
    with_fallback["spec"]["fallback"] = {
        "endpoint": "https://cloud.example/v1",
        "apiKeySecretRef": {"name": "s"},
    }
    fallback = checker("modeldeployments").defaulted(with_fallback)["spec"]["fallback"]
    assert fallback["protocol"] == "openai"
    assert fallback["apiKeySecretRef"] == {"name": "s", "key": "api-key"}
    assert fallback["breaker"] == {
        "windowSeconds": 30,
        "minCalls": 20,
        "failureRate": 0.5,
        "slowCallSeconds": 2,
        "slowCallRate": 0.8,
        "openSeconds": 10,
        "maxOpenSeconds": 300,
        "probes": 3,
    }


DELETE = object()


def changed(cr: Json, changes: dict[str, Any]) -> Json:
    """`cr` with each dotted path (list indices as numbers) set, or deleted with DELETE."""
    cr = copy.deepcopy(cr)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = cr
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return cr


MD = ("modeldeployments", "modeldeployment")
TQ = ("tenantquotas", "tenantquota")
REFUSED: list[tuple[tuple[str, str], dict[str, Any], str]] = [
    (MD, {"spec.canary.steps.0.setWeight": 500}, "spec.canary.steps[0].setWeight"),
    (MD, {"spec.model.revision": "3"}, "spec.model.revision"),
    # Without its GPU limit: with one, the GPU rule would refuse a CPU-less list as well.
    (
        MD,
        {"spec.resources": DELETE, "spec.runtime.executionProviders": ["fpga"]},
        "spec.runtime.executionProviders[0]",
    ),
    (MD, {"spec.canary.steps.0": {"setWeight": 5, "pause": {}}}, "spec.canary.steps[0]"),
    (MD, {"spec.canary.steps.2": {}}, "spec.canary.steps[2]"),
    (MD, {"spec.replicas": -1}, "spec.replicas"),
    (MD, {"spec.canary.shadowPercent": DELETE}, "spec.canary.analysis.minAgreement"),
    (MD, {"spec.canary.shadowPercent": 0}, "spec.canary.analysis.minAgreement"),
    (MD, {"spec.model.sha256": "6FD5D72F"}, "spec.model.sha256"),
    (MD, {"spec.model.uri": "ftp://models/m.onnx"}, "spec.model.uri"),
    (MD, {"spec.canary.steps.1.pause.duration": "5 min"}, "spec.canary.steps[1].pause.duration"),
    (MD, {"spec.runtime.executionProviders": ["cpu"]}, "spec.resources.limits"),
    (MD, {"spec.fallback.breaker.maxOpenSeconds": 5}, "spec.fallback.breaker.maxOpenSeconds"),
    (MD, {"spec.fallback.protocol": "grpc"}, "spec.fallback.protocol"),
    (MD, {"spec.breakers": [{"version": "1"}, {"version": "1"}]}, "spec.breakers[1]"),
    (MD, {"spec.resources.limits.memory": "2 GB"}, "spec.resources.limits.memory"),
    (MD, {"spec.model.uri": DELETE}, "spec.model"),
    (TQ, {"spec.rate.perKeyRequestsPerSecond": DELETE}, "spec.rate.perKeyBurst"),
    (TQ, {"spec.tenant": "Acme_Corp"}, "spec.tenant"),
    (TQ, {"spec.namespace": "-acme"}, "spec.namespace"),
    (TQ, {"spec.rate.requestsPerSecond": 0}, "spec.rate.requestsPerSecond"),
    (TQ, {"spec.compute.gpus": 1}, "spec.compute.gpus"),
]


@pytest.mark.parametrize(
    ("crd", "changes", "field"), REFUSED, ids=[f"{c[0][1]}:{c[2]}" for c in REFUSED]
)
def test_a_bad_cr_is_refused_with_the_field_named(
    crd: tuple[str, str], changes: dict[str, Any], field: str
) -> None:
    plural, name = crd
    cr = changed(example(name), changes)
    assert [r.path for r in checker(plural).refusals(cr)] == [field]


# --- status ------------------------------------------------------------------------------

MD_STATUS: Json = {
    "phase": "Progressing",
    "stableVersion": "1",
    "canaryVersion": "2",
    "weight": 25,
    "step": 4,
    "stepStartedAt": "2026-03-02T10:15:00.250Z",
    "rolloutStartedAt": "2026-03-02T10:02:30Z",
    "lastAnalysis": {
        "at": "2026-03-02T10:15:30Z",
        "requests": 412,
        "errorRate": 0.0024,
        "p99Seconds": 0.081,
        "agreement": 0.993,
        "verdict": "Pass",
        "message": "errors 0.24% <= 1%, p99 81ms <= 250ms, agreement 99.3% >= 98%",
    },
    "failedChecks": 0,
    "inconclusiveChecks": 1,
    "breakers": [
        {"version": "1", "state": "closed", "mode": "auto", "since": "2026-03-01T08:00:00Z"},
        {
            "version": "2",
            "state": "half_open",
            "mode": "auto",
            "since": "2026-03-02T10:14:55+01:00",
            "reason": "failure rate 0.55 >= 0.5 over 20 calls",
        },
    ],
    "breakerSummary": "1:closed 2:half_open",
    "canaryReadyReplicas": 1,
    "stableReadyReplicas": 3,
    "lastCommandId": "7d0c6a3e-promote",
    "conditions": [
        {
            "type": "Progressing",
            "status": "True",
            "reason": "StepAnalysis",
            "message": "step 4 of 10: analysis",
            "lastTransitionTime": "2026-03-02T10:15:00Z",
            "observedGeneration": 7,
        },
        {
            "type": "Available",
            "status": "True",
            "reason": "StableReady",
            "message": "3/3 stable replicas ready",
            "lastTransitionTime": "2026-03-01T08:00:00Z",
        },
    ],
    "observedGeneration": 7,
    "message": "canary 2 at 25%",
}


def with_status(name: str, status: Json) -> Json:
    return {**example(name), "status": status}


def test_a_status_is_accepted() -> None:
    cr = with_status("modeldeployment", MD_STATUS)
    assert checker("modeldeployments").refusals(cr) == []
    aborted = {**MD_STATUS, "phase": "Aborted", "canaryVersion": "", "weight": 0}
    aborted["abortReason"] = "2 failed checks: p99 1.4s > 250ms"
    assert checker("modeldeployments").refusals(with_status("modeldeployment", aborted)) == []


def test_nulls_in_a_status_are_pruned_not_refused() -> None:
    """The API server drops a null in a non-nullable field, as if the field were absent.

    The operator writes None for "no value yet" (a merge patch's null deletes the field).
    """
    pending = {
        **MD_STATUS,
        "phase": "Pending",
        "canaryVersion": None,
        "stepStartedAt": None,
        "lastAnalysis": None,
        "breakers": [{"version": "1", "state": "closed", "mode": "auto", "reason": None}],
    }
    cr = with_status("modeldeployment", pending)
    assert checker("modeldeployments").refusals(cr) == []
    stored = checker("modeldeployments").defaulted(cr)["status"]
    assert "lastAnalysis" not in stored and "canaryVersion" not in stored
    assert stored["breakers"] == [{"version": "1", "state": "closed", "mode": "auto"}]


def test_a_tq_status_is_accepted() -> None:
    status = {
        "applied": True,
        "usage": {"cpu": "1500m", "memory": "3Gi", "nvidia.com/gpu": "1", "pods": "4"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Applied",
                "message": "ResourceQuota, LimitRange and rate limits in place",
                "lastTransitionTime": "2026-03-02T10:00:00Z",
            }
        ],
        "observedGeneration": 2,
    }
    assert checker("tenantquotas").refusals(with_status("tenantquota", status)) == []


STATUS_REFUSED = [
    ({"phase": "Exploded"}, "status.phase"),
    ({"weight": 101}, "status.weight"),
    ({"stepStartedAt": "2026-03-02 10:15"}, "status.stepStartedAt"),
    ({"breakers": [{"version": "2", "state": "melted"}]}, "status.breakers[0].state"),
    ({"breakers": [{"version": "1", "state": "open"}] * 2}, "status.breakers[1]"),
    ({"lastAnalysis": {"verdict": "Maybe"}}, "status.lastAnalysis.verdict"),
    (
        {"conditions": [{**MD_STATUS["conditions"][0], "type": "Ready"}]},
        "status.conditions[0].type",
    ),
    ({"conditions": [{"type": "Paused", "status": "True"}]}, "status.conditions[0]"),
    ({"canaryReadyReplicas": -1}, "status.canaryReadyReplicas"),
    ({"rolloutState": "x"}, "status.rolloutState"),
]


@pytest.mark.parametrize(("change", "field"), STATUS_REFUSED, ids=[f for _, f in STATUS_REFUSED])
def test_a_bad_status_is_refused_with_the_field_named(change: Json, field: str) -> None:
    cr = with_status("modeldeployment", {**MD_STATUS, **change})
    assert {r.path for r in checker("modeldeployments").refusals(cr)} == {field}
