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
never a 503. Slow calls count on service time: the reply says how long its
model call took, and the rest (its wait in the model's queue, in busy event
loops) grows with load, not with a fault of the version.

Every state change is logged and published on `edgegate.gateway.v1.breaker`
for the operator. The operator may also set a model's breaker policy and
force a version's breaker open, closed or back to auto (`apply_controls`,
fed from NATS KV `edgegate-breakers`): forced open, the version is never
called here; forced closed, its failures never trip it.

`infer_unguarded` is for shadow copies (`shadow.py`): it calls a version
without consulting or telling any breaker, so that a canary's shadow calls
neither trip nor free anything, and it refuses a version whose breaker is
open (forced or tripped), which is never to be called here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import (
    REQUEST_ERRORS,
    RETRY_AFTER_KEY,
    EdgegateError,
    NoResponders,
    ResourceExhausted,
    Unavailable,
)
from edgegate_common.logging import get_logger
from edgegate_gateway.core.breaker import BreakerPolicy, CircuitBreaker, Mode, State, Transition
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb

log = get_logger(__name__)

# Batches of one split request that may wait on the model at once (see `_in_batches`).
BATCHES_IN_FLIGHT = 2


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
        # The operator's controls, by model key (subjects.ident(model)), as `edgegate-breakers`.
        self._policies: dict[str, BreakerPolicy] = {}
        self._modes: dict[str, dict[str, Mode]] = {}

    def breaker(self, model: str, version: str) -> CircuitBreaker:
        key = (model, version)
        if key not in self._breakers:
            self._breakers[key] = CircuitBreaker(self._policy_of(model))
        return self._breakers[key]

    def _policy_of(self, model: str) -> BreakerPolicy:
        return self._policies.get(subjects.ident(model), self._policy)

    def _mode_of(self, model: str, version: str) -> Mode:
        return self._modes.get(subjects.ident(model), {}).get(version, Mode.AUTO)

    async def apply_controls(
        self, key: str, *, policy: BreakerPolicy | None, modes: Mapping[str, Mode]
    ) -> None:
        """The operator's policy (None: the gateway's own) and forced modes for the model
        whose key is `key`, applied to its breakers now; each forced change is published.

        A version forced open or closed gets its breaker (and its event) now,
        before anyone calls it, when the model's name is known: a plain key,
        a model served now, or one with breakers already.
        """
        if policy is None:
            self._policies.pop(key, None)
        else:
            self._policies[key] = policy
        self._modes[key] = {v: m for v, m in modes.items() if m is not Mode.AUTO}
        names = {m for m, _ in self._breakers} | set(self._readiness.models()) | {key}
        for model in sorted(n for n in names if subjects.ident(n) == key):
            for version in self._modes[key]:
                self.breaker(model, version)
            for (name, version), breaker in list(self._breakers.items()):
                if name == model:
                    breaker.reconfigure(self._policy_of(model))
                    await self._report(model, version, breaker.force(self._mode_of(model, version)))

    def breaker_figures(self, model: str, version: str) -> tuple[int, float | None, float | None]:
        """This replica's (calls, failure rate, slow-call rate) of a version's breaker window."""
        breaker = self._breakers.get((model, version))
        return breaker.figures(self._clock()) if breaker is not None else (0, None, None)

    def breaker_state(self, model: str, version: str) -> str | None:
        """This replica's breaker state of a version ("closed", "open", "half_open"); None
        when it has not called the version yet."""
        breaker = self._breakers.get((model, version))
        return breaker.state.value if breaker is not None else None

    def may_call(self, model: str, version: str) -> bool:
        """Whether a version may be called here at all: no breaker of it is open."""
        if self._mode_of(model, version) is Mode.OPEN:
            return False
        breaker = self._breakers.get((model, version))
        return breaker is None or breaker.state is not State.OPEN

    async def infer(self, envelope: env.Envelope, *, model: str, version: str) -> env.Reply:
        """The version's reply; a text envelope with more texts than the version takes in
        one request (its `max_batch_size`) is sent in several and the replies joined."""

        async def one(part: env.Envelope) -> env.Reply:
            return await self._infer_one(part, model=model, version=version)

        return await self._split(envelope, model=model, version=version, one=one)

    async def infer_unguarded(
        self, envelope: env.Envelope, *, model: str, version: str
    ) -> env.Reply:
        """The version's reply, as `infer`, with no breaker consulted or told: for copies
        whose outcome must not change what callers get. A version whose breaker is open
        (`may_call`) is not called: UNAVAILABLE."""
        if not self.may_call(model, version):
            raise Unavailable(f"model {model!r} version {version}: circuit open")

        async def one(part: env.Envelope) -> env.Reply:
            try:
                return await self._request(part, model=model, version=version)
            except NoResponders:
                self._readiness.mark_down(model, version)
                raise

        return await self._split(envelope, model=model, version=version, one=one)

    async def _split(
        self,
        envelope: env.Envelope,
        *,
        model: str,
        version: str,
        one: Callable[[env.Envelope], Awaitable[env.Reply]],
    ) -> env.Reply:
        rows = self._readiness.max_batch_size(model, version)
        if (
            rows
            and len(envelope.parts) > rows
            and all(p.WhichOneof("content") == "text" for p in envelope.parts)
        ):
            return await self._in_batches(envelope, rows=rows, one=one)
        return await one(envelope)

    async def _request(self, envelope: env.Envelope, *, model: str, version: str) -> env.Reply:
        return await self._bus.request(
            subjects.inference_infer(model, version),
            envelope,
            env.Reply,
            timeout_s=self._timeout_s,
        )

    async def _in_batches(
        self,
        envelope: env.Envelope,
        *,
        rows: int,
        one: Callable[[env.Envelope], Awaitable[env.Reply]],
    ) -> env.Reply:
        """Batches of `rows`, at most `BATCHES_IN_FLIGHT` at once: enough to keep the
        model's queue fed, few enough that a 2,048-text request is not refused as an
        overload of its own making. The first failure cancels the rest."""
        gate = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        head = env.Envelope()  # everything but the parts, copied once
        head.CopyFrom(envelope)
        del head.parts[:]

        async def batch_from(start: int) -> env.Reply:
            batch = env.Envelope()
            batch.CopyFrom(head)
            batch.parts.extend(envelope.parts[start : start + rows])
            async with gate:
                return await one(batch)

        starts = range(0, len(envelope.parts), rows)
        running = [asyncio.ensure_future(batch_from(i)) for i in starts]
        try:
            replies = await asyncio.gather(*running)
        except BaseException:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        return joined(envelope, replies)

    async def _infer_one(self, envelope: env.Envelope, *, model: str, version: str) -> env.Reply:
        breaker = self.breaker(model, version)
        await self._report(model, version, breaker.force(self._mode_of(model, version)))
        now_s = self._clock()
        allowed, change = breaker.allow(now_s)
        await self._report(model, version, change)
        if not allowed:
            wait_s = breaker.retry_after_s(now_s)
            forced = " (forced by the operator)" if breaker.mode is Mode.OPEN else ""
            raise Elsewhere(
                Unavailable(
                    f"model {model!r} version {version}: circuit open{forced}",
                    details={RETRY_AFTER_KEY: f"{max(wait_s, 0.1):.3g}"},
                )
            )
        started = self._clock()
        learned = False  # whether the call tells anything about the version
        try:
            reply = await self._request(envelope, model=model, version=version)
            learned = True
        except NoResponders:
            self._readiness.mark_down(model, version)
            learned = True
            await self._record(breaker, model, version, failed=True, started=started)
            raise Elsewhere(
                Unavailable(f"model {model!r} version {version} is not being served")
            ) from None
        except EdgegateError as exc:
            if exc.code in REQUEST_ERRORS:  # the request is wrong, not the version
                raise
            if isinstance(exc, ResourceExhausted):
                raise Elsewhere(exc) from None  # overload spills over; it does not trip
            learned = True
            await self._record(breaker, model, version, failed=True, started=started)
            raise Elsewhere(exc) from None
        finally:
            if not learned:  # the caller left, or a request error, or an overload:
                breaker.forget()  # a half-open probe's slot is free again
        service_s = _seconds(reply.metadata.get(subjects.REPLY_COMPUTE_S))
        await self._record(
            breaker, model, version, failed=False, started=started, service_s=service_s
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
        service_s: float | None = None,
    ) -> None:
        now = self._clock()
        change = breaker.record(
            failed=failed, duration_s=now - started, service_s=service_s, now_s=now
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
        await self._bus.publish_best_effort(
            subjects.GATEWAY_BREAKER_EVENTS, event, kind="breaker_event"
        )


def _seconds(raw: str | None) -> float | None:
    """A duration a reply's metadata states; None when absent or unreadable (then the
    whole call counts as service, as it did before inference reported its compute time)."""
    try:
        value = float(raw) if raw else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def joined(envelope: env.Envelope, replies: list[env.Reply]) -> env.Reply:
    """One reply from the replies to consecutive batches of `envelope`'s rows.

    Each output tensor is the batches' tensors one after another: their first
    dimension adds up, and their raw bytes (fixed-size elements, or BYTES with
    their length prefixes) concatenate as they are.
    """
    reply = replies[0]  # the batches' replies are not used again: join into the first
    for index, part in enumerate(reply.parts):
        tensors = [r.parts[index].tensor for r in replies]
        rows = sum(t.shape[0] for t in tensors)
        part.tensor.raw_data = b"".join(t.raw_data for t in tensors)
        part.tensor.shape[0] = rows
    reply.envelope_id = envelope.id
    return reply
