"""Keys that verify tokens: parsed once from JWKs, each bound to the one algorithm it allows.

Every key carries exactly one algorithm, decided by its key type (RSA ->
RS256, EC P-256 -> ES256, OKP Ed25519 -> EdDSA; a symmetric key only ever
comes from the HS256 development setting, never from a JWKS). A token's
header merely names a key; the key decides the algorithm. That is what
defeats `alg: none` and the HS256-with-the-RSA-public-key confusion.

Each key is turned into a `jwt.PyJWK` when it arrives, so verifying a token is
one signature check with a ready key object, never a JWKS parse.

A JWKS from outside is untrusted input: a key that cannot be used is skipped
with a log line, and only a document with no usable key at all is an error.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.exceptions import PyJWTError

from edgegate_common.errors import InvalidArgument, Unavailable
from edgegate_common.logging import get_logger
from edgegate_security.core.reasons import Reason
from edgegate_security.encoding import b64url, canonical_json

log = get_logger(__name__)

RS256: Final = "RS256"
ES256: Final = "ES256"
EDDSA: Final = "EdDSA"
HS256: Final = "HS256"
SIGNING_ALGORITHMS: Final = frozenset({RS256, ES256, EDDSA})
"""What tokens may be signed with; HS256 joins them only as an explicit development setting."""

RSA_MIN_BITS: Final = 2048
HS256_MIN_SECRET_BYTES: Final = 32
HS256_KID: Final = "hs256-dev"
"""The kid of the development HS256 key; a token without a kid also selects it."""

# RFC 7638: the members that make up a public key, per key type (nothing private).
_PUBLIC_MEMBERS: Final = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
# (kty, crv) -> the one algorithm such a key verifies, and the JWK `alg` values that name it.
_ALGORITHMS: Final = {
    ("RSA", None): (RS256, frozenset({RS256})),
    ("EC", "P-256"): (ES256, frozenset({ES256})),
    ("OKP", "Ed25519"): (EDDSA, frozenset({EDDSA, "Ed25519"})),  # "Ed25519": RFC 9864
}


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key (or the development HS256 secret) and the one algorithm it verifies."""

    kid: str
    alg: str
    jwk: jwt.PyJWK

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """The signature over `signing_input` is valid for this key under its own algorithm."""
        return bool(self.jwk.Algorithm.verify(signing_input, self.jwk.key, signature))


def key_from_jwk(jwk: Mapping[str, object]) -> VerificationKey:
    """Build a verification key from one public JWK; InvalidArgument says why it is unusable.

    Only the public members are read, so a JWK that also carries private ones
    (`d`, `p`, `q`...) still yields a key that can do nothing but verify.
    """
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _unusable("the key has no kid, so no token can name it")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    found = _ALGORITHMS.get((str(kty), None if kty == "RSA" else str(crv)))
    if found is None:
        raise _unusable(f"key type {_short(kty)} (curve {_short(crv)}) is not supported")
    alg, names = found
    declared = jwk.get("alg", alg)
    if not isinstance(declared, str) or declared not in names:
        raise _unusable(f"alg {_short(declared)} does not fit a {kty} key")
    if jwk.get("use", "sig") != "sig":
        raise _unusable(f"use {_short(jwk['use'])} is not 'sig'")
    public = {}
    for member in _PUBLIC_MEMBERS[str(kty)]:
        value = jwk.get(member)
        if not isinstance(value, str) or not value:
            raise _unusable(f"member {member!r} is missing or not a string")
        public[member] = value
    try:
        parsed = jwt.PyJWK(public, algorithm=alg)
    except (PyJWTError, ValueError, TypeError) as exc:
        raise _unusable(f"the key does not parse: {exc}") from None
    if alg == RS256 and parsed.key.key_size < RSA_MIN_BITS:
        raise _unusable(f"RSA key of {parsed.key.key_size} bits (at least {RSA_MIN_BITS})")
    return VerificationKey(kid=kid, alg=alg, jwk=parsed)


def parse_jwks(document: bytes | str, *, source: str) -> dict[str, VerificationKey]:
    """The usable keys of a JWKS document, by kid.

    Unusable keys are skipped with a log line naming `source`; a document that
    is not a JWKS, or has no usable key, is Unavailable (`jwks_unavailable`).
    """
    try:
        parsed = json.loads(document)
    except (ValueError, RecursionError):
        parsed = None
    entries = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(entries, list):
        raise jwks_unavailable(f"the JWKS from {source} is not a JSON object with a 'keys' list")
    keys: dict[str, VerificationKey] = {}
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise _unusable("the entry is not a JSON object")
            key = key_from_jwk(entry)
        except InvalidArgument as exc:
            log.warning("jwks key skipped", source=source, index=index, why=exc.message)
            continue
        if key.kid in keys:
            log.warning("jwks key skipped", source=source, index=index, why="duplicate kid")
            continue
        keys[key.kid] = key
    if not keys:
        raise jwks_unavailable(f"the JWKS from {source} has no usable key ({len(entries)} listed)")
    return keys


def hs256_key(secret: bytes) -> VerificationKey:
    """The development HS256 key. Never published, and only in use when configured."""
    if len(secret) < HS256_MIN_SECRET_BYTES:
        raise InvalidArgument(
            f"the HS256 secret must be at least {HS256_MIN_SECRET_BYTES} bytes",
            details={"field": "hs256_secret"},
        )
    jwk = {"kty": "oct", "k": b64url(secret)}
    return VerificationKey(kid=HS256_KID, alg=HS256, jwk=jwt.PyJWK(jwk, algorithm=HS256))


def thumbprint(public_jwk: Mapping[str, str]) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256): a kid that is stable and names the key itself."""
    members = _PUBLIC_MEMBERS[public_jwk["kty"]]
    canonical = canonical_json({m: public_jwk[m] for m in members})
    return b64url(hashlib.sha256(canonical).digest())


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One of this service's private keys, with its kid, algorithm and lifetime (epoch seconds)."""

    kid: str
    alg: str
    private_key: PrivateKey
    created_at_s: float
    retires_at_s: float | None = None  # set when a newer key takes over signing

    def public_jwk(self) -> dict[str, str]:
        """The RFC 7517 public JWK: key members, kid, alg and use; never a private member."""
        members = jwt.get_algorithm_by_name(self.alg).to_jwk(
            self.private_key.public_key(), as_dict=True
        )
        public = {m: str(members[m]) for m in _PUBLIC_MEMBERS[str(members["kty"])]}
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}


def generate_key(*, alg: str = ES256, clock: Callable[[], float] = time.time) -> SigningKey:
    """A new signing key; its kid is the thumbprint of its public part."""
    private_key: PrivateKey
    if alg == ES256:
        private_key = ec.generate_private_key(ec.SECP256R1())
    elif alg == RS256:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_MIN_BITS)
    elif alg == EDDSA:
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise InvalidArgument(
            f"cannot sign with {alg!r} (choose one of {sorted(SIGNING_ALGORITHMS)})",
            details={"field": "alg"},
        )
    return with_kid(private_key, alg=alg, created_at_s=clock())


def with_kid(private_key: PrivateKey, *, alg: str, created_at_s: float) -> SigningKey:
    draft = SigningKey(kid="", alg=alg, private_key=private_key, created_at_s=created_at_s)
    return replace(draft, kid=thumbprint(draft.public_jwk()))


def checked_private_key(private_key: object) -> tuple[PrivateKey, str]:
    """The key, typed, and the algorithm it signs with; ValueError for any other kind of key."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
        private_key.curve, ec.SECP256R1
    ):
        return private_key, ES256
    if isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= RSA_MIN_BITS:
        return private_key, RS256
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key, EDDSA
    raise ValueError(f"{type(private_key).__name__} cannot sign tokens here")


def jwks_unavailable(message: str) -> Unavailable:
    return Unavailable(message, details={"reason": Reason.JWKS_UNAVAILABLE.value})


def _unusable(message: str) -> InvalidArgument:
    return InvalidArgument(message, details={"field": "jwk"})


def _short(value: object) -> str:
    # Values from an untrusted document go into log lines: bounded, and repr'd.
    return repr(value)[:40]
