"""Rate limits shared by every gateway replica, through NATS KV.

Quotas come from `edgegate-quotas` (watched: a change applies within a
moment, no restart). Bucket states live in `edgegate-rate-buckets`, one key
per tenant (and per API key), changed by compare-and-set. A replica does
not go to the shared bucket for every request. It takes a small lease of
tokens (a tenth of the burst) and spends it locally, for at most
`lease_s`. Every request a replica admits spent a token taken from the
shared bucket, so all replicas together admit no more than the quota's rate
plus its burst. Unused tokens in a lapsed lease are lost, which errs on the
side of admitting less.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from edgegate_common import subjects
from edgegate_common.bus import ensure_key_value
from edgegate_common.errors import RETRY_AFTER_KEY, ResourceExhausted
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters import kv_watch
from edgegate_gateway.core.quota import Bucket, Limit, Quota
from edgegate_gateway.core.traffic import TrafficCounts

log = get_logger(__name__)


@dataclass
class _Lease:
    tokens: int
    until_s: float


class RateLimiter:
    def __init__(
        self,
        *,
        quotas: KeyValue,
        buckets: KeyValue,
        lease_fraction: float = 0.1,
        lease_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counts = TrafficCounts()  # what it admitted and refused, per tenant
        self._quotas_kv = quotas
        self._buckets = buckets
        self._lease_fraction = lease_fraction
        self._lease_s = lease_s
        self._clock = clock
        self._quotas: dict[str, Quota] = {}
        self._leases: dict[str, _Lease] = {}
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int = 1) -> RateLimiter:
        quotas = await ensure_key_value(
            js,
            KeyValueConfig(bucket=subjects.KV_QUOTAS, storage=StorageType.FILE, replicas=replicas),
        )
        buckets = await ensure_key_value(
            js,
            KeyValueConfig(
                bucket=subjects.KV_RATE_BUCKETS,
                storage=StorageType.FILE,
                replicas=replicas,
                ttl=3600,
            ),
        )
        return cls(quotas=quotas, buckets=buckets)

    async def start(self) -> None:
        """Load the quotas and follow their changes."""
        self._watcher = await kv_watch.follow(self._quotas_kv, self._apply)

    async def stop(self) -> None:
        await kv_watch.stop(self._watcher)

    def _apply(self, tenant: str, value: bytes | None) -> None:
        if not value:
            self._quotas.pop(tenant, None)
            log.info("quota removed", tenant=tenant)
            return
        try:
            self._quotas[tenant] = Quota.from_json(value)
        except ValueError as exc:
            log.error("quota ignored", tenant=tenant, error=str(exc))
            return
        log.info("quota applied", tenant=tenant)

    async def admit(self, tenant: str, *, key: str) -> None:
        """Spend one request of `tenant` (and of its API `key`); RESOURCE_EXHAUSTED if over."""
        quota = self.quota(tenant)
        try:
            if quota is not None:
                await self._admit(tenant, quota, key=key)
        except ResourceExhausted:
            self.counts.throttled(tenant)
            raise
        self.counts.admitted(tenant)

    def quota(self, tenant: str) -> Quota | None:
        """The tenant's quota as the operator wrote it; None: no limit."""
        return self._quotas.get(subjects.ident(tenant)) or self._quotas.get(tenant)

    def quotas(self) -> dict[str, Quota]:
        """Every quota, by the tenant key it is stored under."""
        return dict(self._quotas)

    async def _admit(self, tenant: str, quota: Quota, *, key: str) -> None:
        await self._spend(f"tenant.{subjects.ident(tenant)}", quota.tenant, who=f"tenant {tenant}")
        if quota.per_key is not None and key:
            name = f"key.{subjects.ident(tenant)}.{subjects.ident(key)}"
            await self._spend(name, quota.per_key, who="this API key")

    async def _spend(self, name: str, limit: Limit, *, who: str) -> None:
        now = self._clock()
        lease = self._leases.get(name)
        if lease is not None and lease.tokens > 0 and lease.until_s > now:
            lease.tokens -= 1
            return
        want = max(1, int(limit.burst * self._lease_fraction))
        granted, wait_s = await self._lease(name, limit, want)
        if granted == 0:
            retry_after_s = max(1, round(wait_s + 0.5))
            raise ResourceExhausted(
                f"rate limit of {limit.rate_per_s:g} requests/s (burst {limit.burst:g}) "
                f"reached for {who}; retry after {retry_after_s} s",
                details={RETRY_AFTER_KEY: str(retry_after_s)},
            )
        self._leases[name] = _Lease(tokens=granted - 1, until_s=now + self._lease_s)

    async def _lease(self, name: str, limit: Limit, want: int) -> tuple[int, float]:
        """Take up to `want` tokens from the shared bucket: (granted, seconds to wait if none)."""
        while True:
            now = self._clock()
            try:
                entry = await self._buckets.get(name)
                revision = entry.revision or 0
                state = _bucket(entry.value, limit, now)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                revision, state = 0, Bucket.full(limit, now)
            granted, after = state.take(limit, now, up_to=want)
            if granted == 0:
                return 0, after.wait_s(limit, now)
            value = json.dumps({"tokens": after.tokens, "at_s": after.at_s}).encode()
            try:
                if revision:
                    await self._buckets.update(name, value, last=revision)
                else:
                    await self._buckets.create(name, value)
                return granted, 0.0
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another replica took tokens in between: read again


def _bucket(raw: bytes | None, limit: Limit, now_s: float) -> Bucket:
    try:
        doc = json.loads(raw or b"")
        return Bucket(tokens=float(doc["tokens"]), at_s=float(doc["at_s"]))
    except (ValueError, KeyError, TypeError):
        return Bucket.full(limit, now_s)
