"""One pipeline for every adapter: admit, route, run, answer.

An adapter builds an `Envelope` from what it received and hands it here with
the caller's credential. The pipeline:

1. asks the security service to admit it, in one round trip. That call
   authenticates the token, authorises `infer:<model>`, inspects the content
   and masks PII. A refusal is a typed error; redacted parts replace the
   originals.
2. routes it to a model version: the one the envelope names, else the
   highest one an inference replica announces.
3. runs it on the inference service over NATS.

What comes back is a `Reply`, or an `EdgegateError` that each adapter maps
to its own protocol (HTTP status, gRPC code, an error frame). Nothing here
knows HTTP.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import (
    DeadlineExceeded,
    NoResponders,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.security.v1 import security_pb2 as spb

BEARER = "bearer "
Rep = TypeVar("Rep", bound=Message)


@dataclass(frozen=True, slots=True)
class Timeouts:
    security_s: float = 2.0
    inference_s: float = 30.0


def bearer_token(credential: str) -> str:
    """The token in an `Authorization` value (`Bearer <jwt>`, or the bare token)."""
    token = credential[len(BEARER) :] if credential.lower().startswith(BEARER) else credential
    token = token.strip()
    if not token:
        raise Unauthenticated("an API key (a bearer token) is required")
    return token


class Pipeline:
    def __init__(self, *, bus: Bus, readiness: ModelReadiness, timeouts: Timeouts) -> None:
        self._bus = bus
        self._readiness = readiness
        self._timeouts = timeouts

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

    async def handle(self, envelope: env.Envelope, *, credential: str) -> env.Reply:
        """Admit `envelope`, run it on its model, and return the reply."""
        if not envelope.id:
            envelope.id = uuid.uuid4().hex
        if not envelope.HasField("received_at"):
            envelope.received_at.GetCurrentTime()
        admitted = await self._security(
            subjects.SECURITY_ADMIT,
            spb.AdmitRequest(token=bearer_token(credential), envelope=envelope),
            spb.AdmitResponse,
        )
        inspection = admitted.inspection
        if inspection.verdict == spb.VERDICT_DENY:
            raise PermissionDenied(
                f"the message was refused: {inspection.detail or inspection.reason}",
                details={"reason": inspection.reason},
            )
        if inspection.verdict == spb.VERDICT_ALLOW_WITH_REDACTIONS:
            del envelope.parts[:]
            envelope.parts.extend(inspection.parts)
        envelope.tenant = admitted.principal.tenant
        envelope.user = envelope.user or admitted.principal.subject
        return await self._infer(envelope)

    async def _infer(self, envelope: env.Envelope) -> env.Reply:
        model = envelope.route.model
        version = self._readiness.version_to_run(model, envelope.route.version)
        if version is None:
            raise NotFound(
                f"no inference replica serves model {model!r}"
                + (f" version {envelope.route.version!r}" if envelope.route.version else ""),
                details={"model": model},
            )
        try:
            return await self._bus.request(
                subjects.inference_infer(model, version),
                envelope,
                env.Reply,
                timeout_s=self._timeouts.inference_s,
            )
        except NoResponders:
            self._readiness.mark_down(model, version)
            raise Unavailable(f"model {model!r} version {version} is not being served") from None

    async def _security(self, subject: str, request: Message, reply_type: type[Rep]) -> Rep:
        try:
            return await self._bus.request(
                subject, request, reply_type, timeout_s=self._timeouts.security_s
            )
        except (NoResponders, DeadlineExceeded):
            raise Unavailable("the security service is not answering; try again") from None
