"""Local inference behind a circuit breaker per model version.

`LocalInference.infer` sends an envelope to a model version over NATS,
unless that version's breaker is open. What it cannot answer for a reason
that is not the caller's fault (breaker open, nobody serving, failing, too
slow, a full queue) comes out as `Elsewhere`, so the pipeline can try the
cloud fallback or the taskstore. The caller's own errors (bad input, unknown
model) pass through as they are and never touch the breaker. An overloaded
version (RESOURCE_EXHAUSTED: its queue is full, or it could not start the
request within its queue timeout) spills over without counting against it;
with nowhere to spill, the caller gets that refusal and its retry hint (429),
never a 503. Slow calls count on service time: the reply says how long the
request waited in the model's queue, and that wait is not the version's fault.

Every state change is logged and published on `edgegate.gateway.v1.breaker`
for the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable

import nats.errors
from google.protobuf.timestamp_pb2 import Timestamp

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import (
    REQUEST_ERRORS,
    EdgegateError,
    NoResponders,
    ResourceExhausted,
    Unavailable,
)
from edgegate_common.logging import get_logger
from edgegate_gateway.core.breaker import BreakerPolicy, CircuitBreaker, Transition
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb

log = get_logger(__name__)


class Elsewhere(Exception):
    """Local inference cannot answer this envelope now; `error` says why."""

    def __init__(self, error: EdgegateError) -> None:
        super().__init__(error.message)
        self.error = error


class LocalInference:
    def __init__(
        self,
        *,
        bus: Bus,
        readiness: ModelReadiness,
        policy: BreakerPolicy,
        timeout_s: float,
        instance: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._readiness = readiness
        self._policy = policy
        self._timeout_s = timeout_s
        self._instance = instance
        self._clock = clock
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

    def breaker(self, model: str, version: str) -> CircuitBreaker:
        key = (model, version)
        if key not in self._breakers:
            self._breakers[key] = CircuitBreaker(self._policy)
        return self._breakers[key]

    async def infer(self, envelope: env.Envelope, *, model: str, version: str) -> env.Reply:
        breaker = self.breaker(model, version)
        allowed, change = breaker.allow(self._clock())
        await self._report(model, version, change)
        if not allowed:
            raise Elsewhere(Unavailable(f"model {model!r} version {version}: circuit open"))
        started = self._clock()
        try:
            reply = await self._bus.request(
                subjects.inference_infer(model, version),
                envelope,
                env.Reply,
                timeout_s=self._timeout_s,
            )
        except asyncio.CancelledError:
            breaker.forget()  # the caller left: nothing learned about the version
            raise
        except NoResponders:
            self._readiness.mark_down(model, version)
            await self._record(breaker, model, version, failed=True, started=started)
            raise Elsewhere(
                Unavailable(f"model {model!r} version {version} is not being served")
            ) from None
        except EdgegateError as exc:
            if exc.code in REQUEST_ERRORS:  # the request is wrong, not the version
                breaker.forget()
                raise
            if isinstance(exc, ResourceExhausted):
                breaker.forget()
                raise Elsewhere(exc) from None  # overload spills over; it does not trip
            await self._record(breaker, model, version, failed=True, started=started)
            raise Elsewhere(exc) from None
        queued_s = _seconds(reply.metadata.get(subjects.REPLY_QUEUE_S))
        await self._record(
            breaker, model, version, failed=False, started=started, queued_s=queued_s
        )
        return reply

    async def _record(
        self,
        breaker: CircuitBreaker,
        model: str,
        version: str,
        *,
        failed: bool,
        started: float,
        queued_s: float = 0.0,
    ) -> None:
        now = self._clock()
        duration_s = now - started
        change = breaker.record(
            failed=failed,
            duration_s=duration_s,
            queued_s=min(queued_s, duration_s),
            now_s=now,
        )
        await self._report(model, version, change)

    async def _report(self, model: str, version: str, change: Transition | None) -> None:
        if change is None:
            return
        log.warning(
            "circuit breaker",
            model=model,
            version=version,
            state=change.state.value,
            previous=change.previous.value,
            reason=change.reason,
        )
        at = Timestamp()
        at.GetCurrentTime()
        event = gpb.BreakerEvent(
            model=model,
            version=version,
            state=change.state.value,
            previous=change.previous.value,
            reason=change.reason,
            instance=self._instance,
            at=at,
        )
        with contextlib.suppress(nats.errors.Error):
            await self._bus.nc.publish(subjects.GATEWAY_BREAKER_EVENTS, event.SerializeToString())


def _seconds(raw: str | None) -> float:
    """A duration a reply's metadata states; 0 when absent or unreadable (then the whole
    call counts as service, as it did before inference reported its queue time)."""
    try:
        value = float(raw or 0)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0
