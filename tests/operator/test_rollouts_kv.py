"""NATS KV `edgegate-rollouts`: each ModelDeployment's rollout, as the console reads it.

The document is checked as built (pure), the write as the bucket keeps it (a real
nats-server), and the whole path with the real operator: `python -m edgegate_operator`
(kopf) against KMock and a nats-server of this module's own, so that a test may delete
the bucket under it. The test plays the kubelet: every Deployment the operator creates
gets all its replicas ready at once, through /status, so rollouts move without
inference processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from support.kmock_cluster import DEPLOYMENTS, MODELDEPLOYMENTS, KMockCluster
from support.operator_world import OPERATOR_ARGS
from support.waiting import eventually

from edgegate_common import subjects
from edgegate_common.bus import Bus, ensure_key_value
from edgegate_common.local import LocalNatsServer
from edgegate_operator import manifests
from edgegate_operator.adapters.bus import OperatorBus
from edgegate_operator.core import RolloutStatus
from edgegate_operator.core.mirror import rollout_document
from edgegate_operator.rollouts import rollout_key

NS = "edgegate"
MANAGED = "app.kubernetes.io/managed-by=edgegate-operator"
MERGE_PATCH = "application/merge-patch+json"
TOP_KEYS = {"namespace", "name", "model", "generation", "observedAt", "spec", "status"}
SPEC_KEYS = {"version", "paused", "steps", "analysis"}
ANALYSIS_KEYS = {
    "interval", "maxErrorRate", "maxP99LatencySeconds", "minRequests", "failureLimit",
    "inconclusiveLimit",
}  # fmt: skip
STEPS = [{"setWeight": 20}, {"pause": {"duration": "3s"}}, {"setWeight": 100}]

Json = dict[str, Any]


def md_spec(name: str, *, version: str = "1", steps: list[Json] | None = None) -> Json:
    return {
        "model": {"name": name, "version": version, "uri": f"s3://models/{name}/{version}.onnx"},
        "replicas": 1,
        "canary": {
            "steps": STEPS if steps is None else steps,
            "analysis": {"maxErrorRate": 0.05, "minRequests": 7},
        },
    }


# --- the document, as built ------------------------------------------------------------------


def test_the_document_has_the_documented_shape_with_the_spec_thresholds() -> None:
    spec = md_spec("m")
    spec["canary"]["analysis"]["minAgreement"] = 0.9
    spec["canary"]["shadowPercent"] = 10
    status = RolloutStatus(stable_version="1", canary_version="2", weight=20, step=1)
    doc = rollout_document(
        namespace=NS, name="m-md", spec=spec, generation=3, status=status, observed_at_ms=1_500
    )
    assert set(doc) == TOP_KEYS
    assert (doc["namespace"], doc["name"], doc["model"], doc["generation"]) == (NS, "m-md", "m", 3)
    assert doc["observedAt"] == "1970-01-01T00:00:01.500Z"
    assert doc["spec"] == {
        "version": "1",
        "paused": False,
        "steps": ["setWeight 20", "pause 3s", "setWeight 100"],
        "analysis": {
            "interval": "30s", "maxErrorRate": 0.05, "maxP99LatencySeconds": 1.0,
            "minRequests": 7, "failureLimit": 2, "inconclusiveLimit": 3, "minAgreement": 0.9,
        },
    }  # fmt: skip
    assert doc["status"] == status.to_dict()
    assert None not in doc["status"].values()
    json.dumps(doc)  # JSON as it stands


def test_a_refused_spec_still_has_a_document_with_what_is_known() -> None:
    spec = md_spec("m", version="7", steps=[{"setWeight": 20}])  # never reaches 100
    spec["paused"] = True
    doc = rollout_document(
        namespace=NS, name="m", spec=spec, generation=1, status=RolloutStatus(), observed_at_ms=0
    )
    assert set(doc) == TOP_KEYS
    assert doc["model"] == "m"
    assert doc["spec"] == {"version": "7", "paused": True, "steps": [], "analysis": {}}
    broken = rollout_document(
        namespace=NS, name="m", spec={"model": 3}, generation=1, status=RolloutStatus(),
        observed_at_ms=0,
    )  # fmt: skip
    assert broken["model"] == "" and broken["spec"]["version"] == ""


def test_keys_are_namespace_dot_name_and_never_shared() -> None:
    assert rollout_key("edgegate", "all-minilm") == "edgegate.all-minilm"
    assert rollout_key("a.b", "c") != rollout_key("a", "b.c")


# --- the write, as the bucket keeps it ---------------------------------------------------------


@pytest.fixture
async def operator_bus(bus: Bus) -> AsyncIterator[OperatorBus]:
    opened = await OperatorBus.open(bus)
    yield opened
    await opened.close()


async def test_a_document_differing_only_in_its_time_is_not_rewritten(
    operator_bus: OperatorBus, bus: Bus
) -> None:
    key = f"{NS}.kv-{uuid.uuid4().hex[:8]}"
    kv = await bus.js.key_value(subjects.KV_ROLLOUTS)
    ignoring = frozenset({"observedAt"})
    first = {"observedAt": "2025-01-01T00:00:00.000Z", "status": {"weight": 20}}
    assert await operator_bus.put(subjects.KV_ROLLOUTS, key, first, ignoring=ignoring)
    revision = (await kv.get(key)).revision

    later = {**first, "observedAt": "2025-01-01T00:00:09.000Z"}
    assert not await operator_bus.put(subjects.KV_ROLLOUTS, key, later, ignoring=ignoring)
    entry = await kv.get(key)
    assert entry.revision == revision and json.loads(entry.value or b"") == first

    changed = {"observedAt": "2025-01-01T00:00:10.000Z", "status": {"weight": 50}}
    assert await operator_bus.put(subjects.KV_ROLLOUTS, key, changed, ignoring=ignoring)
    assert json.loads((await kv.get(key)).value or b"") == changed
    # Without `ignoring`, the time alone is a change (the routes' rule is untouched).
    assert await operator_bus.put(subjects.KV_ROLLOUTS, key, {**changed, "observedAt": "x"})


# --- the real operator -------------------------------------------------------------------------


class ReadyKubelet:
    """Every operator-made Deployment gets all its replicas ready, through /status."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self._apps = kubernetes.client.AppsV1Api(api)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ready-kubelet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for d in self._apps.list_namespaced_deployment(NS, label_selector=MANAGED).items:
                replicas = d.spec.replicas or 0
                if (d.status.ready_replicas if d.status else None) == replicas:
                    continue
                status = {"replicas": replicas, "readyReplicas": replicas}
                with contextlib.suppress(ApiException):  # deleted since the listing
                    self._apps.patch_namespaced_deployment_status(
                        d.metadata.name, NS, {"status": status}, _content_type=MERGE_PATCH
                    )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class Operated:
    nats_url: str
    cluster: KMockCluster
    custom: kubernetes.client.CustomObjectsApi
    log: Path

    def create(self, name: str, spec: Json) -> None:
        body = {"apiVersion": "edgegate.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": name, "namespace": NS}, "spec": spec}  # fmt: skip
        self.custom.create_namespaced_custom_object(
            "edgegate.io", "v1alpha1", NS, "modeldeployments", body
        )

    def patch_spec(self, name: str, spec: Json) -> None:
        self.custom.patch_namespaced_custom_object(
            "edgegate.io", "v1alpha1", NS, "modeldeployments", name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            "edgegate.io", "v1alpha1", NS, "modeldeployments", name
        )

    def status(self, name: str) -> Json:
        return dict((self.cluster.get(MODELDEPLOYMENTS, NS, name) or {}).get("status") or {})


@pytest.fixture(scope="module")
def operated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operated]:
    """The operator as a process, on KMock and a nats-server of this module's own."""
    folder = tmp_path_factory.mktemp("rollouts-kv")
    nats = LocalNatsServer(store_dir=folder / "nats")
    nats.start()
    cluster = KMockCluster().start()
    kubeconfig = cluster.write_kubeconfig(folder / "kubeconfig", namespace=NS)
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    kubelet = ReadyKubelet(api)
    log = folder / "operator.log"
    with log.open("ab") as out:
        operator = subprocess.Popen(
            [sys.executable, "-m", "edgegate_operator", "--nats-url", nats.url,
             "--kubeconfig", str(kubeconfig), *OPERATOR_ARGS],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield Operated(nats.url, cluster, kubernetes.client.CustomObjectsApi(api), log)
    finally:
        operator.terminate()
        operator.wait(timeout=15)
        kubelet.stop()
        api.close()
        cluster.stop()
        nats.stop()


@dataclass
class Rollouts:
    """The bucket as the console reads it."""

    bus: Bus

    async def doc(self, name: str) -> Json | None:
        try:
            kv = await self.bus.js.key_value(subjects.KV_ROLLOUTS)
            entry = await kv.get(rollout_key(NS, name))
        except (KeyNotFoundError, BucketNotFoundError):  # a test deletes the bucket
            return None
        return dict(json.loads(entry.value or b""))

    async def revision(self, name: str) -> int:
        kv = await self.bus.js.key_value(subjects.KV_ROLLOUTS)
        return int((await kv.get(rollout_key(NS, name))).revision)

    async def wait(self, name: str, what: str, check: Any, timeout_s: float = 30) -> Json:
        async def found() -> Json | None:
            doc = await self.doc(name)
            return doc if doc is not None and check(doc) else None

        result: Json = await eventually(found, timeout_s=timeout_s, interval_s=0.1, what=what)
        return result


@pytest.fixture
async def rollouts(operated: Operated) -> AsyncIterator[Rollouts]:
    bus = await Bus.connect(servers=[operated.nats_url], name="console", connect_timeout_s=5)
    yield Rollouts(bus)
    await bus.close()


def healthy(doc: Json) -> bool:
    return bool(doc["status"].get("phase") == "Healthy")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.mark.slow
async def test_a_canary_is_mirrored_step_by_step_as_the_resource_says(
    operated: Operated, rollouts: Rollouts
) -> None:
    name = unique("kv-canary")
    operated.create(name, md_spec(name))
    first = await rollouts.wait(name, "v1 healthy", healthy, timeout_s=60)
    assert set(first) == TOP_KEYS
    assert set(first["spec"]) == SPEC_KEYS and set(first["spec"]["analysis"]) == ANALYSIS_KEYS
    assert (first["namespace"], first["name"], first["model"], first["generation"]) == (
        NS, name, name, 1,
    )  # fmt: skip
    assert first["spec"]["steps"] == ["setWeight 20", "pause 3s", "setWeight 100"]
    assert first["spec"]["analysis"]["minRequests"] == 7
    assert first["status"]["stableVersion"] == "1" and first["status"]["weight"] == 0
    # What the console sees is what kubectl sees, once both have settled.
    await rollouts.wait(
        name, "the resource's status", lambda d: d["status"] == operated.status(name)
    )

    operated.patch_spec(name, {"model": {"version": "2", "uri": f"s3://models/{name}/2.onnx"}})
    canary = await rollouts.wait(
        name,
        "canary at 20%",
        lambda d: d["status"].get("weight") == 20 and d["status"]["step"] == 1,
    )
    assert canary["generation"] == 2 and canary["spec"]["version"] == "2"
    assert (canary["status"]["stableVersion"], canary["status"]["canaryVersion"]) == ("1", "2")
    assert canary["status"]["phase"] in ("Progressing", "Paused")

    promoted = await rollouts.wait(
        name, "v2 promoted", lambda d: d["status"]["stableVersion"] == "2"
        and not d["status"].get("canaryVersion") and d["status"]["phase"] == "Healthy",
    )  # fmt: skip
    assert promoted["observedAt"] > canary["observedAt"]


@pytest.mark.slow
async def test_a_steady_rollout_is_not_rewritten_every_reconcile(
    operated: Operated, rollouts: Rollouts
) -> None:
    name = unique("kv-steady")
    operated.create(name, md_spec(name))

    def settled(doc: Json) -> bool:
        return bool(
            doc["status"].get("phase") == "Healthy" and doc["status"] == operated.status(name)
        )

    await rollouts.wait(name, "healthy, as the resource says", settled, timeout_s=60)
    revision = await rollouts.revision(name)
    await asyncio.sleep(2.0)  # four resyncs (every 0.5 s), each with a new observedAt
    assert await rollouts.revision(name) == revision


@pytest.mark.slow
async def test_a_deleted_resource_takes_its_document_with_it(
    operated: Operated, rollouts: Rollouts
) -> None:
    name = unique("kv-gone")
    operated.create(name, md_spec(name))
    await rollouts.wait(name, "a document", lambda d: True, timeout_s=60)
    operated.delete(name)

    async def gone() -> bool:
        return await rollouts.doc(name) is None

    await eventually(gone, timeout_s=20, what="the document removed")


@pytest.mark.slow
async def test_a_spec_the_operator_refuses_is_mirrored_with_the_reason(
    operated: Operated, rollouts: Rollouts
) -> None:
    name = unique("kv-bad")
    operated.create(name, md_spec(name, steps=[{"setWeight": 20}]))  # never reaches 100
    doc = await rollouts.wait(
        name, "Degraded", lambda d: d["status"].get("phase") == "Degraded", timeout_s=60
    )
    assert doc["spec"] == {"version": "1", "paused": False, "steps": [], "analysis": {}}
    (degraded,) = [c for c in doc["status"]["conditions"] if c["type"] == "Degraded"]
    assert degraded["reason"] == "InvalidSpec" and "setWeight 100" in degraded["message"]


@pytest.mark.slow
async def test_without_the_bucket_a_rollout_runs_to_the_end_and_is_mirrored_after(
    operated: Operated, rollouts: Rollouts
) -> None:
    name = unique("kv-outage")
    operated.create(name, md_spec(name))
    await rollouts.wait(name, "v1 healthy", healthy, timeout_s=60)
    await rollouts.bus.js.delete_key_value(subjects.KV_ROLLOUTS)
    try:
        operated.patch_spec(name, {"model": {"version": "2", "uri": f"s3://m/{name}/2.onnx"}})

        def promoted_and_cleaned_up() -> bool:
            status = operated.status(name)
            old = operated.cluster.get(DEPLOYMENTS, NS, manifests.child_name(name, "1"))
            return status.get("stableVersion") == "2" and healthy({"status": status}) and not old

        await eventually(promoted_and_cleaned_up, timeout_s=30, what="v2 promoted, v1 removed")
    finally:
        await ensure_key_value(
            rollouts.bus.js,
            KeyValueConfig(
                bucket=subjects.KV_ROLLOUTS, storage=StorageType.FILE, replicas=1, history=1
            ),
        )
    doc = await rollouts.wait(name, "the document back", lambda d: d["spec"]["version"] == "2")
    assert doc["status"] == operated.status(name)
    assert "rollout mirror not updated" in operated.log.read_text(encoding="utf-8")
