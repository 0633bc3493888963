"""JWTs: verifying them into a `Principal`, and issuing them for the admin path and local mode.

Verification reads as little of an untrusted token as it can before the
signature is checked: the size first, then the header, then the key the
header names (whose own algorithm must be the one the header states), then
the signature, and only then the claims. Every refusal is `Unauthenticated`
with a reason code in `details["reason"]` and a message that says what was
wrong without echoing the token.

The compact serialisation is parsed here rather than by PyJWT so that each
refusal gets its exact reason; the signature itself is checked by PyJWT's
algorithm with the key object built when the key arrived (`keys.py`).
"""

from __future__ import annotations

import binascii
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import jwt

from edgegate_common.errors import InvalidArgument, Unauthenticated
from edgegate_security.core.jwks import RemoteJwks
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.keys import (
    HS256,
    HS256_KID,
    SIGNING_ALGORITHMS,
    VerificationKey,
    hs256_key,
)
from edgegate_security.core.principal import Principal
from edgegate_security.core.reasons import Reason
from edgegate_security.core.scopes import validate_scopes
from edgegate_security.encoding import b64url, b64url_decode

TENANT_CLAIM: Final = "tenant"
SCOPE_CLAIM: Final = "scope"
REQUIRED_CLAIMS: Final = ("exp", "iat", "iss", "aud", "sub", TENANT_CLAIM)
DEFAULT_MAX_TOKEN_BYTES: Final = 8 * 1024

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_LATEST_NUMERIC_DATE: Final = 253402300799  # 9999-12-31T23:59:59Z: what datetime can hold


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPolicy:
    """What a token must say to be accepted (the rest of the trust is in the keys).

    `hs256_secret` enables HS256 with that shared secret, for development only:
    without it an HS256 token is refused whatever it says.
    """

    issuers: frozenset[str]
    audience: str
    leeway_s: float = 30.0
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    hs256_secret: bytes | None = field(default=None, repr=False)  # never in a log line

    def __post_init__(self) -> None:
        if not self.issuers or not self.audience:
            raise InvalidArgument("a token policy needs at least one issuer and an audience")
        if self.leeway_s < 0 or self.max_token_bytes <= 0:
            raise InvalidArgument("leeway_s must be >= 0 and max_token_bytes > 0")


class TokenVerifier:
    """Checks tokens against this service's own keys and/or an identity provider's JWKS."""

    def __init__(
        self,
        *,
        policy: TokenPolicy,
        ring: KeyRing | None = None,
        remote: RemoteJwks | None = None,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        self._policy = policy
        self._ring = ring
        self._remote = remote
        self._hs256 = None if policy.hs256_secret is None else hs256_key(policy.hs256_secret)
        if ring is None and remote is None and self._hs256 is None:
            raise InvalidArgument("a token verifier needs a key ring, a JWKS or an HS256 secret")
        self._algorithms = SIGNING_ALGORITHMS | ({HS256} if self._hs256 else set())
        self._clock = clock
        self._cache_size = cache_size
        # token -> (principal, the key that verified it, exp): insertion-ordered, oldest out.
        self._verified: dict[str, tuple[Principal, VerificationKey, float]] = {}

    async def verify(self, token: str) -> Principal:
        """The principal `token` speaks for; Unauthenticated (with the reason) if it is refused.

        Only a JWKS fetch can make this wait (an unknown or stale IdP key); that
        failing with no keys at all is Unavailable (`jwks_unavailable`).

        A client sends the same token with every request until it expires, so
        tokens that verified are remembered (`cache_size` of them, as Envoy's
        jwt_authn does): a repeat costs a dict lookup instead of a signature
        check. A remembered token is checked again in full once it has expired
        or the key that signed it is no longer the one trusted under its kid
        (rotated out, retired, or an IdP key gone stale).
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, key, expires_s = remembered
            if self._clock() < expires_s + self._policy.leeway_s and self._trusts(key):
                return principal
            del self._verified[token]
        principal, key = await self._verify(token)
        if self._cache_size > 0:
            if len(self._verified) >= self._cache_size:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = (principal, key, principal.expires_at.timestamp())
        return principal

    def _trusts(self, key: VerificationKey) -> bool:
        """`key` is still the one trusted under its kid."""
        if key is self._hs256:
            return True
        if self._ring is not None and self._ring.get(key.kid) is key:
            return True
        return self._remote is not None and self._remote.held(key.kid) is key

    async def _verify(self, token: str) -> tuple[Principal, VerificationKey]:
        header, signing_input, payload_b64, signature = _split(token, self._policy.max_token_bytes)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            why = "is disabled (a development setting)" if alg == HS256 else "is not allowed"
            raise _refuse(Reason.ALG_NOT_ALLOWED, f"alg {_clip(alg)} {why}")
        key = await self._key(header.get("kid"))
        if key.alg != alg:
            raise _refuse(
                Reason.ALG_NOT_ALLOWED, f"key {_clip(key.kid)} verifies {key.alg} only, not {alg}"
            )
        if not key.verify(signing_input, signature):
            raise _refuse(Reason.SIGNATURE_INVALID, "the signature does not match the token")
        claims = _json_object(_b64decode(payload_b64, part="payload"), part="payload")
        return _principal(claims, policy=self._policy, now_s=self._clock()), key

    async def _key(self, kid: object) -> VerificationKey:
        if kid is None:
            if self._hs256 is not None:
                return self._hs256
            raise _refuse(Reason.KID_UNKNOWN, "the token names no key (its header has no kid)")
        if not isinstance(kid, str):
            raise _refuse(Reason.TOKEN_MALFORMED, "the header's kid is not a string")
        key = self._ring.get(kid) if self._ring is not None else None
        if key is None and self._ring is not None and self._ring.reload():
            key = self._ring.get(kid)  # another process rotated the shared ring
        if key is None and self._hs256 is not None and kid == HS256_KID:
            key = self._hs256
        if key is None and self._remote is not None:
            key = await self._remote.get(kid)
        if key is None:
            raise _refuse(Reason.KID_UNKNOWN, f"no key {_clip(kid)} is known")
        return key


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just signed, and the principal it stands for (its `token_id` is for audit)."""

    token: str
    principal: Principal


class TokenIssuer:
    """Signs tokens with the key ring's current key, for the admin path and local mode."""

    def __init__(
        self,
        ring: KeyRing,
        *,
        issuer: str,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ring = ring
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    def issue(
        self, *, tenant: str, subject: str, scopes: Iterable[str], ttl_s: float
    ) -> IssuedToken:
        """A token for `subject` in `tenant`, valid for `ttl_s` (at most the ring's maximum)."""
        if not tenant or not subject:
            raise InvalidArgument(
                "a token needs a tenant and a subject", details={"field": "tenant"}
            )
        if not 0 < ttl_s <= self._ring.max_token_ttl_s:
            raise InvalidArgument(
                f"ttl_s must be in (0, {self._ring.max_token_ttl_s:g}] s, not {ttl_s:g}",
                details={"field": "ttl_s"},
            )
        granted = validate_scopes(scopes)
        self._ring.reload()  # sign with the newest key, wherever it was rotated
        key = self._ring.signing_key
        iat = int(self._clock())
        exp = iat + math.ceil(ttl_s)
        jti = secrets.token_urlsafe(16)
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            TENANT_CLAIM: tenant,
            SCOPE_CLAIM: " ".join(sorted(granted)),
            "iat": iat,
            "exp": exp,
            "jti": jti,
        }
        token = jwt.encode(
            claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"}
        )
        principal = Principal(
            tenant=tenant,
            subject=subject,
            scopes=granted,
            expires_at=datetime.fromtimestamp(exp, UTC),
            token_id=jti,
        )
        return IssuedToken(token=token, principal=principal)


def _split(token: str, max_bytes: int) -> tuple[dict[str, Any], bytes, str, bytes]:
    """Header, signing input, payload (still encoded) and signature of a compact JWS."""
    if not token:
        raise _refuse(Reason.TOKEN_MISSING, "no token was given")
    if len(token) > max_bytes:
        raise _refuse(
            Reason.TOKEN_TOO_LARGE, f"the token is {len(token)} bytes, the limit is {max_bytes}"
        )
    if not token.isascii():
        raise _refuse(Reason.TOKEN_MALFORMED, "the token has characters outside ASCII")
    parts = token.split(".")
    if len(parts) != 3:
        raise _refuse(
            Reason.TOKEN_MALFORMED,
            f"a signed JWT has 3 dot-separated parts, this token has {len(parts)}",
        )
    header_b64, payload_b64, signature_b64 = parts
    header = _json_object(_b64decode(header_b64, part="header"), part="header")
    if "crit" in header:
        raise _refuse(Reason.TOKEN_MALFORMED, "the header has critical extensions (crit)")
    signature = _b64decode(signature_b64, part="signature")
    return header, f"{header_b64}.{payload_b64}".encode("ascii"), payload_b64, signature


def _b64decode(segment: str, *, part: str) -> bytes:
    # Strict: only the URL-safe alphabet, no padding, and only the one canonical
    # spelling of each value, so a token cannot be altered while still verifying.
    if _BASE64URL.fullmatch(segment) is None or len(segment) % 4 == 1:
        raise _refuse(Reason.TOKEN_MALFORMED, f"the {part} is not base64url")
    try:
        data = b64url_decode(segment)
    except (binascii.Error, ValueError):
        raise _refuse(Reason.TOKEN_MALFORMED, f"the {part} is not base64url") from None
    if b64url(data) != segment:
        raise _refuse(Reason.TOKEN_MALFORMED, f"the {part} is not canonical base64url")
    return data


def _json_object(data: bytes, *, part: str) -> dict[str, Any]:
    try:
        value = _JSON.decode(data.decode("utf-8"))  # RFC 7519: the JSON is UTF-8
    except (ValueError, RecursionError):
        raise _refuse(Reason.TOKEN_MALFORMED, f"the {part} is not valid JSON") from None
    if not isinstance(value, dict):
        raise _refuse(Reason.TOKEN_MALFORMED, f"the {part} is not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two `sub` members: which one wins depends on the parser. Refuse the ambiguity.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with hooks would build a decoder on every call.
_JSON: Final = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def _principal(claims: Mapping[str, Any], *, policy: TokenPolicy, now_s: float) -> Principal:
    missing = [claim for claim in REQUIRED_CLAIMS if claim not in claims]
    if missing:
        raise _refuse(Reason.CLAIM_MISSING, f"the token lacks the claim(s) {', '.join(missing)}")
    expires_s = _check_times(claims, leeway_s=policy.leeway_s, now_s=now_s)
    issuer = _string(claims, "iss")
    if issuer not in policy.issuers:
        raise _refuse(Reason.ISSUER_INVALID, f"issuer {_clip(issuer)} is not trusted")
    audience = claims["aud"]
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise _refuse(Reason.TOKEN_MALFORMED, "claim aud is not a string or a list of strings")
    if policy.audience not in audiences:
        raise _refuse(Reason.AUDIENCE_INVALID, f"the token is not meant for {policy.audience!r}")
    token_id = claims.get("jti", "")
    if not isinstance(token_id, str):
        raise _refuse(Reason.TOKEN_MALFORMED, "claim jti is not a string")
    return Principal(
        tenant=_string(claims, TENANT_CLAIM),
        subject=_string(claims, "sub"),
        scopes=_scopes(claims.get(SCOPE_CLAIM, "")),
        expires_at=datetime.fromtimestamp(expires_s, UTC),
        token_id=token_id,
    )


def _check_times(claims: Mapping[str, Any], *, leeway_s: float, now_s: float) -> float:
    """The expiry (epoch seconds), once exp, nbf and iat hold at `now_s`."""
    expires_s = _numeric_date(claims, "exp")
    if now_s >= expires_s + leeway_s:
        raise _refuse(Reason.TOKEN_EXPIRED, f"the token expired {now_s - expires_s:.0f} s ago")
    if "nbf" in claims and (not_before_s := _numeric_date(claims, "nbf")) > now_s + leeway_s:
        raise _refuse(
            Reason.TOKEN_NOT_YET_VALID, f"the token is valid from {not_before_s - now_s:.0f} s on"
        )
    if (issued_s := _numeric_date(claims, "iat")) > now_s + leeway_s:
        raise _refuse(
            Reason.TOKEN_NOT_YET_VALID,
            f"the token was issued {issued_s - now_s:.0f} s in the future",
        )
    return expires_s


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(Reason.TOKEN_MALFORMED, f"claim {name} is not a number")
    if not 0 <= value <= _LATEST_NUMERIC_DATE:
        raise _refuse(Reason.TOKEN_MALFORMED, f"claim {name} is not a date (seconds since 1970)")
    return float(value)


def _string(claims: Mapping[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str):
        raise _refuse(Reason.TOKEN_MALFORMED, f"claim {name} is not a string")
    if not value:
        raise _refuse(Reason.CLAIM_MISSING, f"claim {name} is empty")
    return value


def _scopes(value: object) -> frozenset[str]:
    # RFC 8693 / OAuth: one space-separated string; some issuers send a list.
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(scope, str) for scope in value):
        return frozenset(value)
    raise _refuse(
        Reason.TOKEN_MALFORMED, f"claim {SCOPE_CLAIM} is not a string or a list of strings"
    )


def _refuse(reason: Reason, message: str) -> Unauthenticated:
    return Unauthenticated(f"token refused: {message}", details={"reason": reason.value})


def _clip(value: object) -> str:
    # Header and claim values come from the caller: quoted and bounded in messages.
    text = repr(value)
    return text if len(text) <= 64 else f"{text[:61]}..."
