"""A TenantQuota as Kubernetes objects, a gateway rate document and a status (pure code).

The rate document is parsed with the gateway's own `Quota.from_json`, the objects are
checked against Kubernetes 1.31's schemas, and every TenantQuota and status here against
the TenantQuota CRD, so that what the operator writes is what the others accept.
"""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from support.crd_schema import checker

from edgegate_common import subjects
from edgegate_gateway.core.quota import Limit, Quota
from edgegate_operator.core import quota
from edgegate_operator.core.quota import Plan, Problem, QuotaSpecError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "tenantquota.yaml"
NOW_MS = 1_700_000_000_000
LATER_MS = NOW_MS + 60_000

Json = dict[str, Any]


def example(**spec: Any) -> Json:
    """The example TenantQuota as the API server hands it out, `spec` keys replaced."""
    body: Json = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    body["metadata"].update(uid="0b5e-uid", generation=1)
    body["spec"].update(spec)
    assert checker("tenantquotas").refusals(body) == []
    return body


def without(body: Json, *path: str) -> Json:
    out = copy.deepcopy(body)
    node = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


def gateway_quota(doc: Json) -> Quota:
    """The rate document as the gateways read it from KV (the operator's bus writes this)."""
    return Quota.from_json(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


# --- the objects ----------------------------------------------------------------------------


def test_the_example_becomes_a_resource_quota_and_a_limit_range_in_the_tenant_namespace() -> None:
    plan = quota.plan(example())
    labels = {
        "app.kubernetes.io/managed-by": "edgegate-operator",
        "edgegate.io/tenantquota": "acme",
    }
    meta = {"name": "edgegate-acme", "namespace": "tenant-acme", "labels": labels}
    assert plan.resource_quota == {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": meta,
        "spec": {
            "hard": {
                "requests.cpu": "8",
                "requests.memory": "16Gi",
                "requests.nvidia.com/gpu": "1",
                "pods": "20",
            }
        },
    }
    assert plan.limit_range == {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": meta,
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": "500m", "memory": "512Mi"},
                    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                }
            ]
        },
    }
    for obj in (plan.resource_quota, plan.limit_range):
        kubernetes_validate.validate(obj, "1.31.0", strict=True)


def test_owner_references_only_within_one_namespace() -> None:
    """Across namespaces the garbage collector would delete the children at once."""
    apart = quota.plan(example())
    assert apart.resource_quota is not None
    assert "ownerReferences" not in apart.resource_quota["metadata"]

    body = example(namespace="edgegate")
    together = quota.plan(body)
    for obj in (together.resource_quota, together.limit_range):
        assert obj is not None
        assert obj["metadata"]["namespace"] == "edgegate"
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "edgegate.io/v1alpha1",
                "kind": "TenantQuota",
                "name": "acme",
                "uid": "0b5e-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        kubernetes_validate.validate(obj, "1.31.0", strict=True)


def test_a_default_limit_is_also_the_default_request_as_the_api_server_would_make_it() -> None:
    body = example(
        limitRange={"default": {"cpu": "1", "memory": "1Gi"}, "defaultRequest": {"cpu": "250m"}}
    )
    limit_range = quota.plan(body).limit_range
    assert limit_range is not None
    assert limit_range["spec"]["limits"] == [
        {
            "type": "Container",
            "default": {"cpu": "1", "memory": "1Gi"},
            "defaultRequest": {"cpu": "250m", "memory": "1Gi"},
        }
    ]


def test_no_compute_and_no_limit_range_mean_no_such_objects() -> None:
    body = without(without(example(), "spec", "compute"), "spec", "limitRange")
    assert checker("tenantquotas").refusals(body) == []
    plan = quota.plan(body)
    assert plan.resource_quota is None
    assert plan.limit_range is None
    assert plan.rates is not None


def test_a_long_name_still_makes_valid_names_and_labels() -> None:
    body = example()
    body["metadata"]["name"] = "a" * 70 + ".team-b"
    plan = quota.plan(body)
    assert plan.resource_quota is not None
    kubernetes_validate.validate(plan.resource_quota, "1.31.0", strict=True)
    assert plan.name == "edgegate-" + "a" * 70 + ".team-b"
    assert plan.resource_quota["metadata"]["labels"]["edgegate.io/tenantquota"] == "a" * 63


# --- the rate document ----------------------------------------------------------------------


def test_the_rate_document_is_what_the_gateway_reads() -> None:
    plan = quota.plan(example())
    assert plan.key == subjects.ident("acme") == "acme"
    assert plan.rates == {"rate_per_s": 50, "burst": 100, "key_rate_per_s": 5, "key_burst": 10}
    assert gateway_quota(plan.rates) == Quota(
        tenant=Limit(rate_per_s=50, burst=100), per_key=Limit(rate_per_s=5, burst=10)
    )


def test_an_absent_burst_is_the_rate_rounded_up_as_the_crd_promises() -> None:
    plan = quota.plan(example(rate={"requestsPerSecond": 2.5, "perKeyRequestsPerSecond": 0.2}))
    assert plan.rates is not None
    assert gateway_quota(plan.rates) == Quota(
        tenant=Limit(rate_per_s=2.5, burst=3), per_key=Limit(rate_per_s=0.2, burst=1)
    )


def test_no_rate_means_no_document_and_the_gateways_defaults() -> None:
    assert quota.plan(without(example(), "spec", "rate")).rates is None


def test_the_key_is_the_one_the_gateway_looks_the_tenant_up_by() -> None:
    assert quota.kv_key("acme") == subjects.ident("acme")
    assert quota.kv_key("Team B") == subjects.ident("Team B") != "Team B"


# --- what the schema lets through, and the core refuses -------------------------------------

PAST_THE_SCHEMA = [
    ({"compute": {"cpu": "1e1.5"}}, "spec.compute.cpu: '1e1.5' is not a quantity"),
    ({"compute": {"memory": "-1Gi"}}, "spec.compute.memory: -1Gi is negative"),
    ({"compute": {"pods": "1.5"}}, "spec.compute.pods: 1.5 is not a whole number"),
    ({"compute": {"nvidia.com/gpu": "500m"}}, "spec.compute.nvidia.com/gpu: 500m is not a whole"),
    (
        {"limitRange": {"default": {"cpu": "500m"}, "defaultRequest": {"cpu": "1"}}},
        "spec.limitRange.defaultRequest.cpu (1) is above spec.limitRange.default.cpu (500m)",
    ),
    (
        {"limitRange": {"default": {"memory": "1e99999999"}}},
        "spec.limitRange.default.memory: '1e99999999' is out of range",
    ),
]

# Refused by the schema too, but a cluster without CEL (or KMock) lets them in.
SCHEMA_REFUSES = [
    ({"rate": {"requestsPerSecond": 0, "burst": 10}}, "requestsPerSecond must be a number above"),
    ({"rate": {"requestsPerSecond": True}}, "spec.rate.requestsPerSecond must be a number above 0"),
    ({"rate": {"requestsPerSecond": 5, "burst": 0}}, "spec.rate.burst must be a whole number"),
    ({"rate": {"requestsPerSecond": 5, "burst": 2.5}}, "spec.rate.burst must be a whole number"),
    ({"rate": {"requestsPerSecond": 5, "perKeyBurst": 3}}, "spec.rate.perKeyBurst needs"),
    ({"rate": {"burst": 3}}, "spec.rate.burst needs spec.rate.requestsPerSecond"),
    ({"compute": {"cpu": "eight"}}, "spec.compute.cpu: 'eight' is not a quantity"),
    ({"compute": {"pods": True}}, "spec.compute.pods: True is not a quantity"),
    ({"namespace": ""}, "spec.namespace is required"),
]


@pytest.mark.parametrize(("spec", "message"), PAST_THE_SCHEMA)
def test_what_the_schema_lets_through_is_refused_with_the_field_named(
    spec: Json, message: str
) -> None:
    body = example(**spec)  # asserts the CRD accepts it
    with pytest.raises(QuotaSpecError, match="^" + re.escape(message)):
        quota.plan(body)


@pytest.mark.parametrize(("spec", "message"), SCHEMA_REFUSES)
def test_what_the_schema_refuses_is_refused_again(spec: Json, message: str) -> None:
    body = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    body["spec"].update(spec)
    assert checker("tenantquotas").refusals(body) != []
    with pytest.raises(QuotaSpecError, match=re.escape(message)):
        quota.plan(body)


def test_every_problem_is_named_at_once() -> None:
    body = example(compute={"cpu": "-1", "pods": "2.5"})
    with pytest.raises(QuotaSpecError) as caught:
        quota.plan(body)
    assert str(caught.value) == (
        "spec.compute.cpu: -1 is negative; spec.compute.pods: 2.5 is not a whole number"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("16Gi", Decimal(16 * 2**30)),
        ("1e3", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("+.5k", Decimal(500)),
        ("5.", Decimal(5)),
        (20, Decimal(20)),
        ("100n", Decimal("1e-7")),
    ],
)
def test_quantities_parse_as_kubernetes_reads_them(text: object, value: Decimal) -> None:
    assert quota.parse_quantity(text) == value


# --- patches --------------------------------------------------------------------------------


def test_a_stored_object_in_canonical_form_needs_no_patch() -> None:
    plan = quota.plan(example())
    assert plan.resource_quota is not None and plan.limit_range is not None
    stored = copy.deepcopy(plan.resource_quota)
    stored["metadata"] |= {"uid": "x", "resourceVersion": "7"}
    stored["metadata"]["labels"]["someone-else"] = "theirs"
    stored["spec"]["hard"] |= {"requests.cpu": "8000m", "pods": 20}
    stored["status"] = {"used": {"pods": "3"}}
    assert quota.object_patch(stored, plan.resource_quota) == {}
    assert quota.object_patch(plan.limit_range, plan.limit_range) == {}


def test_a_patch_sets_what_changed_and_removes_what_the_spec_dropped() -> None:
    before = quota.plan(example())
    after = quota.plan(example(compute={"cpu": "16", "memory": "16Gi", "nvidia.com/gpu": 1}))
    assert before.resource_quota is not None and after.resource_quota is not None
    assert quota.object_patch(before.resource_quota, after.resource_quota) == {
        "spec": {"hard": {"requests.cpu": "16", "pods": None}}
    }


def test_a_patch_restores_labels_and_owner_references() -> None:
    plan = quota.plan(example(namespace="edgegate"))
    assert plan.limit_range is not None
    stored = copy.deepcopy(plan.limit_range)
    stored["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "someone"}
    del stored["metadata"]["ownerReferences"]
    patch = quota.object_patch(stored, plan.limit_range)
    assert patch == {
        "metadata": {
            "labels": plan.limit_range["metadata"]["labels"],
            "ownerReferences": plan.limit_range["metadata"]["ownerReferences"],
        }
    }


# --- status ---------------------------------------------------------------------------------


def resource_quota(used: Json, hard: Json) -> Json:
    return {"metadata": {"name": "edgegate-acme"}, "status": {"used": used, "hard": hard}}


def with_status(body: Json, status: Json) -> Json:
    out = {**body, "status": status}
    assert checker("tenantquotas").refusals(out) == [], "the CRD refuses this status"
    return out


def condition(status: Json, kind: str) -> Json:
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return dict(found)


def test_applied_status_reports_usage_and_what_is_at_its_limit() -> None:
    body = example()
    observed = resource_quota(
        used={"requests.cpu": "2500m", "pods": "20", "requests.memory": "3Gi"},
        hard={"requests.cpu": "8", "pods": "20", "requests.memory": "16Gi"},
    )
    status = quota.status(body, outcome=quota.plan(body), quota=observed, now_ms=NOW_MS)
    with_status(body, status)
    assert status["applied"] is True
    assert status["observedGeneration"] == 1
    assert status["usage"] == {"pods": "20", "requests.cpu": "2500m", "requests.memory": "3Gi"}
    message = (
        "ResourceQuota and LimitRange edgegate-acme in tenant-acme; 50 requests/s (burst 100), "
        "5/s per key (burst 10); at the limit: pods (20 of 20)"
    )
    assert status["message"] == message
    assert condition(status, "Ready") == {
        "type": "Ready",
        "status": "True",
        "reason": "Applied",
        "message": message,
        "lastTransitionTime": "2023-11-14T22:13:20.000Z",
        "observedGeneration": 1,
    }
    assert condition(status, "Degraded")["status"] == "False"


def test_before_the_quota_controller_counts_usage_is_empty() -> None:
    body = without(example(), "spec", "rate")
    status = quota.status(body, outcome=quota.plan(body), quota=None, now_ms=NOW_MS)
    with_status(body, status)
    assert status["usage"] == {}
    assert status["message"] == (
        "ResourceQuota and LimitRange edgegate-acme in tenant-acme; "
        "the gateways' default rate limits"
    )


def test_an_invalid_spec_is_degraded_and_not_applied_yet_usage_is_still_shown() -> None:
    body = example(compute={"cpu": "-1"})
    with pytest.raises(QuotaSpecError) as caught:
        quota.plan(body)
    problem = Problem("InvalidSpec", str(caught.value))
    observed = resource_quota(used={"requests.cpu": "1"}, hard={"requests.cpu": "8"})
    status = quota.status(body, outcome=problem, quota=observed, now_ms=NOW_MS)
    with_status(body, status)
    assert status["applied"] is False
    assert status["usage"] == {"requests.cpu": "1"}
    assert condition(status, "Ready") | {"lastTransitionTime": ""} == {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "message": "spec.compute.cpu: -1 is negative",
        "lastTransitionTime": "",
        "observedGeneration": 1,
    }
    assert condition(status, "Degraded")["status"] == "True"
    assert condition(status, "Degraded")["message"] == "spec.compute.cpu: -1 is negative"


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    body = example()
    plan: Plan = quota.plan(body)
    first = quota.status(body, outcome=plan, quota=None, now_ms=NOW_MS)
    busy = resource_quota(used={"pods": "4"}, hard={"pods": "20"})
    again = quota.status(with_status(body, first), outcome=plan, quota=busy, now_ms=LATER_MS)
    assert again["usage"] == {"pods": "4"}
    assert condition(again, "Ready")["lastTransitionTime"] == "2023-11-14T22:13:20.000Z"

    broken = quota.status(
        with_status(body, again), outcome=Problem("Refused", "no"), quota=busy, now_ms=LATER_MS
    )
    assert condition(broken, "Ready")["lastTransitionTime"] == "2023-11-14T22:14:20.000Z"
    assert condition(broken, "Ready")["reason"] == "Refused"


def test_status_stays_within_the_crd_limits() -> None:
    body = example()
    used = {f"count/thing{i}.example.com": "1" * 100 for i in range(100)}
    status = quota.status(
        body, outcome=Problem("Refused", "x" * 5000), quota=resource_quota(used, {}), now_ms=NOW_MS
    )
    with_status(body, status)
    assert len(status["usage"]) == 64
