"""Who is calling, and may they: the security service decides, the taskstore remembers.

Each call carries the caller's bearer token (`authorization` metadata on
gRPC, the `Authorization` header on NATS). The security service verifies it
(`authenticate`) and decides the action (`authorize`, which audits a
refusal); the answer is kept for `cache_s` (never past the token's expiry),
so a busy client costs the security service a round trip per token and
action every half minute, not per call.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import (
    DeadlineExceeded,
    NoResponders,
    PermissionDenied,
    Unavailable,
)
from edgegate_common.rpc import bearer_token
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.security.v1 import security_pb2 as spb


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

    async def _decide(self, token: str, action: str) -> principal_pb2.Principal:
        try:
            authenticated = await self._bus.request(
                subjects.SECURITY_AUTHENTICATE,
                spb.AuthenticateRequest(token=token),
                spb.AuthenticateResponse,
                timeout_s=self._timeout_s,
            )
            principal = authenticated.principal
            decision = await self._bus.request(
                subjects.SECURITY_AUTHORIZE,
                spb.AuthorizeRequest(principal=principal, action=action, tenant=principal.tenant),
                spb.AuthorizeResponse,
                timeout_s=self._timeout_s,
            )
        except (NoResponders, DeadlineExceeded):
            raise Unavailable("the security service is not answering; try again later") from None
        if not decision.allowed:
            raise PermissionDenied(
                f"{action} is not allowed for {principal.subject} ({decision.reason})",
                details={"reason": decision.reason},
            )
        return principal
