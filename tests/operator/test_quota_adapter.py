"""QuotaReconciler against KMock and a real nats-server: objects, rates, status, deletion.

KMock runs no quota controller, so the test plays it: it writes the ResourceQuota's
status.used through /status, as the controller would, and the TenantQuota's status must
follow. The rate document is read back from NATS KV and parsed by the gateway's own parser.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from nats.js.errors import KeyNotFoundError
from support.kmock_cluster import LIMITRANGES, RESOURCEQUOTAS, TENANTQUOTAS, KMockCluster, status_of

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_gateway.core.quota import Limit, Quota
from edgegate_operator.adapters.bus import OperatorBus
from edgegate_operator.adapters.kube import Kube, api_client
from edgegate_operator.manifests import GROUP, VERSION
from edgegate_operator.manifests import TENANTQUOTAS as PLURAL
from edgegate_operator.tenantquota import MERGE_PATCH, QuotaReconciler

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "tenantquota.yaml"
HOME = "edgegate"  # where the TenantQuotas live
TENANT_NS = "tenant-acme"

Json = dict[str, Any]


@pytest.fixture
def cluster() -> Iterator[KMockCluster]:
    running = KMockCluster().start()
    yield running
    running.stop()


@pytest.fixture
async def kube(cluster: KMockCluster, tmp_path: Path) -> AsyncIterator[Kube]:
    client = Kube(api_client(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
    yield client
    client.close()


@pytest.fixture
async def operator_bus(bus: Bus) -> AsyncIterator[OperatorBus]:
    opened = await OperatorBus.open(bus)
    yield opened
    await opened.close()


@pytest.fixture
def reconciler(kube: Kube, operator_bus: OperatorBus) -> QuotaReconciler:
    return QuotaReconciler(kube, operator_bus)


@pytest.fixture
def tenant() -> str:
    """A tenant of this test's own: the nats-server is shared by the session."""
    return f"acme-{uuid.uuid4().hex[:8]}"


class Harness:
    """The TenantQuota's life as kubectl and the quota controller would write it."""

    def __init__(self, cluster: KMockCluster, kube: Kube, bus: Bus) -> None:
        self.cluster, self.kube, self.bus = cluster, kube, bus

    async def create(self, name: str, **spec: Any) -> Json:
        body: Json = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        body["metadata"] = {"name": name, "namespace": HOME}
        body["spec"].update(spec)
        await asyncio.to_thread(
            self.kube.custom.create_namespaced_custom_object, GROUP, VERSION, HOME, PLURAL, body
        )
        return self.body(name)

    async def patch_spec(self, name: str, spec: Json) -> Json:
        await asyncio.to_thread(
            self.kube.custom.patch_namespaced_custom_object,
            GROUP, VERSION, HOME, PLURAL, name, {"spec": spec},
        )  # fmt: skip
        return self.body(name)

    def body(self, name: str) -> Json:
        found = self.cluster.get(TENANTQUOTAS, HOME, name)
        assert found is not None
        return found

    async def count_usage(self, namespace: str, name: str, used: Json, hard: Json) -> None:
        """What the quota controller does: write the ResourceQuota's status."""
        await asyncio.to_thread(
            self.kube.core.patch_namespaced_resource_quota_status,
            name, namespace, {"status": {"used": used, "hard": hard}},
            _content_type=MERGE_PATCH,
        )  # fmt: skip

    async def rates(self, tenant: str) -> Quota | None:
        kv = await self.bus.js.key_value(subjects.KV_QUOTAS)
        try:
            entry = await kv.get(subjects.ident(tenant))
        except KeyNotFoundError:  # deleted ones too
            return None
        assert entry.value
        return Quota.from_json(entry.value)

    def writes(self, plural: str, *, subresource: str | None = None) -> list[Any]:
        return [
            r
            for r in self.cluster.requests()
            if r.method in (kmock.method.POST, kmock.method.PATCH)
            and r.resource is not None
            and r.resource.plural == plural
            and r.subresource == subresource
        ]


@pytest.fixture
def harness(cluster: KMockCluster, kube: Kube, bus: Bus) -> Harness:
    return Harness(cluster, kube, bus)


def condition(status: Json, kind: str) -> Json:
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return dict(found)


async def test_a_tenant_quota_is_applied_counted_changed_and_removed(
    reconciler: QuotaReconciler, harness: Harness, cluster: KMockCluster, tenant: str
) -> None:
    body = await harness.create("acme", tenant=tenant)
    await reconciler.reconcile(body)

    rq = cluster.get(RESOURCEQUOTAS, TENANT_NS, "edgegate-acme")
    lr = cluster.get(LIMITRANGES, TENANT_NS, "edgegate-acme")
    assert rq is not None and lr is not None
    assert rq["spec"]["hard"] == {
        "requests.cpu": "8",
        "requests.memory": "16Gi",
        "requests.nvidia.com/gpu": "1",
        "pods": "20",
    }
    assert lr["spec"]["limits"] == [
        {
            "type": "Container",
            "default": {"cpu": "500m", "memory": "512Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        }
    ]
    for child in (rq, lr):
        assert child["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "edgegate-operator",
            "edgegate.io/tenantquota": "acme",
        }
        assert "ownerReferences" not in child["metadata"]  # edgegate != tenant-acme
    assert await harness.rates(tenant) == Quota(
        tenant=Limit(rate_per_s=50, burst=100), per_key=Limit(rate_per_s=5, burst=10)
    )

    status = status_of(harness.body("acme"))
    assert status["applied"] is True
    assert status["observedGeneration"] == 1
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Degraded")["status"] == "False"
    assert len(harness.writes("tenantquotas", subresource="status")) == 1
    assert harness.writes("tenantquotas") == [harness.writes("tenantquotas")[0]]  # the create

    # Nothing changed: nothing is written, not even the status.
    before = len(list(cluster.requests()))
    again = await reconciler.reconcile(harness.body("acme"))
    assert again == status
    written = [r for r in list(cluster.requests())[before:] if r.method != kmock.method.GET]
    assert written == []

    # The quota controller counts: usage reaches the TenantQuota's status.
    hard = rq["spec"]["hard"]
    await harness.count_usage(
        TENANT_NS, "edgegate-acme", used={**hard, "requests.cpu": "1500m", "pods": "20"}, hard=hard
    )
    await reconciler.reconcile(harness.body("acme"))
    status = status_of(harness.body("acme"))
    assert status["usage"] == {
        "pods": "20",
        "requests.cpu": "1500m",
        "requests.memory": "16Gi",
        "requests.nvidia.com/gpu": "1",
    }
    assert "at the limit: pods (20 of 20), requests.memory (16Gi of 16Gi)" in status["message"]
    assert len(harness.writes("tenantquotas", subresource="status")) == 2

    # A new spec: the objects and the rates follow, a dropped resource leaves the quota.
    body = await harness.patch_spec(
        "acme",
        {
            "compute": {"cpu": "16", "pods": None, "nvidia.com/gpu": None},
            "rate": {"requestsPerSecond": 100, "burst": 200, "perKeyBurst": None},
        },
    )
    assert body["metadata"]["generation"] == 2
    await reconciler.reconcile(body)
    rq = cluster.get(RESOURCEQUOTAS, TENANT_NS, "edgegate-acme")
    assert rq is not None
    assert rq["spec"]["hard"] == {"requests.cpu": "16", "requests.memory": "16Gi"}
    assert await harness.rates(tenant) == Quota(
        tenant=Limit(rate_per_s=100, burst=200), per_key=Limit(rate_per_s=5, burst=5)
    )
    status = status_of(harness.body("acme"))
    assert status["observedGeneration"] == 2
    assert status["applied"] is True
    for patch in harness.writes("resourcequotas") + harness.writes("limitranges"):
        if patch.method == kmock.method.PATCH and patch.subresource is None:
            assert patch.headers["Content-Type"] == MERGE_PATCH

    # Removed: all three are gone, and forgetting twice is fine.
    await reconciler.forget(harness.body("acme"))
    await reconciler.forget(harness.body("acme"))
    assert cluster.get(RESOURCEQUOTAS, TENANT_NS, "edgegate-acme") is None
    assert cluster.get(LIMITRANGES, TENANT_NS, "edgegate-acme") is None
    assert await harness.rates(tenant) is None


async def test_an_invalid_spec_changes_nothing_in_place_and_says_why(
    reconciler: QuotaReconciler, harness: Harness, cluster: KMockCluster, tenant: str
) -> None:
    await reconciler.reconcile(await harness.create("acme", tenant=tenant))
    applied = cluster.get(RESOURCEQUOTAS, TENANT_NS, "edgegate-acme")

    body = await harness.patch_spec(
        "acme", {"compute": {"cpu": "-2"}, "rate": {"requestsPerSecond": 0, "burst": 10}}
    )
    returned = await reconciler.reconcile(body)
    status = status_of(harness.body("acme"))
    assert returned == status
    assert status["applied"] is False
    assert status["observedGeneration"] == 2
    message = (
        "spec.compute.cpu: -2 is negative; spec.rate.requestsPerSecond must be a number above 0 "
        "(its burst would never refill); nothing of this spec was applied"
    )
    assert condition(status, "Degraded") | {"lastTransitionTime": ""} == {
        "type": "Degraded",
        "status": "True",
        "reason": "InvalidSpec",
        "message": message,
        "lastTransitionTime": "",
        "observedGeneration": 2,
    }
    assert condition(status, "Ready")["status"] == "False"
    assert cluster.get(RESOURCEQUOTAS, TENANT_NS, "edgegate-acme") == applied
    assert await harness.rates(tenant) == Quota(
        tenant=Limit(rate_per_s=50, burst=100), per_key=Limit(rate_per_s=5, burst=10)
    )

    # Fixed: Ready again.
    body = await harness.patch_spec(
        "acme", {"compute": {"cpu": "4"}, "rate": {"requestsPerSecond": 10, "burst": 10}}
    )
    await reconciler.reconcile(body)
    status = status_of(harness.body("acme"))
    assert status["applied"] is True
    assert condition(status, "Degraded")["status"] == "False"
    assert await harness.rates(tenant) == Quota(
        tenant=Limit(rate_per_s=10, burst=10), per_key=Limit(rate_per_s=5, burst=10)
    )


async def test_a_refused_write_is_reported_not_retried_blindly(
    reconciler: QuotaReconciler, harness: Harness, cluster: KMockCluster, tenant: str
) -> None:
    missing = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": 'namespaces "tenant-gone" not found',
        "reason": "NotFound",
        "code": 404,
    }
    refused = cluster.api[kmock.action.CREATE, kmock.namespace("tenant-gone")]
    refused << 404 << missing
    body = await harness.create("acme", tenant=tenant, namespace="tenant-gone")
    await reconciler.reconcile(body)
    status = status_of(harness.body("acme"))
    assert status["applied"] is False
    assert condition(status, "Degraded")["reason"] == "Refused"
    assert status["message"] == (
        "the API server refused ResourceQuota edgegate-acme in tenant-gone: "
        'namespaces "tenant-gone" not found'
    )
    assert await harness.rates(tenant) is None


async def test_children_in_the_quota_own_namespace_are_owned(
    reconciler: QuotaReconciler, harness: Harness, cluster: KMockCluster, tenant: str
) -> None:
    body = await harness.create("acme", tenant=tenant, namespace=HOME)
    await reconciler.reconcile(body)
    for plural in (RESOURCEQUOTAS, LIMITRANGES):
        child = cluster.get(plural, HOME, "edgegate-acme")
        assert child is not None
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "edgegate.io/v1alpha1",
                "kind": "TenantQuota",
                "name": "acme",
                "uid": body["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


async def test_a_moved_namespace_or_renamed_tenant_leaves_nothing_behind(
    reconciler: QuotaReconciler, harness: Harness, cluster: KMockCluster, tenant: str
) -> None:
    old = await harness.create("acme", tenant=tenant)
    await reconciler.reconcile(old)
    renamed = f"{tenant}-b"
    new = await harness.patch_spec("acme", {"tenant": renamed, "namespace": "tenant-b"})
    await reconciler.reconcile(new, old=old)
    assert cluster.get(RESOURCEQUOTAS, TENANT_NS, "edgegate-acme") is None
    assert cluster.get(LIMITRANGES, TENANT_NS, "edgegate-acme") is None
    assert cluster.get(RESOURCEQUOTAS, "tenant-b", "edgegate-acme") is not None
    assert await harness.rates(tenant) is None
    assert await harness.rates(renamed) is not None

    await reconciler.forget(harness.body("acme"))
    assert cluster.list(RESOURCEQUOTAS) == []
    assert cluster.list(LIMITRANGES) == []
    assert await harness.rates(renamed) is None
