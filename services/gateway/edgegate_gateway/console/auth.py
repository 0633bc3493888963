"""Who is signed in to the console, and whether a request really comes from the console.

Sign-in takes an edgegate token with the `admin` scope; the security service
verifies it (and audits a refusal). The token itself is the session: it
goes back to the browser in an HttpOnly, SameSite=Strict cookie scoped to
`/console`, so page scripts never read it and other sites never send it.
Every request verifies it again (an answer is kept for `cache_s`, never past
the token's expiry), so a revoked or expired token stops working at once
and no session store has to be shared by the gateway replicas.

Actions also need the CSRF token: an HMAC of the session token, which the
server puts in the page and the page sends back in `X-CSRF-Token` (or a form's
`csrf` field). Another site can neither read the page nor compute it. Any
replica can check it, with no secret to share. A request whose `Origin`
names another site is refused as well.

An admin sees and acts on its own tenant's data only (tasks, escalations,
audit records, its tenant's quota): the security service's rule for every
call. Admins of the suite's operator tenants (`console_operator_tenants`)
also act on what belongs to no tenant: breakers, and every tenant's quota
and traffic figures.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from google.protobuf.message import Message

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.bus.calls import call_service
from edgegate_common.credentials import bearer_token
from edgegate_common.errors import (
    PermissionDenied,
    Unauthenticated,
)
from edgegate_protos.security.v1 import security_pb2 as spb

COOKIE = "edgegate_console"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
ADMIN = "admin"
MAX_SESSION_S = 12 * 3600  # the cookie lasts as long as the token, but no longer than this
_CSRF_KEY = b"edgegate-console-csrf-v1"
R = TypeVar("R", bound=Message)


@dataclass(frozen=True, slots=True)
class Person:
    """A signed-in admin, as the security service vouched for its token."""

    subject: str
    tenant: str
    token_id: str
    credential: str  # "Bearer <token>", for the calls made on its behalf
    operator: bool  # an admin of the suite as a whole, not only of its tenant
    expires_s: float  # 0: the token never expires

    @property
    def csrf(self) -> str:
        return csrf_token(bearer_token(self.credential))


def csrf_token(token: str) -> str:
    return hmac.new(_CSRF_KEY, token.encode(), hashlib.sha256).hexdigest()


class ConsoleAuth:
    def __init__(
        self,
        bus: Bus,
        *,
        operator_tenants: frozenset[str],
        timeout_s: float,
        cache_s: float = 30.0,
        cache_size: int = 1024,
    ) -> None:
        self._bus = bus
        self._operator_tenants = operator_tenants
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._cache_size = cache_size
        self._people: OrderedDict[str, tuple[Person, float]] = OrderedDict()

    async def sign_in(self, token: str) -> Person:
        """The admin this token belongs to; Unauthenticated or PermissionDenied otherwise."""
        return await self._person(token.strip())

    async def person(self, request: web.Request) -> Person:
        """The signed-in admin of a request (its cookie); Unauthenticated when there is none."""
        token = request.cookies.get(COOKIE, "")
        if not token:
            raise Unauthenticated("sign in to the console first")
        return await self._person(token)

    def check_action(self, request: web.Request, person: Person, *, form_value: str = "") -> None:
        """Refuse (PermissionDenied) a state-changing request that did not come from our page."""
        check_same_site(request)
        sent = request.headers.get(CSRF_HEADER, "") or form_value
        if not sent or not hmac.compare_digest(sent, person.csrf):
            raise PermissionDenied(
                "the CSRF token is missing or wrong: reload the console page and try again"
            )

    def set_cookie(self, response: web.StreamResponse, request: web.Request, token: str) -> None:
        person = self._people.get(_key(token))
        lasts_s = MAX_SESSION_S
        if person is not None and person[0].expires_s:
            lasts_s = int(min(lasts_s, max(0.0, person[0].expires_s - time.time())))
        response.set_cookie(
            COOKIE,
            token,
            max_age=lasts_s,
            path="/console",
            httponly=True,
            samesite="Strict",
            secure=_is_https(request),
        )

    def clear_cookie(self, response: web.StreamResponse, request: web.Request) -> None:
        token = request.cookies.get(COOKIE, "")
        self._people.pop(_key(token), None)
        response.del_cookie(COOKIE, path="/console")

    async def _person(self, token: str) -> Person:
        key = _key(token)
        hit = self._people.get(key)
        if hit is not None and hit[1] > time.time():
            self._people.move_to_end(key)
            return hit[0]
        person = await self._verify(token)
        until = time.time() + self._cache_s
        self._people[key] = (person, min(until, person.expires_s) if person.expires_s else until)
        if len(self._people) > self._cache_size:
            self._people.popitem(last=False)
        return person

    async def _verify(self, token: str) -> Person:
        token = bearer_token(token)  # a token with spaces, or none at all: Unauthenticated
        principal = (
            await self._ask(
                subjects.SECURITY_AUTHENTICATE,
                spb.AuthenticateRequest(token=token),
                spb.AuthenticateResponse,
            )
        ).principal
        decision = await self._ask(
            subjects.SECURITY_AUTHORIZE,
            spb.AuthorizeRequest(principal=principal, action=ADMIN, tenant=principal.tenant),
            spb.AuthorizeResponse,
        )
        if not decision.allowed:
            raise PermissionDenied(
                f"the console needs a token with the admin scope; {principal.subject!r} "
                f"of tenant {principal.tenant!r} has none ({decision.reason})"
            )
        return Person(
            subject=principal.subject,
            tenant=principal.tenant,
            token_id=principal.token_id,
            credential=f"Bearer {token}",
            operator=principal.tenant in self._operator_tenants,
            expires_s=float(principal.expires_at.seconds or 0),
        )

    async def _ask(self, subject: str, request: Message, kind: type[R]) -> R:
        return await call_service(
            self._bus, subject, request, kind, service="security service", timeout_s=self._timeout_s
        )


def check_same_site(request: web.Request) -> None:
    """PermissionDenied for a request another site's page made (sign-in included: a forged
    sign-in would put the victim in the attacker's session)."""
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise PermissionDenied("the request came from another site (Origin does not match)")
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise PermissionDenied("the request came from another site (Sec-Fetch-Site)")


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _is_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
