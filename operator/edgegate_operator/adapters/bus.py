"""NATS as the operator sees it: KV documents it writes, observations it reads.

Writes: a route per model (`edgegate-routes`), breaker modes, breaker
policy and fallback per model (`edgegate-breakers`), rates per tenant
(`edgegate-quotas`), each ModelDeployment's rollout (`edgegate-rollouts`,
see `edgegate_operator.rollouts`). Each `put` is skipped when the bucket
already holds the same bytes (or the same but for a time of writing), so a
reconcile every second writes only changes.

Reads: inference replicas' metric snapshots, gateways' shadow agreement
counts and breaker events are core-NATS publications; the operator keeps
them in a JetStream stream (`EDGEGATE_OBSERVATIONS`, an hour by default),
so that an operator restarted mid-analysis reads the window's earlier
snapshots back instead of judging half a window. In memory they are a
cache of that stream, never rollout state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict, deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from nats.aio.msg import Msg
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from edgegate_common import subjects
from edgegate_common.bus import Bus, ensure_key_value, ensure_stream
from edgegate_common.logging import get_logger
from edgegate_operator.core import AgreementSnapshot, BreakerObservation, MetricsSnapshot
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb
from edgegate_protos.inference.v1 import inference_pb2 as ipb

log = get_logger(__name__)

OBSERVED_SUBJECTS = (
    subjects.INFERENCE_METRICS_ALL,
    subjects.GATEWAY_AGREEMENT_ALL,
    subjects.GATEWAY_BREAKER_EVENTS,
)
# The buckets the operator writes, and so creates.
OWN_BUCKETS = (subjects.KV_ROUTES, subjects.KV_BREAKERS, subjects.KV_QUOTAS, subjects.KV_ROLLOUTS)
_S = TypeVar("_S", MetricsSnapshot, AgreementSnapshot)
# A breaker not heard from for this long is taken as closed (its gateway may be gone).
BREAKER_STALE_S = 600.0


class Observations:
    """Snapshots and breaker events per model, for the last `keep_s` seconds."""

    def __init__(self, *, keep_s: float) -> None:
        self._keep_s = keep_s
        self._metrics: dict[str, deque[MetricsSnapshot]] = defaultdict(deque)
        self._agreements: dict[str, deque[AgreementSnapshot]] = defaultdict(deque)
        # (model, version) -> gateway instance -> the latest event
        self._breakers: dict[tuple[str, str], dict[str, gpb.BreakerEvent]] = defaultdict(dict)

    def metrics(self, model: str) -> list[MetricsSnapshot]:
        return list(self._metrics.get(model, ()))

    def agreements(self, model: str) -> list[AgreementSnapshot]:
        return list(self._agreements.get(model, ()))

    def breakers(self, model: str, *, now_s: float) -> dict[str, BreakerObservation]:
        """Per version, the worst state any gateway reports (open > half_open > closed)."""
        rank = {"closed": 0, "half_open": 1, "open": 2}
        worst: dict[str, BreakerObservation] = {}
        for (name, version), by_gateway in self._breakers.items():
            if name != model:
                continue
            for event in by_gateway.values():
                at_s = event.at.ToMilliseconds() / 1000
                if event.state not in rank or now_s - at_s > BREAKER_STALE_S:
                    continue
                seen = worst.get(version)
                if seen is None or rank[event.state] > rank[seen.state]:
                    worst[version] = BreakerObservation(
                        state=event.state,  # type: ignore[arg-type]
                        since_s=at_s,
                        reason=event.reason,
                    )
        return worst

    def add(self, subject: str, data: bytes) -> None:
        """Take one message from any observed subject; unreadable ones are dropped."""
        try:
            if subject == subjects.GATEWAY_BREAKER_EVENTS:
                event = gpb.BreakerEvent.FromString(data)
                self._breakers[(event.model, event.version)][event.instance] = event
            elif subject.startswith(subjects.GATEWAY_AGREEMENT_ALL[:-1]):
                self._add_agreement(gpb.AgreementSnapshot.FromString(data))
            else:
                self._add_metrics(ipb.MetricsSnapshot.FromString(data))
        except Exception as exc:  # a stranger's bytes on our subjects must not stop the reader
            log.warning("observation dropped", subject=subject, error=repr(exc))

    def _add_metrics(self, m: ipb.MetricsSnapshot) -> None:
        snapshot = MetricsSnapshot(
            model=m.model,
            version=m.version,
            instance=m.instance,
            at_s=m.at.ToMilliseconds() / 1000,
            loaded_at_s=m.loaded_at.ToMilliseconds() / 1000,
            ready=m.ready,
            execution_providers=tuple(m.execution_providers),
            requests=m.requests,
            successes=m.successes,
            errors=dict(m.errors),
            latency_bounds_s=tuple(m.latency_bounds_s),
            latency_counts=tuple(m.latency_counts),
            latency_sum_s=m.latency_sum_s,
            batch_sizes=dict(m.batch_sizes),
            executions=m.executions,
            inferences=m.inferences,
            queue_sum_s=m.queue_sum_s,
            queued=m.queued,
        )
        self._append(self._metrics[m.model], snapshot, snapshot.at_s)

    def _add_agreement(self, a: gpb.AgreementSnapshot) -> None:
        snapshot = AgreementSnapshot(
            version=a.version,
            instance=a.instance,
            at_s=a.at.ToMilliseconds() / 1000,
            started_at_s=a.started_at.ToMilliseconds() / 1000,
            compared=a.compared,
            agreed=a.agreed,
        )
        self._append(self._agreements[a.model], snapshot, snapshot.at_s)

    def _append(self, series: deque[_S], item: _S, at_s: float) -> None:
        series.append(item)
        horizon = at_s - self._keep_s
        while series and series[0].at_s < horizon:
            series.popleft()


class OperatorBus:
    """The operator's NATS connection: its KV buckets and the observations stream."""

    def __init__(self, bus: Bus, *, keep_s: float) -> None:
        self.bus = bus
        self.observations = Observations(keep_s=keep_s)
        self._keep_s = keep_s
        self._kv: dict[str, KeyValue] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, bus: Bus, *, keep_s: float = 3600.0, replicas: int = 1) -> OperatorBus:
        self = cls(bus, keep_s=keep_s)
        for bucket in OWN_BUCKETS:
            self._kv[bucket] = await ensure_key_value(
                bus.js,
                KeyValueConfig(
                    bucket=bucket, storage=StorageType.FILE, replicas=replicas, history=1
                ),
            )
        await ensure_stream(
            bus.js,
            StreamConfig(
                name=subjects.STREAM_OBSERVATIONS,
                subjects=list(OBSERVED_SUBJECTS),
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=keep_s,
                num_replicas=replicas,
            ),
        )
        await self._follow()
        return self

    async def _follow(self) -> None:
        """Replay the stream's last `keep_s` seconds into memory, then follow it."""
        since = datetime.now(tz=UTC) - timedelta(seconds=self._keep_s)

        async def on_message(msg: Msg) -> None:
            self.observations.add(msg.subject, msg.data)

        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            # RFC 3339 text, which the server reads (nats-py passes a string through).
            opt_start_time=since.isoformat().replace("+00:00", "Z"),  # type: ignore[arg-type]
        )
        self._subscription = await self.bus.js.subscribe(
            ">",
            stream=subjects.STREAM_OBSERVATIONS,
            cb=on_message,
            ordered_consumer=True,
            config=config,
        )
        # nats-py re-creates an ordered consumer after a gap from the next sequence, with
        # this same config: a start time left in it would make the server refuse that.
        config.opt_start_time = None
        await self._replayed()

    async def _replayed(self, *, timeout_s: float = 10.0) -> None:
        """Wait until the stream's history is in memory, so that a restarted operator
        never judges a window on half its snapshots."""
        give_up = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < give_up:
            info = await self._subscription.consumer_info()
            if not info.num_pending and not self._subscription.pending_msgs:
                return
            await asyncio.sleep(0.05)
        log.warning("observations still replaying; analysis may see part of a window")

    async def put(
        self,
        bucket: str,
        key: str,
        doc: Mapping[str, object],
        *,
        ignoring: frozenset[str] = frozenset(),
    ) -> bool:
        """Write `doc` under `key` unless the bucket holds exactly it; True when written.

        Top-level keys in `ignoring` (the time a document was written) are no change of
        their own: a document that differs only there stays as it is, so that a reconcile
        every second does not rewrite it every second.
        """
        kv = self._kv[bucket]
        value = _encode(doc)
        with contextlib.suppress(KeyNotFoundError):
            entry = await kv.get(key)
            if entry.value == value or (ignoring and _same_but(entry.value, doc, ignoring)):
                return False
        await kv.put(key, value)
        return True

    async def delete(self, bucket: str, key: str) -> None:
        with contextlib.suppress(KeyNotFoundError):
            await self._kv[bucket].delete(key)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._subscription.unsubscribe()


def _encode(doc: Mapping[str, object]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _same_but(stored: bytes | None, doc: Mapping[str, object], ignoring: frozenset[str]) -> bool:
    """Whether `stored` is `doc` apart from the keys in `ignoring` (unreadable: it is not)."""
    try:
        old = json.loads(stored or b"")
    except ValueError:
        return False
    if not isinstance(old, dict):
        return False
    return _encode(_without(old, ignoring)) == _encode(_without(doc, ignoring))


def _without(doc: Mapping[str, object], keys: frozenset[str]) -> dict[str, object]:
    return {k: v for k, v in doc.items() if k not in keys}
