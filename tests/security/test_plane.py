"""The plane's record keeping, where the service tests cannot reach: an IdP that serves
garbage, and a refusal whose own words look like a credential.

The records go to a sink that checks each entry exactly as `AuditLog.append`
does (`chain.check_entry`) and keeps it; the JetStream side is tested in
test_audit_log.py and, through the service, in test_service.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from support.security_support import AUDIENCE, ISSUER, FakeClock

from edgegate_common.errors import Unauthenticated, Unavailable
from edgegate_security.audit.chain import AuditEntry, EventKind, check_entry, utc_text
from edgegate_security.core.inspection import Inspector
from edgegate_security.core.jwks import RemoteJwks
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.principal import Principal
from edgegate_security.core.reasons import Reason
from edgegate_security.core.tokens import TokenPolicy, TokenVerifier
from edgegate_security.encoding import b64url, canonical_json
from edgegate_security.plane import SecurityPlane


class CheckingSink:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def append(
        self,
        *,
        event: EventKind,
        reason: Reason,
        details: Mapping[str, str] | None = None,
        **ids: str,  # tenant, subject, token_id, request_id
    ) -> None:
        entry = AuditEntry(
            event=str(event),
            reason=str(reason),
            time=utc_text(datetime.now(UTC)),
            replica="test",
            details=dict(details or {}),
            **ids,
        )
        check_entry(entry)  # what AuditLog.append refuses, this refuses
        self.entries.append(entry)

    async def flush(self, *, timeout_s: float | None = None) -> None:
        """Stored already: `append` keeps each entry at once."""


class GarbageIdp:
    """An identity provider whose JWKS endpoint answers with something that is not one."""

    location = "https://idp.test/jwks.json"

    async def fetch_jwks(self) -> bytes:
        return b'{"keys": [{"kty": "RSA", "n": "???"}], "oops": '


POLICY = TokenPolicy(issuers=frozenset({ISSUER}), audience=AUDIENCE)


def _plane(verifier: TokenVerifier, sink: CheckingSink) -> SecurityPlane:
    return SecurityPlane(verifier=verifier, inspector=Inspector(), audit=sink)


def _token(header: dict[str, object]) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "tenant": "t", "iat": 1, "exp": 2}
    return f"{b64url(canonical_json(header))}.{b64url(canonical_json(claims))}.c2ln"


async def test_garbage_jwks_is_unavailable_with_its_reason_and_a_record() -> None:
    sink = CheckingSink()
    remote = RemoteJwks(GarbageIdp(), clock=FakeClock())
    plane = _plane(TokenVerifier(policy=POLICY, remote=remote, clock=FakeClock()), sink)

    with pytest.raises(Unavailable) as refused:
        await plane.authenticate(_token({"alg": "RS256", "kid": "idp-1"}), request_id="r1")

    assert refused.value.details == {"reason": "jwks_unavailable"}
    [entry] = sink.entries
    assert (entry.event, entry.reason, entry.request_id) == (
        "authn_failure",
        "jwks_unavailable",
        "r1",
    )


async def test_a_refusal_that_quotes_something_like_a_jwt_is_filed_without_it() -> None:
    sink = CheckingSink()
    ring = KeyRing.generate(max_token_ttl_s=3600, clock=FakeClock())
    plane = _plane(TokenVerifier(policy=POLICY, ring=ring, clock=FakeClock()), sink)
    jwt_like_kid = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc"  # the message quotes the kid

    with pytest.raises(Unauthenticated) as refused:
        await plane.authenticate(_token({"alg": "ES256", "kid": jwt_like_kid}))

    assert refused.value.details["reason"] == "kid_unknown"
    [entry] = sink.entries
    assert (entry.event, entry.reason) == ("authn_failure", "kid_unknown")
    assert entry.details == {"withheld": "the request's own words could not be stored"}


@pytest.mark.parametrize(
    "request_id",
    ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "x" * 20_000, "line\nbreak"],
)
async def test_a_refusal_is_filed_whatever_request_id_the_caller_chose(request_id: str) -> None:
    sink = CheckingSink()
    ring = KeyRing.generate(max_token_ttl_s=3600, clock=FakeClock())
    plane = _plane(TokenVerifier(policy=POLICY, ring=ring, clock=FakeClock()), sink)

    with pytest.raises(Unauthenticated):
        await plane.authenticate("bogus", request_id=request_id)

    [entry] = sink.entries
    assert entry.reason == "token_malformed"
    assert entry.request_id.startswith("sha256:") and len(entry.request_id) == 39


async def test_an_expired_principal_may_do_nothing() -> None:
    sink = CheckingSink()
    clock = FakeClock()
    ring = KeyRing.generate(max_token_ttl_s=3600, clock=clock)
    verifier = TokenVerifier(policy=POLICY, ring=ring, clock=clock)
    plane = SecurityPlane(
        verifier=verifier, inspector=Inspector(), audit=sink, leeway_s=30, clock=clock
    )
    principal = Principal(
        tenant="acme",
        subject="svc",
        scopes=frozenset({"admin"}),
        expires_at=datetime.fromtimestamp(clock.now_s - 10, UTC),  # within the leeway
        token_id="",
    )
    assert (await plane.authorize(principal, action="tasks:read", tenant="acme")).allowed

    clock.now_s += 20
    decision = await plane.authorize(principal, action="tasks:read", tenant="acme")
    assert (decision.allowed, decision.reason) == (False, Reason.TOKEN_EXPIRED)
    [entry] = sink.entries
    assert (entry.event, entry.reason, entry.subject) == ("deny", "token_expired", "svc")
