"""`python -m edgegate_operator`: the operator, run by kopf.

It connects to NATS (routes, breakers, quotas, observations) and to the
Kubernetes API (in-cluster, else the kubeconfig), serves /metrics, and
hands the handlers to kopf. SIGTERM stops it cleanly; SIGKILL loses
nothing: every rollout's state is in its resource's status.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

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
    client = api_client(settings.kubeconfig)
    kube = Kube(client)
    try:
        nats = await OperatorBus.open(bus, keep_s=settings.observations_keep_s)
        rollouts = Reconciler(
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
        namespaces = settings.watched_namespaces
        log.info("operator starting", namespaces=namespaces or "all")
        resync = asyncio.get_running_loop().create_task(
            resync_forever(rollouts, every_s=settings.resync_s, namespaces=namespaces)
        )
        await kopf.operator(
            registry=build_registry(resync_s=settings.resync_s, configuration=client.configuration),
            memo=kopf.Memo(rollouts=rollouts, quotas=QuotaReconciler(kube, nats)),
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
        )
    finally:
        if resync is not None:
            resync.cancel()
        await bus.close()
        kube.close()
        if server is not None:
            server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    settings = OperatorSettings.from_args(sys.argv[1:] if argv is None else argv)
    configure_logging(service="operator", level=settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
