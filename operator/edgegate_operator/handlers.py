"""The kopf handlers: which events reconcile what.

A ModelDeployment is reconciled on every change kopf sees (spec, an SRE's
annotation, its own status) and by `resync_forever` every `resync_s`, which
is how analysis windows, pause durations, readiness and deleted children
are noticed: KMock and real clusters alike, nothing else needs watching.
That loop is ours, not a kopf timer, because kopf holds a resource with
timers behind a finalizer: a ModelDeployment is never kept from deletion
by an operator that is down or a finalizer patch that lost a race; with
two replicas, it runs on the one kopf lets act (`peering.PeeringGate`). Its
DELETED event removes its route and breaker documents. A TenantQuota,
whose objects may live in another namespace (no owner reference can reach
them), is cleaned up behind kopf's finalizer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import kopf

from edgegate_common.logging import get_logger
from edgegate_operator.core.peering import DEFAULT_LIFETIME_S, Standing
from edgegate_operator.manifests import GROUP, MODELDEPLOYMENTS, TENANTQUOTAS, VERSION
from edgegate_operator.peering import PeeringGate
from edgegate_operator.reconciler import Reconciler

log = get_logger(__name__)


def connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the `kubernetes` client's, so both talk to the same API.

    Read afresh on every login (kopf logs in again on a 401): the client's refresh hook
    re-reads a service account's projected token or re-runs a kubeconfig's exec plugin.
    """
    if configuration.refresh_api_key_hook is not None:
        configuration.refresh_api_key_hook(configuration)
    header = configuration.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
    scheme, _, token = header.partition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        default_namespace=None,
    )


async def resync_forever(
    reconciler: Reconciler, *, every_s: float, namespaces: list[str], gate: PeeringGate
) -> None:
    """Reconcile every ModelDeployment every `every_s`, for as long as the operator runs.

    Only while `gate` says this replica acts: of replicas sharing a kopf peering object,
    the one kopf lets handle events is the one that resyncs, too.
    """
    last: Standing | None = None
    while True:
        started = asyncio.get_running_loop().time()
        now = await gate.standing()
        if now != last:
            reconciler.metrics.resync_active.set(int(now.acts))
            if gate.peering:
                _log_standing(now, first=last is None, gate=gate)
            last = now
        if now.acts:
            await _resync_once(reconciler, namespaces)
        elapsed = asyncio.get_running_loop().time() - started
        await asyncio.sleep(max(0.0, every_s - elapsed))


async def _resync_once(reconciler: Reconciler, namespaces: list[str]) -> None:
    try:
        for namespace, name in await reconciler.kube.custom_object_names(
            MODELDEPLOYMENTS, namespaces
        ):
            try:
                await reconciler.reconcile_latest(namespace, name)
            except Exception:  # one resource's trouble must not starve the others
                log.exception("reconcile failed", resource=f"{namespace}/{name}")
    except Exception:
        log.exception("listing ModelDeployments failed")


def _log_standing(standing: Standing, *, first: bool, gate: PeeringGate) -> None:
    ids = {"identity": gate.identity, "priority": gate.priority}
    if standing.acts:
        log.info("resync acting" if first else "resync resumed", **ids)
    else:
        log.warning("resync paused", reason=standing.reason, **ids)


def build_registry(
    *, resync_s: float, configuration: Any, peering_lifetime_s: int = DEFAULT_LIFETIME_S
) -> kopf.OperatorRegistry:
    """The handlers; `configuration`: the `kubernetes` client's, which kopf logs in with.

    `peering_lifetime_s`: how long this replica's peering record stays alive after its
    last keep-alive (kopf renews it that often, less 5 to 10 s): how soon a peer takes over
    from a replica that died without removing its record.
    """
    registry = kopf.OperatorRegistry()
    locks: defaultdict[tuple[str, ...], asyncio.Lock] = defaultdict(asyncio.Lock)  # quotas
    md = (GROUP, VERSION, MODELDEPLOYMENTS)
    tq = (GROUP, VERSION, TENANTQUOTAS)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(configuration)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf's own bookkeeping goes to annotations: our CRDs' status schemas have no room
        # for it, and a cluster would prune it there.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.persistence.finalizer = f"{GROUP}/operator"
        settings.posting.level = logging.WARNING  # our Events are posted explicitly
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 30
        settings.peering.lifetime = peering_lifetime_s

    @kopf.on.event(*md, registry=registry)
    async def md_changed(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
        reconciler: Reconciler = memo["rollouts"]
        key = (body.metadata["namespace"], body.metadata["name"])
        if type == "DELETED":
            await reconciler.forget(body)
        elif not body.metadata.get("deletionTimestamp"):
            await reconciler.reconcile_latest(*key)

    @kopf.on.resume(*tq, registry=registry)
    @kopf.on.create(*tq, registry=registry)
    @kopf.on.update(*tq, registry=registry)
    async def tq_changed(body: kopf.Body, old: Any, memo: kopf.Memo, **_: Any) -> None:
        async with locks[("tq", body.metadata["namespace"], body.metadata["name"])]:
            await memo["quotas"].reconcile(body, old=old)

    @kopf.timer(*tq, interval=max(resync_s, 5.0), backoff=resync_s, registry=registry)
    async def tq_usage(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if not body.metadata.get("deletionTimestamp"):
            async with locks[("tq", body.metadata["namespace"], body.metadata["name"])]:
                await memo["quotas"].reconcile(body)

    @kopf.on.delete(*tq, registry=registry)
    async def tq_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        key = ("tq", body.metadata["namespace"], body.metadata["name"])
        async with locks[key]:
            await memo["quotas"].forget(body)
        locks.pop(key, None)

    return registry
