"""Where the console's figures come from: NATS, and the services behind it.

- health: each service's `StatusRequest` (any replica answers);
- NATS and JetStream: the connection and the account's streams;
- traffic, latency, models, breaker trips: publications heard here and kept
  for an hour (`observed.py`);
- rollouts: the operator's `edgegate-rollouts` bucket, followed live;
- breakers: `breakers.py` (state heard here, modes as `BreakerControls` follows
  `edgegate-breakers`);
- quotas: the gateway's rate limiter, which follows `edgegate-quotas`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy

from edgegate_common import subjects
from edgegate_common.bus import TRANSIENT, Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import EdgegateError
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters import kv_watch
from edgegate_gateway.adapters.breakers import BreakerControls
from edgegate_gateway.adapters.rate_limits import RateLimiter
from edgegate_gateway.adapters.security_admin import SecurityAdmin
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.console import views
from edgegate_gateway.console.auth import Person
from edgegate_gateway.console.breakers import BreakerBoard, BreakerFigures
from edgegate_gateway.console.observed import STEP_S, WINDOW_S, Observed
from edgegate_gateway.core import json_input
from edgegate_gateway.core.quota import Quota
from edgegate_protos.common.v1 import status_pb2
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb
from edgegate_protos.inference.v1 import inference_pb2 as ipb
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)
STATUS_TIMEOUT_S = 1.0
_METRICS_PREFIX = subjects.INFERENCE_METRICS_ALL.removesuffix(">")


class Knowledge(Protocol):
    async def add(self, *, question: str, answer: str, source: str) -> str: ...


class Sources:
    def __init__(
        self,
        *,
        bus: Bus,
        readiness: ModelReadiness,
        limiter: RateLimiter,
        taskstore: TaskstoreClient,
        security: SecurityAdmin,
        knowledge: Knowledge | None,
        local: BreakerFigures,
        controls: BreakerControls,
    ) -> None:
        self.bus = bus
        self.taskstore = taskstore
        self.security = security
        self.observed = Observed()
        self._readiness = readiness
        self._limiter = limiter
        self._knowledge = knowledge
        self._local = local
        self._controls = controls
        self._rollouts: dict[str, dict[str, Any]] = {}
        self._subscriptions: list[Subscription] = []
        self._watch: asyncio.Task[None] | None = None
        self._finder: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._hear_observations()
        traffic = _callback(_parsed(gpb.TrafficSnapshot, self.observed.traffic))
        self._subscriptions.append(await self.bus.subscribe(subjects.GATEWAY_TRAFFIC, cb=traffic))
        self._finder = asyncio.get_running_loop().create_task(self._follow_rollouts())

    async def _hear_observations(self) -> None:
        """Metric snapshots and breaker events: from the operator's stream when there is
        one, which keeps the last hour, so a console started now has the hour's charts;
        else as they are published from now on."""
        take = _callback(self._observation)
        try:
            await self.bus.js.stream_info(subjects.STREAM_OBSERVATIONS)
        except nats.js.errors.NotFoundError:
            for subject in (subjects.INFERENCE_METRICS_ALL, subjects.GATEWAY_BREAKER_EVENTS):
                self._subscriptions.append(await self.bus.subscribe(subject, cb=take))
            return
        since = datetime.now(tz=UTC) - timedelta(seconds=WINDOW_S)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            # RFC 3339 text, which the server reads (nats-py passes a string through).
            opt_start_time=since.isoformat().replace("+00:00", "Z"),  # type: ignore[arg-type]
        )
        self._subscriptions.append(
            await self.bus.js.subscribe(
                ">",
                stream=subjects.STREAM_OBSERVATIONS,
                cb=take,
                ordered_consumer=True,
                config=config,
            )
        )
        # nats-py re-creates an ordered consumer after a gap from the next sequence, with
        # this config: a start time left in it would make the server refuse that.
        config.opt_start_time = None

    def _observation(self, message: Msg) -> None:
        if message.subject.startswith(_METRICS_PREFIX):
            self.observed.metrics(ipb.MetricsSnapshot.FromString(message.data))
        elif message.subject == subjects.GATEWAY_BREAKER_EVENTS:
            self.observed.breaker(gpb.BreakerEvent.FromString(message.data))

    async def _follow_rollouts(self, every_s: float = 3.0) -> None:
        """Follow `edgegate-rollouts` once it exists: the operator creates it, maybe later."""
        while True:
            try:
                rollouts = await self.bus.js.key_value(subjects.KV_ROLLOUTS)
                self._watch = await kv_watch.follow(rollouts, self._rollout)
                return
            except nats.js.errors.BucketNotFoundError:
                pass
            except (*TRANSIENT, nats.js.errors.Error) as exc:
                log.info("rollouts bucket not followed yet", error=repr(exc))
            await asyncio.sleep(every_s)

    async def stop(self) -> None:
        for task in (self._finder, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for subscription in self._subscriptions:
            await self.bus.unsubscribe(subscription, drain=False)
        self._subscriptions.clear()

    # -- health ----------------------------------------------------------

    async def services(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._status(s) for s in subjects.SERVICES)))

    async def _status(self, service: str) -> dict[str, Any]:
        try:
            status = await self.bus.request(
                subjects.status(service),
                status_pb2.StatusRequest(),
                status_pb2.ServiceStatus,
                timeout_s=STATUS_TIMEOUT_S,
            )
        except EdgegateError as exc:
            return {"service": service, "reachable": False, "serving": False, "error": exc.message}
        return {
            "service": service,
            "instance": status.instance,
            "version": status.version,
            "serving": status.serving,
            "started_at": views.iso(status.started_at),
            "reachable": True,
            "error": "",
        }

    async def nats(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"connected": self.bus.connected, **self.bus.server()}
        try:
            account = await self.bus.js.account_info()
            streams = await self.bus.js.streams_info()
        except (*TRANSIENT, nats.js.errors.Error) as exc:
            return {**facts, "jetstream": False, "error": f"JetStream did not answer: {exc!r}"}
        return {
            **facts,
            "jetstream": True,
            "streams": account.streams,
            "consumers": account.consumers,
            "memory_bytes": account.memory,
            "storage_bytes": account.storage,
            "bytes": account.memory + account.storage,
            "messages": sum(s.state.messages for s in streams),
            "kv_buckets": sorted(
                s.config.name.removeprefix("KV_")
                for s in streams
                if s.config.name and s.config.name.startswith("KV_")
            ),
        }

    def model_versions(self) -> list[dict[str, Any]]:
        """What the replicas report of each version, with the batch size they announced."""
        rows = self.observed.model_versions()
        for row in rows:
            size = self._readiness.max_batch_size(row["model"], row["version"])
            row["max_batch_size"] = size or None
        return rows

    def series(self) -> dict[str, Any]:
        return {"step_s": STEP_S, "window_s": WINDOW_S, "points": self.observed.series()}

    # -- rollouts and breakers -------------------------------------------

    def _rollout(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._rollouts.pop(key, None)
            return
        try:
            self._rollouts[key] = json_input.decode_object(value, what="a rollout document")
        except EdgegateError as exc:
            log.error("rollout document ignored", key=key, error=exc.message)

    def rollouts(self) -> list[dict[str, Any]]:
        return [views.rollout_view(doc) for _, doc in sorted(self._rollouts.items())]

    def _owner(self, model: str) -> dict[str, Any] | None:
        """The ModelDeployment that serves `model`, if the operator mirrors one."""
        return next((d for d in self._rollouts.values() if d.get("model") == model), None)

    def breakers(self) -> list[dict[str, Any]]:
        return self._board().rows()

    async def force_breaker(self, model: str, version: str, mode: str) -> dict[str, Any]:
        return await self._board().force(model, version, mode)

    def _board(self) -> BreakerBoard:
        return BreakerBoard(
            self._controls,
            readiness=self._readiness,
            local=self._local,
            seen=self.observed.breakers(),
            owner=self._owner,
            managed={str(d.get("model") or "") for d in self._rollouts.values()} - {""},
        )

    # -- tenants, knowledge, audit ---------------------------------------

    def quotas(self) -> dict[str, Quota]:
        return self._limiter.quotas()

    def quota(self, tenant: str) -> Quota | None:
        return self._limiter.quota(tenant)

    async def add_knowledge(self, task: tpb.Task, person: Person) -> str:
        if self._knowledge is None:
            return "failed: this gateway has no assistant, so no knowledge base"
        try:
            await self._knowledge.add(
                question=views.question_of(task),
                answer=views.answer_of(task),
                source=f"console:{person.subject}",
            )
        except EdgegateError as exc:
            return f"failed: {exc.message}"
        return "added"

    async def record(self, person: Person, action: str, target: str, *, outcome: str) -> None:
        """File a console action in the audit log; a failure to is logged loudly."""
        try:
            await self.security.record_action(
                credential=person.credential,
                action=f"console.{action}",
                target=target,
                outcome=outcome,
            )
        except EdgegateError as exc:
            log.error("console action not audited", action=action, target=target, error=exc.message)


def _parsed(kind: Any, take: Callable[[Any], None]) -> Callable[[Msg], None]:
    def parse(received: Msg) -> None:
        message = kind()
        message.ParseFromString(received.data)
        take(message)

    return parse


def _callback(take: Callable[[Msg], None]) -> Callable[[Msg], Awaitable[None]]:
    async def received(message: Msg) -> None:
        try:
            take(message)
        except Exception:  # one unreadable snapshot must not stop the subscription
            log.warning("console ignored a message", subject=message.subject, exc_info=True)

    return received
