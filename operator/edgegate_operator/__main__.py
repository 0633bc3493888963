"""`python -m edgegate_operator`: the operator, run by kopf.

It connects to NATS (routes, breakers, quotas, observations) and to the
Kubernetes API (in-cluster, else the kubeconfig), serves /metrics, and
hands the handlers to kopf. SIGTERM stops it cleanly; SIGKILL loses
nothing: every rollout's state is in its resource's status. With
`--peering NAME`, replicas share kopf's peering object NAME and only one
of them acts (kopf's handlers and our resync loop alike); kopf serves
GET /healthz on `--health-port` for the pod's probes.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import kopf
from prometheus_client import CollectorRegistry

from edgegate_common.bus import Bus
from edgegate_common.logging import configure_logging, get_logger
from edgegate_common.metrics import MetricsServer
from edgegate_operator.adapters.bus import OperatorBus
from edgegate_operator.adapters.kube import Kube, api_client
from edgegate_operator.config import OperatorSettings
from edgegate_operator.handlers import build_registry, resync_forever
from edgegate_operator.manifests import Workload
from edgegate_operator.metrics import OperatorMetrics
from edgegate_operator.peering import PeeringGate, own_identity, own_priority
from edgegate_operator.reconciler import Reconciler, StatusWriter
from edgegate_operator.tenantquota import QuotaReconciler

log = get_logger(__name__)


async def run(settings: OperatorSettings) -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    server = None
    if settings.metrics_port:
        server = MetricsServer(registry, host="0.0.0.0", port=settings.metrics_port)
        server.start()
    bus = await Bus.connect(
        servers=settings.nats_servers,
        name="edgegate-operator",
        connect_timeout_s=settings.nats_connect_timeout_s,
    )
    resync: asyncio.Task[None] | None = None
    identity = own_identity()
    client = api_client(settings.kubeconfig, user_agent=f"edgegate-operator/{identity}")
    kube = Kube(client)
    try:
        nats = await OperatorBus.open(bus, keep_s=settings.observations_keep_s)
        rollouts = _reconciler(settings, kube, nats, metrics)
        namespaces = settings.watched_namespaces
        gate = PeeringGate(
            kube,
            name=settings.peering,
            namespaces=namespaces,
            identity=identity,
            priority=own_priority(settings.priority),
            read_every_s=settings.peering_read_s,
        )
        log.info(
            "operator starting",
            namespaces=namespaces or "all",
            peering=settings.peering or "standalone",
            identity=identity,
            priority=gate.priority,
        )
        resync = asyncio.get_running_loop().create_task(
            resync_forever(rollouts, every_s=settings.resync_s, namespaces=namespaces, gate=gate)
        )
        await _run_kopf(
            settings,
            client.configuration,
            kopf.Memo(rollouts=rollouts, quotas=QuotaReconciler(kube, nats)),
            identity=identity,
            priority=gate.priority,
        )
    finally:
        if resync is not None:
            resync.cancel()
        await bus.close()
        kube.close()
        if server is not None:
            server.stop()


def _reconciler(
    settings: OperatorSettings, kube: Kube, nats: OperatorBus, metrics: OperatorMetrics
) -> Reconciler:
    """The rollout reconciler: Deployments for each version, status, events, metrics."""
    return Reconciler(
        kube=kube,
        bus=nats,
        workload=Workload(
            image=settings.inference_image,
            nats_url=settings.inference_nats_url,
            metrics_snapshot_s=settings.inference_metrics_snapshot_s,
        ),
        status=StatusWriter(kube, min_interval_s=settings.status_min_interval_s),
        post_event=lambda body, e: kube.post_event(
            body, type=e.type, reason=e.reason, message=e.message
        ),
        metrics=metrics,
        analysis_grace_s=settings.analysis_grace_s,
    )


async def _run_kopf(
    settings: OperatorSettings,
    configuration: Any,
    memo: kopf.Memo,
    *,
    identity: str,
    priority: int,
) -> None:
    """kopf's own loop with our handlers, peering and liveness endpoint, until it stops."""
    namespaces = settings.watched_namespaces
    await kopf.operator(
        registry=build_registry(
            resync_s=settings.resync_s,
            configuration=configuration,
            peering_lifetime_s=settings.peering_lifetime_s,
        ),
        memo=memo,
        **peering_options(settings, identity=identity, priority=priority),
        liveness_endpoint=(
            f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
        ),
        clusterwide=not namespaces,
        namespaces=namespaces,
    )


def peering_options(settings: OperatorSettings, *, identity: str, priority: int) -> dict[str, Any]:
    """kopf's peering arguments: mandatory peering in the named object, or standalone.

    kopf peers in a ClusterKopfPeering when it serves the whole cluster and in a
    KopfPeering in each watched namespace otherwise, as `PeeringGate` reads them.
    """
    if not settings.peering:
        return {"standalone": True, "identity": identity}
    return {"peering_name": settings.peering, "priority": priority, "identity": identity}


def main(argv: Sequence[str] | None = None) -> None:
    settings = OperatorSettings.from_args(sys.argv[1:] if argv is None else argv)
    configure_logging(service="operator", level=settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
