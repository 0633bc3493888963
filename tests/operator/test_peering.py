"""Replicas of the operator: which one acts (kopf's peering rule), and the gate the resync asks.

The rule is checked against kopf's own `process_peering_event` on drawn peering
objects; the gate against fakes and against KMock serving kopf's peering CRDs;
and, last (`make test-e2e`), two operator processes against KMock taking turns.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kmock
import kopf
import kubernetes
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from kopf._cogs.aiokits.aiotoggles import Toggle
from kopf._core.engines import peering as kopf_peering
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry
from support.kmock_cluster import KMockCluster
from support.waiting import eventually, wait_until

from edgegate_common.local import free_port
from edgegate_operator.__main__ import peering_options
from edgegate_operator.adapters.kube import Kube, api_client
from edgegate_operator.config import OperatorSettings
from edgegate_operator.core.peering import MAX_PRIORITY, Standing, standing
from edgegate_operator.handlers import resync_forever
from edgegate_operator.metrics import OperatorMetrics
from edgegate_operator.peering import PeeringGate, own_identity, own_priority

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ME = "operator-0/1/abc"
HOME = "edgegate"


def record(*, priority: int = 0, age_s: float = 0.0, lifetime: int = 60) -> dict[str, Any]:
    """A peer's record as kopf writes it, last seen `age_s` before NOW."""
    lastseen = (NOW - timedelta(seconds=age_s)).isoformat()
    return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen}


def acts(status: dict[str, Any] | None, *, priority: int = 100) -> bool:
    return standing(status, identity=ME, priority=priority, now=NOW).acts


# --- the rule ------------------------------------------------------------------------------


def test_alone_it_acts() -> None:
    assert acts(None)
    assert acts({})
    assert acts({ME: record(priority=100)})


def test_a_live_peer_of_a_higher_or_the_same_priority_pauses_it() -> None:
    assert not acts({"other": record(priority=101)})
    assert not acts({"other": record(priority=100)})  # a tie pauses both, as kopf does
    assert acts({"other": record(priority=99)})


def test_a_dead_peer_does_not_count() -> None:
    assert acts({"other": record(priority=500, age_s=61, lifetime=60)})
    assert acts({"other": record(priority=500, age_s=60, lifetime=60)})  # dead at its deadline
    assert not acts({"other": record(priority=500, age_s=59, lifetime=60)})
    assert acts({"other": record(priority=500, lifetime=0)})  # kopf's goodbye on SIGTERM


def test_its_own_record_is_ignored_whatever_it_says() -> None:
    assert acts({ME: record(priority=MAX_PRIORITY), "other": record(priority=1)})


def test_missing_fields_read_as_kopf_reads_them() -> None:
    assert not acts({"other": {}}, priority=0)  # priority 0, lifetime 60, seen now: alive
    assert acts({"other": {}}, priority=1)
    assert not acts({"other": {"lastseen": (NOW - timedelta(seconds=59)).isoformat()}}, priority=0)
    assert acts({"other": {"lastseen": (NOW - timedelta(seconds=61)).isoformat()}}, priority=0)
    naive = (NOW - timedelta(seconds=61)).replace(tzinfo=None).isoformat()  # read as UTC
    assert acts({"other": {"lastseen": naive, "priority": 500}})
    assert not acts({"other": {"lifetime": "60", "priority": 500}})


@pytest.mark.parametrize(
    "bad",
    ["garbage", None, [], {"priority": "high"}, {"lastseen": "yesterday"}, {"lifetime": None}],
)
def test_an_unreadable_record_pauses_it(bad: object) -> None:
    found = standing({"other": bad}, identity=ME, priority=MAX_PRIORITY, now=NOW)
    assert not found.acts
    assert "other (unreadable record)" in found.reason


def test_the_reason_names_every_peer_in_the_way() -> None:
    found = standing(
        {"b": record(priority=300), "a": record(priority=200), "c": record(priority=1)},
        identity=ME,
        priority=100,
        now=NOW,
    )
    assert found.reason == "live peers of priority >= 100: a (priority 200), b (priority 300)"


async def kopf_pauses(status: dict[str, Any], *, identity: str, priority: int) -> bool:
    """What kopf 1.45 itself decides on this status: whether it turns its pause on."""
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.peering.name = "edgegate"
    kopf_settings.peering.priority = priority
    conflicts = Toggle(False)
    pressure = asyncio.Event()
    pressure.set()  # no waiting for blocking peers to expire, so no keep-alive of its own
    await kopf_peering.process_peering_event(
        raw_event={
            "type": "MODIFIED",
            "object": {"metadata": {"name": "edgegate"}, "status": status},
        },
        namespace=None,
        resource=None,  # type: ignore[arg-type]  # used only to write (autoclean off)
        identity=kopf_peering.Identity(identity),
        settings=kopf_settings,
        autoclean=False,
        stream_pressure=pressure,
        conflicts_found=conflicts,
    )
    return conflicts.is_on()


# Ages and lifetimes a whole second apart from any deadline: kopf reads its own clock.
PEERS = st.dictionaries(
    st.sampled_from([ME, "a", "b", "c"]),
    st.builds(
        lambda priority, lifetime, margin, alive: {
            "priority": priority,
            "lifetime": lifetime,
            "lastseen": (
                datetime.now(tz=UTC)
                - timedelta(seconds=lifetime - margin if alive else lifetime + margin)
            ).isoformat(),
        },
        priority=st.integers(0, 5),
        lifetime=st.integers(2, 120),
        margin=st.integers(1, 30),
        alive=st.booleans(),
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(status=PEERS, priority=st.integers(0, 5))
async def test_it_acts_exactly_when_kopf_does_not_pause(
    status: dict[str, Any], priority: int
) -> None:
    kopf_paused = await kopf_pauses(status, identity=ME, priority=priority)
    ours = standing(status, identity=ME, priority=priority, now=datetime.now(tz=UTC))
    assert ours.acts is not kopf_paused, ours.reason


# --- identity, priority and kopf's arguments -----------------------------------------------


def test_priority_zero_draws_one_and_any_other_is_kept() -> None:
    drawn = {own_priority(0) for _ in range(200)}
    assert drawn <= set(range(1, MAX_PRIORITY + 1))
    assert len(drawn) > 190  # practically never the same twice
    assert own_priority(7) == 7


def test_each_start_has_an_identity_of_its_own() -> None:
    assert own_identity() != own_identity()


def test_kopf_is_standalone_without_a_peering_name_and_peers_with_one() -> None:
    alone = OperatorSettings.from_args([])
    assert peering_options(alone, identity="i", priority=5) == {"standalone": True, "identity": "i"}
    paired = OperatorSettings.from_args(["--peering", "edgegate-operator", "--priority", "9"])
    assert paired.priority == 9
    assert peering_options(paired, identity="i", priority=5) == {
        "peering_name": "edgegate-operator",
        "priority": 5,
        "identity": "i",
    }


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGATE_OPERATOR_PEERING", "edgegate-operator")
    monkeypatch.setenv("EDGEGATE_OPERATOR_PRIORITY", "0")
    monkeypatch.setenv("EDGEGATE_OPERATOR_HEALTH_PORT", "8081")
    monkeypatch.setenv("EDGEGATE_OPERATOR_PEERING_LIFETIME_S", "30")
    read = OperatorSettings.from_args([])
    assert (read.peering, read.priority, read.health_port, read.peering_lifetime_s) == (
        "edgegate-operator",
        0,
        8081,
        30,
    )


# --- the gate ------------------------------------------------------------------------------


class FakeKube:
    """`Kube.kopf_peering` answering from a dict, or raising; counts the reads."""

    def __init__(self, objects: dict[str | None, Any]) -> None:
        self.objects = objects
        self.reads: list[tuple[str, str | None]] = []

    async def kopf_peering(
        self, name: str, namespace: str | None, *, timeout_s: float
    ) -> dict[str, Any] | None:
        self.reads.append((name, namespace))
        found = self.objects.get(namespace)
        if isinstance(found, Exception):
            raise found
        return found  # type: ignore[no-any-return]


MINE = record(priority=100)  # the gate's own record, as kopf's keep-alive writes it


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def gate_for(
    kube: FakeKube, *, namespaces: list[str] | None = None, clock: Clock | None = None
) -> PeeringGate:
    return PeeringGate(
        kube,  # type: ignore[arg-type]
        name="edgegate",
        namespaces=namespaces or [],
        identity=ME,
        priority=100,
        read_every_s=2.0,
        clock=clock or Clock(),
        now=lambda: NOW,
    )


async def test_standalone_acts_without_reading_anything() -> None:
    gate = PeeringGate.standalone()
    assert not gate.peering
    assert (await gate.standing()).acts
    kube = FakeKube({})
    unnamed = PeeringGate(
        kube,  # type: ignore[arg-type]
        name="",
        namespaces=[],
        identity=ME,
        priority=1,
        read_every_s=1.0,
    )
    assert (await unnamed.standing()).acts
    assert kube.reads == []


async def test_the_gate_reads_the_cluster_peering_at_most_every_read_every_s() -> None:
    clock = Clock()
    kube = FakeKube({None: {"status": {ME: MINE, "other": record(priority=1)}}})
    gate = gate_for(kube, clock=clock)

    assert (await gate.standing()).acts
    kube.objects[None] = {"status": {ME: MINE, "other": record(priority=1000)}}
    clock.now_s = 1.9
    assert (await gate.standing()).acts  # the answer of the last read
    assert kube.reads == [("edgegate", None)]
    clock.now_s = 2.0
    paused = await gate.standing()
    assert not paused.acts
    assert paused.reason == "edgegate: live peers of priority >= 100: other (priority 1000)"
    assert len(kube.reads) == 2


@pytest.mark.parametrize(
    ("problem", "reason"),
    [
        (None, "peering object edgegate not found"),
        (
            ApiException(status=403, reason="Forbidden"),
            "peering object edgegate unreadable: HTTP 403",
        ),
        (
            ConnectionRefusedError("refused"),
            "peering object edgegate unreadable: ConnectionRefusedError('refused')",
        ),
    ],
)
async def test_without_its_peering_object_it_does_not_act(problem: Any, reason: str) -> None:
    gate = gate_for(FakeKube({None: problem}))
    assert await gate.standing() == Standing.paused(reason)


@pytest.mark.parametrize(
    "mine",
    [None, record(priority=100, age_s=61), "garbage"],
    ids=["absent", "expired", "unreadable"],
)
async def test_it_does_not_act_before_its_peers_can_see_it(mine: Any) -> None:
    status = {"other": record(priority=1)} | ({} if mine is None else {ME: mine})
    found = await gate_for(FakeKube({None: {"status": status}})).standing()
    assert found == Standing.paused("edgegate: no live record of our own yet (kopf's keep-alive)")


async def test_namespaced_it_acts_only_if_every_watched_namespace_lets_it() -> None:
    clock = Clock()
    kube = FakeKube(
        {"a": {"status": {ME: MINE}}, "b": {"status": {ME: MINE, "other": record(priority=100)}}}
    )
    gate = gate_for(kube, namespaces=["a", "b"], clock=clock)

    found = await gate.standing()
    assert not found.acts
    assert found.reason.startswith("b/edgegate: ")
    assert kube.reads == [("edgegate", "a"), ("edgegate", "b")]
    kube.objects["b"] = {"status": {ME: MINE, "other": record(priority=99)}}
    clock.now_s = 2.0
    assert (await gate.standing()).acts


# --- the resync loop behind the gate --------------------------------------------------------


class FlippingGate:
    """A gate whose answer the test sets."""

    peering = True
    identity = ME
    priority = 100

    def __init__(self) -> None:
        self.answer = Standing.paused("a peer of priority 200")

    async def standing(self) -> Any:
        return self.answer


class CountingReconciler:
    """What `resync_forever` uses of a Reconciler: it lists, reconciles, and sets a metric."""

    def __init__(self) -> None:
        self.reconciles = 0
        self.metrics = OperatorMetrics(CollectorRegistry())
        self.kube = self

    async def custom_object_names(self, plural: str, namespaces: list[str]) -> list[Any]:
        return [(HOME, "m")]

    async def reconcile_latest(self, namespace: str, name: str) -> None:
        self.reconciles += 1


async def test_the_resync_skips_its_work_while_paused_and_logs_each_change() -> None:
    gate, reconciler = FlippingGate(), CountingReconciler()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(
            resync_forever(reconciler, every_s=0.01, namespaces=[], gate=gate)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.1)  # the behaviour: ten rounds pass and none reconciles
        assert reconciler.reconciles == 0
        assert reconciler.metrics.resync_active._value.get() == 0

        gate.answer = standing(None, identity=ME, priority=100, now=NOW)
        await eventually(lambda: reconciler.reconciles > 3, timeout_s=5, what="reconciles")
        assert reconciler.metrics.resync_active._value.get() == 1

        gate.answer = Standing.paused("a peer of priority 300")
        await eventually(
            lambda: any(e.get("reason") == "a peer of priority 300" for e in logs),
            timeout_s=5,
            what="the resync to pause",
        )
        done = reconciler.reconciles
        await asyncio.sleep(0.1)  # the behaviour: ten rounds pass and none reconciles
        assert reconciler.reconciles == done
        task.cancel()
    events = [(e["event"], e.get("reason")) for e in logs if "resync" in e["event"]]
    assert events == [
        ("resync paused", "a peer of priority 200"),
        ("resync resumed", None),
        ("resync paused", "a peer of priority 300"),
    ]


# --- the gate against KMock serving kopf's peering CRDs ---------------------------------------


def declare_peering_crds(resources: Any) -> None:
    """kopf's peering CRDs (its peering.yaml): no status subresource, so kopf patches the object."""
    for plural, kind, namespaced in (
        ("clusterkopfpeerings", "ClusterKopfPeering", False),
        ("kopfpeerings", "KopfPeering", True),
    ):
        resources[f"kopf.dev/v1/{plural}"] = kmock.ResourceInfo(
            kind=kind,
            singular=plural[:-1],
            namespaced=namespaced,
            verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
        )


@pytest.fixture
def cluster() -> Iterator[KMockCluster]:
    running = KMockCluster().start()
    declare_peering_crds(running.api.resources)
    yield running
    running.stop()


@pytest.fixture
async def kube(cluster: KMockCluster, tmp_path: Path) -> AsyncIterator[Kube]:
    client = Kube(api_client(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
    yield client
    client.close()


async def test_the_gate_reads_kopfs_peering_objects_through_the_api(kube: Kube) -> None:
    cluster_gate = PeeringGate(
        kube, name="edgegate", namespaces=[], identity=ME, priority=100, read_every_s=0.0
    )
    spaced_gate = PeeringGate(
        kube, name="edgegate", namespaces=[HOME], identity=ME, priority=100, read_every_s=0.0
    )
    assert (await cluster_gate.standing()).reason == "peering object edgegate not found"
    assert (await spaced_gate.standing()).reason == f"peering object {HOME}/edgegate not found"

    seen_now = datetime.now(tz=UTC).isoformat()
    live = {
        ME: {**record(priority=100), "lastseen": seen_now},
        "other": {**record(priority=200), "lastseen": seen_now},
    }
    await asyncio.to_thread(
        kube.custom.create_cluster_custom_object,
        "kopf.dev", "v1", "clusterkopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
         "metadata": {"name": "edgegate"}, "status": live},
    )  # fmt: skip
    await asyncio.to_thread(
        kube.custom.create_namespaced_custom_object,
        "kopf.dev", "v1", HOME, "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
         "metadata": {"name": "edgegate", "namespace": HOME}, "status": {ME: {}}},
    )  # fmt: skip

    assert "other (priority 200)" in (await cluster_gate.standing()).reason
    assert (await spaced_gate.standing()).acts


# --- two operator processes against KMock (make test-e2e) -----------------------------------

LIFETIME_S = 3
READ_S = 0.5
RESYNC_S = 0.5
SETTLE_S = 1.5


@dataclass
class Replica:
    """`python -m edgegate_operator` in peering mode, with its ports and log."""

    process: subprocess.Popen[bytes]
    priority: int
    metrics_port: int
    health_port: int
    log: Path

    def get(self, path: str, port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return str(answer.read().decode())

    def resync_active(self) -> float:
        for line in self.get("/metrics", self.metrics_port).splitlines():
            if line.startswith("edgegate_operator_resync_active "):
                return float(line.split()[1])
        raise AssertionError("no edgegate_operator_resync_active on /metrics")

    def paused_by(self, priority: int) -> bool:
        """Whether its resync logged a pause in favour of a peer of `priority`."""
        return any(f"(priority {priority})" in e["reason"] for e in self.logged("resync paused"))

    def logged(self, event: str) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        found = [json.loads(line) for line in lines if line.startswith("{") and event in line]
        return [entry for entry in found if entry.get("event") == event]


def start_replica(
    folder: Path, *, nats_url: str, kubeconfig: Path, priority: int, lifetime_s: int = LIFETIME_S
) -> Replica:
    log = folder / f"operator-{priority}.log"
    metrics_port, health_port = free_port(), free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "edgegate_operator",
                "--nats-url", nats_url,
                "--kubeconfig", str(kubeconfig),
                "--metrics-port", str(metrics_port),
                "--health-port", str(health_port),
                "--resync-s", str(RESYNC_S),
                "--peering", "edgegate",
                "--priority", str(priority),
                "--peering-lifetime-s", str(lifetime_s),
                "--peering-read-s", str(READ_S),
            ],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Replica(process, priority, metrics_port, health_port, log)


def model_deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgegate.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": HOME},
        "spec": {
            "model": {"name": name, "version": "1", "uri": "file:///models/m/1/model.onnx"},
            "replicas": 1,
        },
    }


class Reads:
    """Who read the ModelDeployment by name (a reconcile does; kopf's watch does not)."""

    def __init__(self, cluster: KMockCluster, name: str) -> None:
        self.cluster, self.name = cluster, name
        self.mark()

    def mark(self) -> None:
        self._from = len(list(self.cluster.requests()))

    def by_agent(self) -> Counter[str]:
        agents: Counter[str] = Counter()
        for request in list(self.cluster.requests())[self._from :]:
            if (
                request.method == kmock.method.GET
                and request.resource is not None
                and request.resource.plural == "modeldeployments"
                and request.name == self.name
            ):
                headers = {k.lower(): v for k, v in request.headers.items()}
                agents[headers.get("user-agent", "")] += 1
        return agents


def peer_identities(cluster: KMockCluster) -> dict[int, str]:
    """priority -> identity, from the ClusterKopfPeering's live records."""
    peering = cluster.get("kopf.dev/v1/clusterkopfpeerings", None, "edgegate") or {}
    return {
        int(info.get("priority", 0)): identity
        for identity, info in (peering.get("status") or {}).items()
        if isinstance(info, dict)
    }


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_two_replicas_one_acts_and_the_other_takes_over_when_it_dies(
    cluster: KMockCluster, shared_nats: Any, tmp_path: Path
) -> None:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", namespace=HOME)
    custom = kubernetes.client.CustomObjectsApi(
        kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    )
    custom.create_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
         "metadata": {"name": "edgegate"}},
    )  # fmt: skip
    custom.create_namespaced_custom_object(
        "edgegate.io", "v1alpha1", HOME, "modeldeployments", model_deployment("m1")
    )
    reads = Reads(cluster, "m1")
    high, low = (
        start_replica(tmp_path, nats_url=shared_nats.url, kubeconfig=kubeconfig, priority=p)
        for p in (200, 100)
    )
    replicas = [high, low]
    try:
        ids = wait_until(
            lambda: (found := peer_identities(cluster)).keys() >= {100, 200} and found,
            timeout_s=60,
            what="both replicas' records in the peering object",
        )
        high_agent, low_agent = (f"edgegate-operator/{ids[p]}" for p in (200, 100))
        wait_until(lambda: reads.by_agent()[high_agent], timeout_s=30, what="the first reconcile")
        wait_until(lambda: low.paused_by(200), timeout_s=30, what="the low one paused")
        # Reconciles started in the start-up overlap finish; nothing outside the
        # processes shows when, so this stays a sleep.
        time.sleep(SETTLE_S)

        # Both are up and peered: only the high one reads its resources, for seconds on end.
        reads.mark()
        time.sleep(4 * RESYNC_S + READ_S)  # the behaviour: who reads during this window
        seen = reads.by_agent()
        assert seen[high_agent] >= 3, seen
        assert seen[low_agent] == 0, seen
        assert (high.resync_active(), low.resync_active()) == (1.0, 0.0)
        for replica in (high, low):  # the chart's probes: both are alive, both are ready
            assert replica.get("/healthz", replica.health_port).startswith("{")

        # The high one dies without a word: the low one takes over once its record expires.
        # (It may have acted for a moment at start-up, before it saw the high one: only a
        # resume logged after the kill counts.)
        resumed_before = len(low.logged("resync resumed"))
        high.process.kill()
        high.process.wait()
        killed_at = time.monotonic()
        reads.mark()
        wait_until(
            lambda: reads.by_agent()[low_agent],
            timeout_s=LIFETIME_S + READ_S + RESYNC_S + 5,
            what="the low one's first reconcile after the kill",
        )
        took_s = time.monotonic() - killed_at
        assert took_s <= LIFETIME_S + READ_S + RESYNC_S + 2, took_s
        wait_until(
            lambda: len(low.logged("resync resumed")) > resumed_before,
            # kopf's keep-alive may have to write its own record again first, under load.
            timeout_s=LIFETIME_S + READ_S + RESYNC_S + 5,
            what="resumed",
        )
        assert low.resync_active() == 1.0

        # A newer replica of a higher priority (a rolling update) takes over; SIGTERM hands
        # back at once: kopf removes its record on the way out, long before its lifetime.
        newest = start_replica(
            tmp_path, nats_url=shared_nats.url, kubeconfig=kubeconfig, priority=300, lifetime_s=60
        )
        replicas.append(newest)
        wait_until(lambda: low.paused_by(300), timeout_s=60, what="the low one paused again")
        time.sleep(SETTLE_S)  # as above: the overlap's reconciles finish
        newest_agent = f"edgegate-operator/{peer_identities(cluster)[300]}"
        reads.mark()
        time.sleep(2 * RESYNC_S + READ_S)  # the behaviour: who reads during this window
        seen = reads.by_agent()
        assert seen[newest_agent] >= 1, seen
        assert seen[low_agent] == 0, seen

        newest.process.terminate()
        assert newest.process.wait(timeout=15) == 0
        stopped_at = time.monotonic()
        reads.mark()
        wait_until(lambda: reads.by_agent()[low_agent], timeout_s=10, what="resumed after SIGTERM")
        assert time.monotonic() - stopped_at < 10  # its record said alive for 60 s more
        assert 300 not in peer_identities(cluster)
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.terminate()
                replica.process.wait(timeout=15)
