"""Reversible tokens: the value, encrypted for one tenant, written into the text.

A token reads `⟦PII:CN_MOBILE:<base64url>⟧`: the brackets (U+27E6, U+27E7) are
rare in user text and easy to find with a regex, and the entity name tells a
model or a person what was there. The payload is a random 96-bit nonce and the
AES-256-GCM ciphertext of the value; the tenant and the entity are associated
data, so a token only opens for the tenant it was made for, under its own entity.

Restoring never raises: a token that does not open (another tenant's, tampered
with, made under another key, or user text that merely looks like one) is left
exactly as it is. Callers that must know can look for `TOKEN_PATTERN` in the result.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OPENING = "\u27e6"  # ⟦
CLOSING = "\u27e7"  # ⟧
TOKEN_PATTERN = re.compile(
    OPENING + r"PII:([A-Z][A-Z0-9_]{0,63}):([A-Za-z0-9_-]{39,8192})" + CLOSING
)

_NONCE_BYTES = 12
_AAD_PREFIX = b"edgegate-pii-token-v1"


def _aad(*, tenant: str, entity: str) -> bytes:
    scope = tenant.encode("utf-8", "surrogatepass")
    return _AAD_PREFIX + struct.pack(">I", len(scope)) + scope + entity.encode("ascii")


class TokenCipher:
    """Seals values into tokens and opens them again, for one key."""

    def __init__(self, *, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("token_key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    def seal(self, value: str, *, entity: str, tenant: str) -> str:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", entity):
            raise ValueError(f"entity {entity!r} cannot name a token")
        nonce = os.urandom(_NONCE_BYTES)
        plain = value.encode("utf-8", "surrogatepass")
        sealed = self._aead.encrypt(nonce, plain, _aad(tenant=tenant, entity=entity))
        payload = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{OPENING}PII:{entity}:{payload}{CLOSING}"

    def open(self, token: re.Match[str], *, tenant: str) -> str | None:
        """The value a token holds, or None when it does not open for `tenant`."""
        entity, payload = token.group(1), token.group(2)
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            plain = self._aead.decrypt(nonce, sealed, _aad(tenant=tenant, entity=entity))
            return plain.decode("utf-8", "surrogatepass")
        except (binascii.Error, InvalidTag, ValueError):
            return None

    def restore(self, text: str, *, tenant: str) -> str:
        """Put back the values of the tokens that open for `tenant`; leave the rest."""
        if OPENING not in text:
            return text

        def swap(token: re.Match[str]) -> str:
            value = self.open(token, tenant=tenant)
            return token.group(0) if value is None else value

        return TOKEN_PATTERN.sub(swap, text)
