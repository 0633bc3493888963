"""Who is calling, and may they: the security service decides, the taskstore remembers.

Each call carries the caller's bearer token (`authorization` metadata on
gRPC, the `Authorization` header on NATS). The security service verifies it
(`authenticate`) and decides the action (`authorize`, which audits a
refusal); the answer is kept for `cache_s` (never past the token's expiry),
so a busy client costs the security service a round trip per token and
action every half minute, not per call.

Content is another matter: what a task will feed a model, or what it keeps
as an answer, is decided per message (`admit_envelope`, `inspect_output`),
never from the cache. That is what makes every door into a worker the
gateway's door too: the `infer:<model>` scope, the input inspection
(banned patterns, size) and PII masking happen here whoever called.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.credentials import bearer_token
from edgegate_common.errors import (
    DeadlineExceeded,
    NoResponders,
    PermissionDenied,
    Unavailable,
)
from edgegate_common.inspection import passed
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.security.v1 import security_pb2 as spb

R = TypeVar("R", bound=Message)


@dataclass(frozen=True, slots=True)
class Admitted:
    """Security's yes to one message: who sent it, and its parts as they may be stored."""

    principal: principal_pb2.Principal
    parts: list[env.Part]


class Gatekeeper:
    def __init__(
        self, bus: Bus, *, cache_s: float = 30.0, cache_size: int = 4096, timeout_s: float = 2.0
    ) -> None:
        self._bus = bus
        self._cache_s = cache_s
        self._cache_size = cache_size
        self._timeout_s = timeout_s
        self._admitted: OrderedDict[tuple[str, str], tuple[principal_pb2.Principal, float]] = (
            OrderedDict()
        )

    async def admit(self, credential: str, *, action: str) -> principal_pb2.Principal:
        """The caller's principal if it may do `action` in its own tenant; else a typed error."""
        token = bearer_token(credential)
        key = (token, action)
        hit = self._admitted.get(key)
        if hit is not None and hit[1] > time.time():
            self._admitted.move_to_end(key)
            return hit[0]
        principal = await self._decide(token, action)
        expires_s = principal.expires_at.seconds or float("inf")
        self._admitted[key] = (principal, min(time.time() + self._cache_s, expires_s))
        if len(self._admitted) > self._cache_size:
            self._admitted.popitem(last=False)
        return principal

    async def admit_envelope(self, credential: str, envelope: env.Envelope) -> Admitted:
        """Security's `Admit` for `envelope`: `infer:<route.model>`, input inspection, masking.

        A refused token or scope comes back as security's own typed error; content
        the inspection denies is PERMISSION_DENIED with its reason.
        """
        admitted = await self._ask(
            subjects.SECURITY_ADMIT,
            spb.AdmitRequest(token=bearer_token(credential), envelope=envelope),
            spb.AdmitResponse,
        )
        parts = passed(admitted.inspection, envelope.parts, refused="the message was refused")
        return Admitted(principal=admitted.principal, parts=parts)

    async def inspect_output(
        self, principal: principal_pb2.Principal, parts: list[env.Part]
    ) -> list[env.Part]:
        """`parts` of an answer as security lets them out: masked, or refused (DENY)."""
        if not any(p.WhichOneof("content") == "text" for p in parts):
            return parts  # tensors pass as they are, as the gateway lets them
        inspected = await self._ask(
            subjects.SECURITY_INSPECT,
            spb.InspectRequest(principal=principal, direction=spb.DIRECTION_OUTPUT, parts=parts),
            spb.InspectResponse,
        )
        return passed(inspected, parts, refused="the answer was refused")

    async def _ask(self, subject: str, request: Message, reply_type: type[R]) -> R:
        try:
            return await self._bus.request(subject, request, reply_type, timeout_s=self._timeout_s)
        except (NoResponders, DeadlineExceeded):
            raise Unavailable("the security service is not answering; try again later") from None

    async def _decide(self, token: str, action: str) -> principal_pb2.Principal:
        authenticated = await self._ask(
            subjects.SECURITY_AUTHENTICATE,
            spb.AuthenticateRequest(token=token),
            spb.AuthenticateResponse,
        )
        principal = authenticated.principal
        decision = await self._ask(
            subjects.SECURITY_AUTHORIZE,
            spb.AuthorizeRequest(principal=principal, action=action, tenant=principal.tenant),
            spb.AuthorizeResponse,
        )
        if not decision.allowed:
            raise PermissionDenied(
                f"{action} is not allowed for {principal.subject} ({decision.reason})",
                details={"reason": decision.reason},
            )
        return principal
