"""The kopf handlers: which events reconcile what.

A ModelDeployment is reconciled on every change kopf sees (spec, an SRE's
annotation, its own status) and on a timer every `resync_s`, which is how
analysis windows, pause durations, readiness and deleted children are
noticed: KMock and real clusters alike, nothing else needs watching. One
lock per resource keeps the event and the timer from deciding at once.
A deleted ModelDeployment is forgotten on its DELETED event; a TenantQuota,
whose objects may live in another namespace (no owner reference can reach
them), is cleaned up behind kopf's finalizer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, cast

import kopf

from edgegate_operator.core import Event
from edgegate_operator.manifests import GROUP, MODELDEPLOYMENTS, TENANTQUOTAS, VERSION
from edgegate_operator.reconciler import Reconciler


def post_event(body: Mapping[str, Any], event: Event) -> None:
    """A Kubernetes Event on the resource, posted by kopf in the background."""
    kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message)


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


def build_registry(*, resync_s: float, configuration: Any) -> kopf.OperatorRegistry:
    """The handlers; `configuration`: the `kubernetes` client's, which kopf logs in with."""
    registry = kopf.OperatorRegistry()
    locks: defaultdict[tuple[str, ...], asyncio.Lock] = defaultdict(asyncio.Lock)
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

    async def reconcile(body: kopf.Body, memo: kopf.Memo) -> None:
        if body.metadata.get("deletionTimestamp"):
            return
        key = (body.metadata["namespace"], body.metadata["name"])
        reconciler: Reconciler = memo["rollouts"]
        async with locks[key]:
            # Read it again inside the lock: the body kopf handed over may predate the
            # status the previous reconcile wrote, and deciding on it would repeat Events.
            await reconciler.reconcile_latest(*key)

    @kopf.on.event(*md, registry=registry)
    async def md_changed(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
        if type == "DELETED":
            await forget(body, memo)
        else:
            await reconcile(body, memo)

    @kopf.timer(*md, interval=resync_s, backoff=resync_s, registry=registry)
    async def md_resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await reconcile(body, memo)

    async def forget(body: kopf.Body, memo: kopf.Memo) -> None:
        """The resource is gone: its route and breaker documents go too (its Deployments
        and Services are the garbage collector's, through their owner references; the
        operator deletes them as well for clusters, and tests, without one). No finalizer:
        a ModelDeployment is never held back from deletion by an operator that is down."""
        key = (body.metadata["namespace"], body.metadata["name"])
        reconciler: Reconciler = memo["rollouts"]
        async with locks[key]:  # a timer's reconcile in flight must not write after this
            await reconciler.forget(body)
        locks.pop(key, None)

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
