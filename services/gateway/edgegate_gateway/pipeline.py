"""One pipeline for every adapter: admit, route, run, answer.

An adapter builds an `Envelope` from what it received and hands it here with
the caller's credential. The pipeline:

1. asks the security service to admit it, in one round trip. That call
   authenticates the token, authorises `infer:<model>`, inspects the content
   and masks PII. A refusal is a typed error; redacted parts replace the
   originals.
2. spends one request of the tenant's (and the API key's) rate limit, shared
   by all gateway replicas (`adapters/rate_limits.py`).
3. routes it to a model version: the one the envelope names, else one
   chosen by the model's weights in `edgegate-routes` (stable / canary),
   else the highest one an inference replica announces. A share of the
   messages routed by weight may be copied to a shadow version once
   answered (`shadow.py`); the caller never waits for the copy.
4. runs it on the inference service over NATS, behind a circuit breaker per
   model version (`local.py`). When the caller asked for async work it goes
   to the taskstore instead. When local inference cannot answer (breaker
   open, nobody serving, failing, a full queue), the cloud fallback answers
   if one is configured and the deadline allows. Otherwise the taskstore
   takes it, if the adapter can answer later (`Offline.DEFER`).
5. inspects a text answer on its way out (the security service masks or
   withholds it, as it does for what comes in).

When NATS itself is unreachable, a message that may wait (a task, a
deferrable send) from a caller admitted recently is written to the disk
outbox (`adapters/outbox.py`) and the caller gets its task id; once NATS is
back, `replay_outbox` admits each one in full and hands it to the taskstore.

What comes back is a `Reply`, or an `EdgegateError` that each adapter maps
to its own protocol (HTTP status, gRPC code, an error frame). Nothing here
knows HTTP.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.credentials import bearer_token
from edgegate_common.errors import (
    DeadlineExceeded,
    EdgegateError,
    InvalidArgument,
    NoResponders,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from edgegate_common.inspection import passed
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.breakers import BreakerControls
from edgegate_gateway.adapters.fallback import Fallback
from edgegate_gateway.adapters.outbox import Outbox
from edgegate_gateway.adapters.rate_limits import RateLimiter
from edgegate_gateway.adapters.routes import RouteTable
from edgegate_gateway.core.routing import Shadow
from edgegate_gateway.core.rules import Rules
from edgegate_gateway.local import Elsewhere, LocalInference
from edgegate_gateway.shadow import ShadowTraffic
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb
from edgegate_protos.security.v1 import security_pb2 as spb
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)

# Below this much time left before its deadline, a message is not sent to the cloud.
MIN_FALLBACK_BUDGET_S = 0.5
# How long an admitted caller may still leave messages in the outbox while NATS is away.
REMEMBER_CALLER_S = 3600.0
MAX_REMEMBERED_CALLERS = 10_000
# What the taskstore takes (its defaults): checked before the outbox accepts a message.
MAX_TASK_ENVELOPE_BYTES = 256 * 1024
MAX_REPLAY_REFUSALS = 30  # an outbox entry refused as too much this often is set aside
Rep = TypeVar("Rep", bound=Message)


@dataclass(frozen=True, slots=True)
class Timeouts:
    security_s: float = 2.0
    taskstore_s: float = 5.0


class Offline(enum.Enum):
    """What to do when no inference replica serves the model."""

    REFUSE = "refuse"  # the adapter must answer now (an embeddings call): NOT_FOUND
    DEFER = "defer"  # the adapter can answer later: hand it to the taskstore


def _remaining_s(envelope: env.Envelope) -> float | None:
    """What the envelope's deadline leaves, in seconds (None: no deadline)."""
    if not envelope.HasField("deadline"):
        return None
    return envelope.deadline.ToNanoseconds() / 1e9 - time.time()


def _check_deferrable(envelope: env.Envelope) -> None:
    """What the taskstore would refuse, refused before the outbox accepts it."""
    if not envelope.parts or not envelope.route.model:
        raise InvalidArgument("a message kept for later needs parts and a model")
    if len(envelope.idempotency_key) > subjects.MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument(f"idempotency_key is longer than {subjects.MAX_IDEMPOTENCY_KEY}")
    if envelope.ByteSize() > MAX_TASK_ENVELOPE_BYTES:
        raise InvalidArgument(f"the message is larger than {MAX_TASK_ENVELOPE_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class Handled:
    """A message's reply, and the task that keeps it when it was deferred."""

    reply: env.Reply
    task: tpb.Task | None = None


def _deferred(envelope: env.Envelope, task: tpb.Task) -> Handled:
    reply = env.Reply(
        envelope_id=envelope.id,
        backend=env.BACKEND_TASKSTORE,
        task_id=task.id,
        model=envelope.route.model,
    )
    reply.created_at.GetCurrentTime()
    return Handled(reply, task)


class Pipeline:
    def __init__(
        self,
        *,
        bus: Bus,
        readiness: ModelReadiness,
        timeouts: Timeouts,
        local: LocalInference,
        limiter: RateLimiter | None = None,
        routes: RouteTable | None = None,
        fallback: Fallback | None = None,
        outbox: Outbox | None = None,
        rules: Rules | None = None,
        shadow: ShadowTraffic | None = None,
        breakers: BreakerControls | None = None,
    ) -> None:
        self._bus = bus
        self._readiness = readiness
        self._timeouts = timeouts
        self._local = local
        self._limiter = limiter
        self._routes = routes
        self._fallback = fallback
        self._outbox = outbox
        self._rules = rules or Rules()
        self._shadow = shadow
        self._breakers = breakers
        # Callers admitted lately (bearer token → principal, until when), for the outbox.
        self._callers: dict[str, tuple[principal_pb2.Principal, float]] = {}
        self._replay_refusals: Counter[str] = Counter()  # outbox file → RESOURCE_EXHAUSTED seen

    def route(self, envelope: env.Envelope) -> None:
        """Apply the routing rules to a message as it enters (adapters call this once)."""
        self._rules.route(envelope)

    def models(self) -> list[str]:
        """The models some inference replica serves now."""
        return self._readiness.models()

    async def authenticate(self, credential: str) -> principal_pb2.Principal:
        """Who is calling (for calls that touch no model, such as listing models)."""
        response = await self._security(
            subjects.SECURITY_AUTHENTICATE,
            spb.AuthenticateRequest(token=bearer_token(credential)),
            spb.AuthenticateResponse,
        )
        return response.principal

    async def handle(
        self,
        envelope: env.Envelope,
        *,
        credential: str,
        defer: bool = False,
        offline: Offline = Offline.REFUSE,
    ) -> Handled:
        """Admit `envelope`, run it on its model (or defer it): the reply, and the task
        that keeps the message when it was deferred."""
        try:
            # With NATS away this fails at once, before any I/O.
            await self._admit(envelope, credential)
        except Unavailable:
            if offline is Offline.DEFER and self._nats_away():
                return _deferred(envelope, await self._keep_for_later(envelope, credential))
            raise
        if defer:
            return _deferred(envelope, await self.store(envelope, credential=credential))
        model, version = envelope.route.model, envelope.route.version
        chosen, shadow = self._version(model, version)
        if chosen is None:
            missing = NotFound(
                f"no inference replica serves model {model!r}"
                + (f" version {version!r}" if version else ""),
                details={"model": model},
            )
            return await self._elsewhere(envelope, credential, offline, missing)
        try:
            reply = await self._local.infer(envelope, model=model, version=chosen)
        except Elsewhere as why:
            return await self._elsewhere(envelope, credential, offline, why.error)
        if shadow is not None and self._shadow is not None:
            self._shadow.copy(envelope, reply, chosen=chosen, shadow=shadow)
        return await self._checked(envelope, reply)

    async def _checked(self, envelope: env.Envelope, reply: env.Reply) -> Handled:
        """An answer given now, its parts as they may leave (see `inspect_output`)."""
        checked = await self.inspect_output(envelope, list(reply.parts))
        del reply.parts[:]
        reply.parts.extend(checked)
        return Handled(reply)

    async def inspect_output(self, envelope: env.Envelope, parts: list[env.Part]) -> list[env.Part]:
        """An answer's parts as they may leave: security's output inspection, for text.

        Tensors pass as they are (no round trip). Text may come back masked;
        a denied answer is withheld with PERMISSION_DENIED.
        """
        if not any(p.WhichOneof("content") == "text" for p in parts):
            return parts
        inspected = await self._security(
            subjects.SECURITY_INSPECT,
            spb.InspectRequest(
                principal=principal_pb2.Principal(tenant=envelope.tenant, subject=envelope.user),
                direction=spb.DIRECTION_OUTPUT,
                parts=parts,
            ),
            spb.InspectResponse,
        )
        return passed(inspected, parts, refused="the answer was withheld")

    async def _elsewhere(
        self, envelope: env.Envelope, credential: str, offline: Offline, error: EdgegateError
    ) -> Handled:
        """Local inference cannot answer: the cloud fallback (the model's own, else the
        gateway's), else the taskstore, else `error`."""
        own = self._breakers.fallback_for(envelope.route.model) if self._breakers else None
        fallback = own or self._fallback
        if fallback is not None and fallback.can_serve(envelope):
            budget_s = _remaining_s(envelope)
            if budget_s is None or budget_s > MIN_FALLBACK_BUDGET_S:
                try:
                    reply = await fallback.infer(envelope, budget_s=budget_s)
                except EdgegateError as exc:
                    log.warning("cloud fallback failed", error=exc.message)
                else:
                    return await self._checked(envelope, reply)
        if offline is Offline.DEFER:
            return _deferred(envelope, await self.store(envelope, credential=credential))
        raise error

    def _version(self, model: str, named: str) -> tuple[str | None, Shadow | None]:
        """The version named, else one by the route's weights, else the highest served;
        and the route's shadow, when the version was chosen by weight."""
        if not named and self._routes is not None:
            weights = self._routes.weights(model)
            if weights is not None:
                chosen = weights.choose(self._readiness.served_versions(model))
                if chosen is not None:
                    return chosen, weights.shadow
        return self._readiness.version_to_run(model, named), None

    async def submit(self, envelope: env.Envelope, *, credential: str) -> tpb.Task:
        """Admit `envelope` and hand it to the taskstore: the task, to follow later."""
        try:
            # With NATS away this fails at once, before any I/O.
            await self._admit(envelope, credential)
        except Unavailable:
            if self._nats_away():
                return await self._keep_for_later(envelope, credential)
            raise
        return await self.store(envelope, credential=credential)

    def _nats_away(self) -> bool:
        return self._outbox is not None and not self._bus.connected

    async def _keep_for_later(self, envelope: env.Envelope, credential: str) -> tpb.Task:
        """NATS is unreachable: keep the message in the outbox; the task it will become.

        Called after `_admit` failed, which gave the envelope its id and arrival time.
        """
        assert self._outbox is not None
        token = bearer_token(credential)
        principal = self._recent_caller(token)
        user = envelope.user or principal.subject
        envelope.tenant, envelope.user = principal.tenant, user
        _check_deferrable(envelope)
        task = tpb.Task(
            id=subjects.task_id(principal.tenant, user, envelope.idempotency_key or envelope.id),
            tenant=principal.tenant,
            user=user,
            status=tpb.TASK_STATUS_PENDING,
            priority=envelope.priority or env.PRIORITY_NORMAL,
        )
        task.envelope.CopyFrom(envelope)
        task.created_at.GetCurrentTime()
        task.updated_at.CopyFrom(task.created_at)
        entry = gpb.OutboxEntry(envelope=envelope, credential=token, task_id=task.id)
        entry.accepted_at.CopyFrom(task.created_at)
        await asyncio.to_thread(self._outbox.put, entry)  # fsyncs: off the event loop
        log.warning("nats unreachable: message kept in the outbox", task=task.id)
        return task

    def _recent_caller(self, token: str) -> principal_pb2.Principal:
        known = self._callers.get(token)
        if known is None or known[1] < time.monotonic():
            raise Unavailable(
                "NATS is unreachable and this credential was not admitted lately; try again"
            )
        return known[0]

    def _remember(self, token: str, principal: principal_pb2.Principal) -> None:
        until = time.monotonic() + REMEMBER_CALLER_S
        if principal.HasField("expires_at"):
            until = min(until, time.monotonic() + principal.expires_at.ToSeconds() - time.time())
        self._callers.pop(token, None)
        self._callers[token] = (principal, until)
        while len(self._callers) > MAX_REMEMBERED_CALLERS:
            del self._callers[next(iter(self._callers))]

    async def replay_outbox(self) -> int:
        """Hand what the outbox keeps to the taskstore; how many went. Stops while NATS is away."""
        if self._outbox is None or not self._outbox.count():
            return 0
        replayed = 0
        for stored in self._outbox.pending():
            envelope, credential = stored.entry.envelope, stored.entry.credential
            try:
                await self._admit(envelope, credential, limited=False)
                task = await self.store(envelope, credential=credential)
            except Unavailable as exc:
                log.info("outbox replay waits", why=exc.message, left=self._outbox.count())
                break
            except ResourceExhausted as exc:
                # The store is full (it frees up), or this message is too big for it (it
                # never will): the next ones go on, and a message refused too often is set aside.
                self._replay_refusals[stored.path.name] += 1
                if self._replay_refusals[stored.path.name] < MAX_REPLAY_REFUSALS:
                    log.info("outbox entry waits", task=stored.entry.task_id, why=exc.message)
                    continue
                self._outbox.reject(stored.path, f"{exc.code.name}: {exc.message}")
                continue
            except EdgegateError as exc:
                log.error(
                    "outbox entry refused on replay", task=stored.entry.task_id, why=exc.message
                )
                self._outbox.reject(stored.path, f"{exc.code.name}: {exc.message}")
                continue
            if task.id != stored.entry.task_id:
                log.error(
                    "outbox replay named another task", kept=stored.entry.task_id, got=task.id
                )
            self._outbox.done(stored.path)
            replayed += 1
        if replayed:
            log.info("outbox replayed", messages=replayed, left=self._outbox.count())
        return replayed

    async def store(
        self, envelope: env.Envelope, *, credential: str, answer: env.Reply | None = None
    ) -> tpb.Task:
        """Hand an admitted envelope to the taskstore: a task to run later, or, with
        `answer`, one answered here, kept as completed (its event published).

        Conversations deliver every result from the taskstore, so an answer
        given inline is stored there too; the same idempotency key stores it once.
        """
        return await self.task_call(
            subjects.TASKSTORE_SUBMIT,
            tpb.SubmitRequest(envelope=envelope, answer=answer),
            tpb.Task,
            credential=credential,
        )

    async def task_call(
        self, subject: str, request: Message, reply_type: type[Rep], *, credential: str
    ) -> Rep:
        """A taskstore call on the caller's behalf (Get, List, Cancel...), with their token."""
        try:
            return await self._bus.request(
                subject,
                request,
                reply_type,
                timeout_s=self._timeouts.security_s + self._timeouts.taskstore_s,
                headers={"Authorization": f"Bearer {bearer_token(credential)}"},
            )
        except (NoResponders, DeadlineExceeded):
            raise Unavailable("the taskstore is not answering; try again") from None

    async def _admit(
        self, envelope: env.Envelope, credential: str, *, limited: bool = True
    ) -> None:
        """Security's answer applied to `envelope`: refused, or cleaned and stamped."""
        if not envelope.id:
            envelope.id = uuid.uuid4().hex
        if not envelope.HasField("received_at"):
            envelope.received_at.GetCurrentTime()
        admitted = await self._security(
            subjects.SECURITY_ADMIT,
            spb.AdmitRequest(token=bearer_token(credential), envelope=envelope),
            spb.AdmitResponse,
        )
        cleaned = passed(admitted.inspection, envelope.parts, refused="the message was refused")
        if admitted.inspection.verdict == spb.VERDICT_ALLOW_WITH_REDACTIONS:
            del envelope.parts[:]
            envelope.parts.extend(cleaned)
        principal = admitted.principal
        envelope.tenant = principal.tenant
        envelope.user = envelope.user or principal.subject
        if self._outbox is not None:
            self._remember(bearer_token(credential), principal)
        if limited and self._limiter is not None:
            await self._limiter.admit(principal.tenant, key=principal.token_id or principal.subject)

    async def _security(self, subject: str, request: Message, reply_type: type[Rep]) -> Rep:
        try:
            return await self._bus.request(
                subject, request, reply_type, timeout_s=self._timeouts.security_s
            )
        except (NoResponders, DeadlineExceeded):
            raise Unavailable("the security service is not answering; try again") from None
