"""One pipeline for every adapter: route, admit, run, answer.

An adapter builds an `Envelope` from what it received and hands it to
`handle` with the caller's credential. The pipeline:

1. routes it by the routing rules (`core/rules.py`): its model (or the
   assistant) by channel, command prefix and the model asked for. A message
   routed to the assistant is answered by the assistant the adapter passes
   (it admits the message itself); an adapter that runs models only passes
   none, and the message is refused once the caller is known.
2. asks the security service to admit it, in one round trip. That call
   authenticates the token, authorises `infer:<model>`, inspects the content
   and masks PII. A refusal is a typed error; redacted parts replace the
   originals.
3. spends one request of the tenant's (and the API key's) rate limit, shared
   by all gateway replicas (`adapters/rate_limits.py`).
4. chooses the model version: the one the envelope names, else one chosen
   by the model's weights in `edgegate-routes` (stable / canary), else the
   highest one an inference replica announces. A share of the messages
   routed by weight may be copied to a shadow version once answered
   (`shadow.py`); the caller never waits for the copy.
5. runs it on the inference service over NATS, behind a circuit breaker per
   model version (`local.py`). When the caller asked for async work it goes
   to the taskstore instead (`adapters/taskstore_client.py`). When local
   inference cannot answer (breaker open, nobody serving, failing, a full
   queue), the cloud fallback answers if one is configured and the deadline
   allows. Otherwise the taskstore takes it, if the adapter can answer later
   (`Offline.DEFER`).
6. inspects a text answer on its way out (the security service masks or
   withholds it, as it does for what comes in).

`run` is steps 2 to 6 for a message already addressed (the assistant's own
embedding of a question). When NATS itself is unreachable, a message that may
wait is handed to the offline spool (`spool.py`), which keeps it on disk and
replays it through `readmit` once NATS is back; the pipeline only tells it
whom it admitted.

What comes back is a `Reply`, or an `EdgegateError` that each adapter maps
to its own protocol (HTTP status, gRPC code, an error frame). Nothing here
knows HTTP.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass
from typing import Protocol, TypeVar

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
    Unavailable,
)
from edgegate_common.inspection import passed
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.breakers import BreakerControls
from edgegate_gateway.adapters.fallback import Fallback
from edgegate_gateway.adapters.rate_limits import RateLimiter
from edgegate_gateway.adapters.routes import RouteTable
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.core.routing import Shadow
from edgegate_gateway.core.rules import ASSISTANT, Rules
from edgegate_gateway.local import Elsewhere, LocalInference
from edgegate_gateway.shadow import ShadowTraffic
from edgegate_gateway.spool import OfflineSpool
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.security.v1 import security_pb2 as spb
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)

# Below this much time left before its deadline, a message is not sent to the cloud.
MIN_FALLBACK_BUDGET_S = 0.5
Rep = TypeVar("Rep", bound=Message)


class Offline(enum.Enum):
    """What to do when no inference replica serves the model."""

    REFUSE = "refuse"  # the adapter must answer now (an embeddings call): NOT_FOUND
    DEFER = "defer"  # the adapter can answer later: hand it to the taskstore


class LocalAnswerer(Protocol):
    """Answers what is routed to the assistant; admits the message itself (`Assistant`)."""

    async def reply(self, envelope: env.Envelope, *, credential: str) -> env.Reply: ...


def _remaining_s(envelope: env.Envelope) -> float | None:
    """What the envelope's deadline leaves, in seconds (None: no deadline)."""
    if not envelope.HasField("deadline"):
        return None
    return envelope.deadline.ToNanoseconds() / 1e9 - time.time()


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
        local: LocalInference,
        taskstore: TaskstoreClient,
        security_timeout_s: float = 2.0,
        limiter: RateLimiter | None = None,
        routes: RouteTable | None = None,
        fallback: Fallback | None = None,
        spool: OfflineSpool | None = None,
        rules: Rules | None = None,
        shadow: ShadowTraffic | None = None,
        breakers: BreakerControls | None = None,
    ) -> None:
        self._bus = bus
        self._readiness = readiness
        self._local = local
        self._taskstore = taskstore
        self._security_timeout_s = security_timeout_s
        self._limiter = limiter
        self._routes = routes
        self._fallback = fallback
        self._spool = spool
        self._rules = rules or Rules()
        self._shadow = shadow
        self._breakers = breakers

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
        assistant: LocalAnswerer | None = None,
    ) -> Handled:
        """Route `envelope` by the rules and answer it (or defer it): the reply, and the
        task that keeps the message when it was deferred.

        What the rules send to the assistant is `assistant`'s to answer. A
        caller that passes none runs models only: the message is refused
        (INVALID_ARGUMENT), once the caller is known, so that a stranger is
        told UNAUTHENTICATED and nothing about the model it named.
        """
        self._rules.route(envelope)
        if envelope.route.model != ASSISTANT:
            return await self.run(envelope, credential=credential, defer=defer, offline=offline)
        if assistant is None:
            await self.authenticate(credential)
            raise InvalidArgument(
                f"{ASSISTANT!r} is the chat assistant; it answers chat "
                "(/v1/chat/completions, /ws, gRPC Converse) where the gateway has one, "
                "not this call",
                details={"param": "model"},
            )
        return Handled(await assistant.reply(envelope, credential=credential))

    async def run(
        self,
        envelope: env.Envelope,
        *,
        credential: str,
        defer: bool = False,
        offline: Offline = Offline.REFUSE,
    ) -> Handled:
        """Admit an envelope already addressed to its model (no rules apply) and run it
        there, or defer it: what `handle` does once the message is routed."""
        try:
            # With NATS away this fails at once, before any I/O.
            await self._admit(envelope, credential)
        except Unavailable:
            if offline is Offline.DEFER and self._spool is not None and self._spool.nats_away:
                return _deferred(envelope, await self._spool.keep(envelope, credential=credential))
            raise
        if defer:
            task = await self._taskstore.submit(envelope, credential=credential)
            return _deferred(envelope, task)
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

    async def readmit(self, envelope: env.Envelope, credential: str) -> None:
        """Admit again a message accepted earlier (the offline spool's, on replay): the
        caller may have lost the right meanwhile; its rate was spent when it came."""
        await self._admit(envelope, credential, limited=False)

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
            task = await self._taskstore.submit(envelope, credential=credential)
            return _deferred(envelope, task)
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
        if self._spool is not None:
            self._spool.remember(credential, principal)
        if limited and self._limiter is not None:
            await self._limiter.admit(principal.tenant, key=principal.token_id or principal.subject)

    async def _security(self, subject: str, request: Message, reply_type: type[Rep]) -> Rep:
        try:
            return await self._bus.request(
                subject, request, reply_type, timeout_s=self._security_timeout_s
            )
        except (NoResponders, DeadlineExceeded):
            raise Unavailable("the security service is not answering; try again") from None
