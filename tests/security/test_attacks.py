"""Tokens an attacker would send: each is refused, with the reason a caller can branch on."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.security_support import AUDIENCE, ISSUER, FakeClock

from edgegate_common.errors import PermissionDenied, Unauthenticated
from edgegate_security.core.jwks import RemoteJwks
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.keys import EDDSA, ES256, RS256, SigningKey
from edgegate_security.core.reasons import Reason
from edgegate_security.core.scopes import authorize, require
from edgegate_security.core.tokens import TokenPolicy, TokenVerifier

NOW_S = 1_800_000_000  # an int here: claims carry whole seconds
LEEWAY_S = 30
POLICY = TokenPolicy(issuers=frozenset({ISSUER}), audience=AUDIENCE, leeway_s=LEEWAY_S)


@pytest.fixture(scope="module")
def rings() -> dict[str, KeyRing]:
    # RSA key generation is slow: one ring per algorithm for the whole module.
    return {alg: KeyRing.generate(alg=alg, max_token_ttl_s=3600) for alg in (ES256, RS256, EDDSA)}


@pytest.fixture(scope="module")
def ring(rings: dict[str, KeyRing]) -> KeyRing:
    return rings[ES256]


@pytest.fixture(scope="module")
def verifier(ring: KeyRing) -> TokenVerifier:
    return TokenVerifier(policy=POLICY, ring=ring, clock=FakeClock())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims, with `changes` applied (None removes a claim)."""
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "tenant": "acme",
        "scope": "infer:* tasks:read",
        "iat": NOW_S - 10,
        "exp": NOW_S + 600,
        "jti": "jti-1",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def sign(key: SigningKey, payload: dict[str, Any], **header: Any) -> str:
    return jwt.encode(
        payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid, **header}
    )


def assemble(header: dict[str, Any], payload: dict[str, Any] | bytes, signature: bytes) -> str:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return f"{b64(json.dumps(header).encode())}.{b64(body)}.{b64(signature)}"


async def refused(verifier: TokenVerifier, token: str) -> str:
    """The reason `verifier` refuses `token` with (it must refuse it)."""
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    if len(token) > 20:
        assert token not in caught.value.message  # never echo a credential
    return caught.value.details["reason"]


async def test_a_valid_token_passes(verifier: TokenVerifier, ring: KeyRing) -> None:
    # The baseline every attack below departs from.
    principal = await verifier.verify(sign(ring.signing_key, claims()))

    assert (principal.tenant, principal.subject, principal.token_id) == ("acme", "alice", "jti-1")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_refused(verifier: TokenVerifier, ring: KeyRing, alg: str) -> None:
    header = {"alg": alg, "kid": ring.signing_key.kid, "typ": "JWT"}

    assert await refused(verifier, assemble(header, claims(), b"")) == Reason.ALG_NOT_ALLOWED


@pytest.mark.parametrize("hs256_enabled", [False, True])
@pytest.mark.parametrize("encoding", ["spki", "pkcs1"])
async def test_hs256_signed_with_the_rsa_public_key_is_refused(
    rings: dict[str, KeyRing], hs256_enabled: bool, encoding: str
) -> None:
    rsa = rings[RS256].signing_key
    public_format = {
        "spki": serialization.PublicFormat.SubjectPublicKeyInfo,
        "pkcs1": serialization.PublicFormat.PKCS1,
    }[encoding]
    pem = rsa.private_key.public_key().public_bytes(serialization.Encoding.PEM, public_format)
    header = b64(json.dumps({"alg": "HS256", "kid": rsa.kid, "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    policy = TokenPolicy(
        issuers=frozenset({ISSUER}),
        audience=AUDIENCE,
        hs256_secret=b"d" * 32 if hs256_enabled else None,
    )
    verifier = TokenVerifier(policy=policy, ring=rings[RS256], clock=FakeClock())

    reason = await refused(verifier, f"{header}.{payload}.{b64(mac)}")

    assert reason == Reason.ALG_NOT_ALLOWED


@pytest.mark.parametrize(
    ("header_alg", "key_alg"), [(RS256, ES256), (ES256, EDDSA), (EDDSA, RS256), ("ES384", ES256)]
)
async def test_an_alg_that_is_not_the_keys_own_is_refused(
    rings: dict[str, KeyRing], header_alg: str, key_alg: str
) -> None:
    key = rings[key_alg].signing_key
    token = assemble({"alg": header_alg, "kid": key.kid}, claims(), b"\x00" * 64)
    verifier = TokenVerifier(policy=POLICY, ring=rings[key_alg], clock=FakeClock())

    assert await refused(verifier, token) == Reason.ALG_NOT_ALLOWED


async def test_an_expired_token_is_refused(verifier: TokenVerifier, ring: KeyRing) -> None:
    key = ring.signing_key
    expired = sign(key, claims(iat=NOW_S - 900, exp=NOW_S - LEEWAY_S))
    within_leeway = sign(key, claims(iat=NOW_S - 900, exp=NOW_S - LEEWAY_S + 1))

    assert await refused(verifier, expired) == Reason.TOKEN_EXPIRED
    assert (await verifier.verify(within_leeway)).subject == "alice"


@pytest.mark.parametrize(
    "changes",
    [
        {"nbf": NOW_S + LEEWAY_S + 1},
        {"iat": NOW_S + LEEWAY_S + 1},
        {"iat": NOW_S + 10**6, "exp": NOW_S + 10**6 + 60},
    ],
)
async def test_a_token_that_is_not_yet_valid_is_refused(
    verifier: TokenVerifier, ring: KeyRing, changes: dict[str, int]
) -> None:
    token = sign(ring.signing_key, claims(**changes))

    assert await refused(verifier, token) == Reason.TOKEN_NOT_YET_VALID


async def test_clock_skew_within_the_leeway_is_accepted(
    verifier: TokenVerifier, ring: KeyRing
) -> None:
    token = sign(ring.signing_key, claims(iat=NOW_S + LEEWAY_S, nbf=NOW_S + LEEWAY_S))

    assert (await verifier.verify(token)).tenant == "acme"


@pytest.mark.parametrize("claim", ["exp", "iat", "aud", "iss", "sub", "tenant"])
async def test_a_missing_required_claim_is_refused(
    verifier: TokenVerifier, ring: KeyRing, claim: str
) -> None:
    token = sign(ring.signing_key, claims(**{claim: None}))

    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)

    assert caught.value.details == {"reason": Reason.CLAIM_MISSING}
    assert claim in caught.value.message


@pytest.mark.parametrize("claim", ["sub", "tenant"])
async def test_an_empty_subject_or_tenant_counts_as_missing(
    verifier: TokenVerifier, ring: KeyRing, claim: str
) -> None:
    token = sign(ring.signing_key, claims(**{claim: ""}))

    assert await refused(verifier, token) == Reason.CLAIM_MISSING


@pytest.mark.parametrize("audience", ["someone-else", ["someone-else", "another"], []])
async def test_a_token_for_another_audience_is_refused(
    verifier: TokenVerifier, ring: KeyRing, audience: object
) -> None:
    token = sign(ring.signing_key, claims(aud=audience))

    assert await refused(verifier, token) == Reason.AUDIENCE_INVALID


async def test_a_token_from_another_issuer_is_refused(
    verifier: TokenVerifier, ring: KeyRing
) -> None:
    token = sign(ring.signing_key, claims(iss="https://evil.test"))

    assert await refused(verifier, token) == Reason.ISSUER_INVALID


async def test_an_unknown_kid_is_refused(verifier: TokenVerifier, ring: KeyRing) -> None:
    key = ring.signing_key
    unknown = jwt.encode(claims(), key.private_key, algorithm=ES256, headers={"kid": "made-up"})
    no_kid = jwt.encode(claims(), key.private_key, algorithm=ES256)

    assert await refused(verifier, unknown) == Reason.KID_UNKNOWN
    assert await refused(verifier, no_kid) == Reason.KID_UNKNOWN


class CountingSource:
    location = "test://idp/jwks"

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.document = json.dumps(jwks).encode()
        self.fetches = 0

    async def fetch_jwks(self) -> bytes:
        self.fetches += 1
        await asyncio.sleep(0)  # let concurrent callers in, as a real fetch would
        return self.document


async def test_an_unknown_kid_refetches_the_idp_jwks_once_then_no_more(ring: KeyRing) -> None:
    clock = FakeClock()
    source = CountingSource(ring.jwks())
    remote = RemoteJwks(source, ttl_s=300, refetch_interval_s=30, clock=clock)
    verifier = TokenVerifier(policy=POLICY, remote=remote, clock=clock)
    key = ring.signing_key
    await verifier.verify(sign(key, claims()))
    assert source.fetches == 1

    clock.now_s += 31  # past the refetch interval, well within the cache's TTL
    first = jwt.encode(claims(), key.private_key, algorithm=ES256, headers={"kid": "garbage-1"})
    assert await refused(verifier, first) == Reason.KID_UNKNOWN
    assert source.fetches == 2  # refetched exactly once

    for n in range(2, 20):  # more made-up kids at once: the IdP is left alone
        token = jwt.encode(claims(), key.private_key, algorithm=ES256, headers={"kid": f"g-{n}"})
        assert await refused(verifier, token) == Reason.KID_UNKNOWN
    assert source.fetches == 2

    clock.now_s += 31
    assert await refused(verifier, first) == Reason.KID_UNKNOWN
    assert source.fetches == 3  # one more once the interval has passed


async def test_concurrent_unknown_kids_share_one_fetch(ring: KeyRing) -> None:
    source = CountingSource(ring.jwks())
    verifier = TokenVerifier(policy=POLICY, remote=RemoteJwks(source), clock=FakeClock())
    key = ring.signing_key
    tokens = [
        jwt.encode(claims(), key.private_key, algorithm=ES256, headers={"kid": f"x-{n}"})
        for n in range(10)
    ]

    results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)

    assert all(isinstance(r, Unauthenticated) for r in results)
    assert source.fetches == 1


@pytest.mark.parametrize("alg", [ES256, RS256, EDDSA])
async def test_a_tampered_payload_is_refused(rings: dict[str, KeyRing], alg: str) -> None:
    header, _, signature = sign(rings[alg].signing_key, claims()).split(".")
    forged_payload = b64(json.dumps(claims(tenant="globex", scope="admin")).encode())
    verifier = TokenVerifier(policy=POLICY, ring=rings[alg], clock=FakeClock())

    reason = await refused(verifier, f"{header}.{forged_payload}.{signature}")

    assert reason == Reason.SIGNATURE_INVALID


@pytest.mark.parametrize("alg", [ES256, RS256, EDDSA])
async def test_a_tampered_signature_is_refused(rings: dict[str, KeyRing], alg: str) -> None:
    header, payload, signature_b64 = sign(rings[alg].signing_key, claims()).split(".")
    signature = base64.urlsafe_b64decode(signature_b64 + "==")
    flipped = bytes([signature[0] ^ 0x01]) + signature[1:]
    verifier = TokenVerifier(policy=POLICY, ring=rings[alg], clock=FakeClock())

    for forged in (flipped, signature[:-1], signature + b"\x00", b""):
        token = f"{header}.{payload}.{b64(forged)}"
        assert await refused(verifier, token) == Reason.SIGNATURE_INVALID


async def test_a_second_spelling_of_the_same_signature_is_refused(
    verifier: TokenVerifier, ring: KeyRing
) -> None:
    # base64url's last character carries unused bits: setting them changes the
    # token, not the decoded signature. Only the canonical spelling is accepted.
    token = sign(ring.signing_key, claims())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    respelled = token[:-1] + alphabet[last | 0b1111]
    assert respelled != token

    assert await refused(verifier, respelled) == Reason.TOKEN_MALFORMED


async def test_an_oversized_token_is_refused_before_it_is_parsed(ring: KeyRing) -> None:
    token = sign(ring.signing_key, claims(padding="x" * 200))
    exact = TokenPolicy(issuers=POLICY.issuers, audience=AUDIENCE, max_token_bytes=len(token))
    smaller = TokenPolicy(issuers=POLICY.issuers, audience=AUDIENCE, max_token_bytes=len(token) - 1)

    assert await TokenVerifier(policy=exact, ring=ring, clock=FakeClock()).verify(token)
    assert await refused(TokenVerifier(policy=smaller, ring=ring, clock=FakeClock()), token) == (
        Reason.TOKEN_TOO_LARGE
    )
    default = TokenVerifier(policy=POLICY, ring=ring, clock=FakeClock())
    assert await refused(default, "garbage" * 2000) == Reason.TOKEN_TOO_LARGE  # not malformed


def header_only(header: bytes) -> str:
    return f"{b64(header)}.e30."


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("", Reason.TOKEN_MISSING),
        ("abc", Reason.TOKEN_MALFORMED),
        ("a.b", Reason.TOKEN_MALFORMED),
        ("a.b.c.d.e", Reason.TOKEN_MALFORMED),  # JWE: not accepted
        ("..", Reason.TOKEN_MALFORMED),
        ("\u00e9.\u00e9.\u00e9", Reason.TOKEN_MALFORMED),
        ("eyJ=.e30.", Reason.TOKEN_MALFORMED),  # padding
        ("eyJhbGciOiJFUzI1NiJ9+.e30.", Reason.TOKEN_MALFORMED),  # not the URL-safe alphabet
        (header_only(b"not json"), Reason.TOKEN_MALFORMED),
        (header_only(b"[1, 2]"), Reason.TOKEN_MALFORMED),
        (header_only(b'{"alg": NaN}'), Reason.TOKEN_MALFORMED),
        (header_only(b'{"alg": "ES256", "alg": "none"}'), Reason.TOKEN_MALFORMED),
        (header_only(b'{"alg": ["ES256"]}'), Reason.ALG_NOT_ALLOWED),
        (header_only(b'{"alg": "ES256", "kid": 5}'), Reason.TOKEN_MALFORMED),
        (header_only(b'{"alg": "ES256", "kid": "k", "crit": ["exp"]}'), Reason.TOKEN_MALFORMED),
    ],
)
async def test_malformed_tokens_are_refused(
    verifier: TokenVerifier, token: str, expected: Reason
) -> None:
    assert await refused(verifier, token) == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": "tomorrow"},
        {"exp": True},
        {"exp": 10**30},
        {"iat": -1},
        {"nbf": [1]},
        {"sub": 42},
        {"tenant": {"id": "acme"}},
        {"aud": 7},
        {"scope": 7},
        {"scope": ["ok", 7]},
        {"jti": 1},
    ],
)
async def test_claims_of_the_wrong_type_are_refused(
    verifier: TokenVerifier, ring: KeyRing, changes: dict[str, Any]
) -> None:
    token = sign(ring.signing_key, claims(**changes))

    assert await refused(verifier, token) == Reason.TOKEN_MALFORMED


async def test_duplicate_claims_are_refused(verifier: TokenVerifier, ring: KeyRing) -> None:
    # Parsers disagree on which of two "tenant" members wins: refuse the ambiguity.
    key = ring.signing_key
    header = b64(json.dumps({"alg": ES256, "kid": key.kid}).encode())
    body = json.dumps(claims())[:-1] + ', "tenant": "globex"}'
    payload = b64(body.encode())
    signing_input = f"{header}.{payload}".encode()
    signature = jwt.get_algorithm_by_name(ES256).sign(signing_input, key.private_key)

    assert await refused(verifier, f"{header}.{payload}.{b64(signature)}") == (
        Reason.TOKEN_MALFORMED
    )


@pytest.fixture(scope="module")
def wide_verifier(ring: KeyRing) -> TokenVerifier:
    """Every key source at once, so that garbage can reach every code path."""
    policy = TokenPolicy(issuers=POLICY.issuers, audience=AUDIENCE, hs256_secret=b"h" * 32)
    remote = RemoteJwks(CountingSource(ring.jwks()), clock=FakeClock())
    return TokenVerifier(policy=policy, ring=ring, remote=remote, clock=FakeClock())


def only_unauthenticated(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        asyncio.run(verifier.verify(token))
    assert caught.value.details["reason"] in set(Reason)


GARBAGE = settings(
    database=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@given(token=st.text(max_size=300))
@GARBAGE
def test_arbitrary_text_is_only_ever_unauthenticated(
    wide_verifier: TokenVerifier, token: str
) -> None:
    only_unauthenticated(wide_verifier, token)


@given(data=st.binary(max_size=300))
@GARBAGE
def test_arbitrary_bytes_are_only_ever_unauthenticated(
    wide_verifier: TokenVerifier, data: bytes
) -> None:
    only_unauthenticated(wide_verifier, data.decode("latin-1"))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children)
    ),
    max_leaves=8,
)


@given(
    header=st.fixed_dictionaries(
        {"alg": st.sampled_from([ES256, RS256, EDDSA, "HS256", "none"]) | JSON},
        optional={"kid": st.sampled_from(["hs256-dev", "x"]) | JSON, "crit": JSON},
    ),
    payload=st.dictionaries(
        st.sampled_from(["exp", "iat", "nbf", "iss", "aud", "sub", "tenant", "scope", "jti"]),
        JSON,
    ),
    signature=st.binary(max_size=80),
)
@GARBAGE
def test_well_formed_garbage_is_only_ever_unauthenticated(
    wide_verifier: TokenVerifier,
    header: dict[str, Any],
    payload: dict[str, Any],
    signature: bytes,
) -> None:
    only_unauthenticated(wide_verifier, assemble(header, payload, signature))


async def test_a_token_for_one_tenant_never_reaches_anothers_data(
    verifier: TokenVerifier, ring: KeyRing
) -> None:
    token = sign(ring.signing_key, claims(tenant="acme", scope="admin tasks:read"))
    principal = await verifier.verify(token)

    decision = authorize(principal, action="tasks:read", tenant="globex")

    assert not decision.allowed
    assert decision.reason is Reason.TENANT_MISMATCH
    with pytest.raises(PermissionDenied) as caught:
        require(principal, action="tasks:read", tenant="globex")
    assert caught.value.details == {"reason": Reason.TENANT_MISMATCH}
    assert authorize(principal, action="tasks:read", tenant="acme").allowed
