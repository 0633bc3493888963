"""One TenantQuota, reconciled: its ResourceQuota, LimitRange, gateway rates and status.

The core (`core.quota`) says what the TenantQuota asks for; this applies it:
the ResourceQuota and the LimitRange are created or merge-patched where they
differ (quantities compared by value), the rate document goes to NATS KV
`edgegate-quotas` (the gateways watch it and apply a change within a second;
an unchanged document is not rewritten), and the status, with the namespace's
usage read back from the ResourceQuota, is patched through `/status` only
when it changed. Every step is desired state, so `reconcile` may run at any
time, and a timer running it keeps `status.usage` current.

A spec the core refuses changes nothing that is in place: the last valid
objects and rates stay, and the status says what is wrong. A write the API
server refuses for the request itself (the namespace does not exist, RBAC,
validation) is reported the same way; anything else raises, for the caller
to retry.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from edgegate_common import subjects
from edgegate_common.logging import get_logger
from edgegate_operator import manifests
from edgegate_operator.adapters.bus import OperatorBus
from edgegate_operator.adapters.kube import MERGE_PATCH, Kube
from edgegate_operator.core import quota
from edgegate_operator.core.patches import merge_patch
from edgegate_operator.core.quota import Plan, Problem, QuotaSpecError
from edgegate_operator.core.units import to_ms

log = get_logger(__name__)

# Answers that say the request itself is wrong: retrying the same request cannot help.
REFUSALS = frozenset({400, 403, 404, 422})


class QuotaReconciler:
    def __init__(
        self, kube: Kube, bus: OperatorBus, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._kube = kube
        self._bus = bus
        self._clock = clock

    async def reconcile(
        self, body: Mapping[str, Any], *, old: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Apply `body`'s spec and write its status; the status written (or kept) is returned.

        `old` (kopf's previous body, on an update) lets a changed spec.namespace or
        spec.tenant take down what the old values put up.
        """
        outcome: Plan | Problem
        try:
            outcome = quota.plan(body)
        except QuotaSpecError as exc:
            outcome = Problem("InvalidSpec", f"{exc}; nothing of this spec was applied")
        if isinstance(outcome, Plan):
            outcome = await self._apply(outcome)
        if isinstance(outcome, Plan) and old is not None:
            await self._forget_moved(old, outcome)
        namespace = _spec(body).get("namespace")
        observed = None
        if isinstance(namespace, str) and namespace:
            observed = await self._read("resource_quota", namespace, quota.child_name(body))
        new = quota.status(body, outcome=outcome, quota=observed, now_ms=to_ms(self._clock()))
        await self._write_status(body, new)
        return new

    async def forget(self, body: Mapping[str, Any]) -> None:
        """Delete the ResourceQuota, the LimitRange and the rate document; gone is fine."""
        spec = _spec(body)
        namespace, tenant = spec.get("namespace"), spec.get("tenant")
        if isinstance(namespace, str) and namespace:
            await self._delete_children(namespace, quota.child_name(body))
        if isinstance(tenant, str) and tenant:
            await self._bus.delete(subjects.KV_QUOTAS, quota.kv_key(tenant))
        log.info("tenant quota removed", name=body["metadata"]["name"], tenant=tenant)

    async def _apply(self, plan: Plan) -> Plan | Problem:
        """Children first, then rates: the rates are the part other processes act on."""
        for kind, desired in (
            ("resource_quota", plan.resource_quota),
            ("limit_range", plan.limit_range),
        ):
            try:
                if desired is None:
                    await self._delete(kind, plan.namespace, plan.name)
                else:
                    await self._ensure(kind, desired)
            except ApiException as exc:
                if exc.status not in REFUSALS:
                    raise
                what = "ResourceQuota" if kind == "resource_quota" else "LimitRange"
                return Problem(
                    "Refused",
                    f"the API server refused {what} {plan.name} in {plan.namespace}: "
                    f"{_reason(exc)}",
                )
        if plan.rates is None:
            await self._bus.delete(subjects.KV_QUOTAS, plan.key)
        elif await self._bus.put(subjects.KV_QUOTAS, plan.key, plan.rates):
            log.info("tenant rates written", key=plan.key, **plan.rates)
        return plan

    async def _forget_moved(self, old: Mapping[str, Any], plan: Plan) -> None:
        before = _spec(old)
        if before.get("namespace") not in (None, plan.namespace):
            await self._delete_children(before["namespace"], plan.name)
        tenant = before.get("tenant")
        if isinstance(tenant, str) and tenant and quota.kv_key(tenant) != plan.key:
            await self._bus.delete(subjects.KV_QUOTAS, quota.kv_key(tenant))

    async def _write_status(self, body: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        current = body.get("status") or {}
        patch = merge_patch({k: current[k] for k in quota.STATUS_KEYS if k in current}, new)
        if patch:
            meta = body["metadata"]
            await self._kube.patch_status(
                manifests.TENANTQUOTAS, meta["namespace"], meta["name"], patch
            )

    # The CoreV1Api calls, by kind: `read_namespaced_<kind>`, `create_…`, `patch_…`.

    async def _ensure(self, kind: str, desired: Mapping[str, Any]) -> None:
        meta = desired["metadata"]
        current = await self._read(kind, meta["namespace"], meta["name"])
        if current is None:
            await self._call(f"create_namespaced_{kind}", meta["namespace"], desired)
            log.info("tenant quota object created", kind=kind, **_where(meta))
            return
        patch = quota.object_patch(current, desired)
        if patch:
            await self._call(
                f"patch_namespaced_{kind}",
                meta["name"],
                meta["namespace"],
                patch,
                _content_type=MERGE_PATCH,
            )
            log.info("tenant quota object patched", kind=kind, **_where(meta))

    async def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as the API serves it (camelCase JSON); None when it does not exist."""
        try:
            response = await self._call(
                f"read_namespaced_{kind}", name, namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        found: dict[str, Any] = json.loads(response.data)
        return found

    async def _delete_children(self, namespace: str, name: str) -> None:
        await self._delete("resource_quota", namespace, name)
        await self._delete("limit_range", namespace, name)

    async def _delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self._call(f"delete_namespaced_{kind}", name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
        else:
            log.info("tenant quota object deleted", kind=kind, namespace=namespace, name=name)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self._kube.core, method), *args, **kwargs)


def _spec(body: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = body.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _where(meta: Mapping[str, Any]) -> dict[str, str]:
    return {"namespace": meta["namespace"], "name": meta["name"]}


def _reason(exc: ApiException) -> str:
    """The API server's own message (a Status object's `message`), else the HTTP reason."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or exc.reason or f"HTTP {exc.status}")
