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

import binascii
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgegate_security.encoding import b64url, b64url_decode
from edgegate_security.pii.operators import tenant_scope

OPENING = "\u27e6"  # ⟦
CLOSING = "\u27e7"  # ⟧
_ENTITY_NAME = r"[A-Z][A-Z0-9_]{0,63}"
_ENTITY = re.compile(_ENTITY_NAME)
TOKEN_PATTERN = re.compile(OPENING + rf"PII:({_ENTITY_NAME}):([A-Za-z0-9_-]{{39,8192}})" + CLOSING)

_NONCE_BYTES = 12
_AAD_PREFIX = b"edgegate-pii-token-v1"


def _aad(*, tenant: str, entity: str) -> bytes:
    return _AAD_PREFIX + tenant_scope(tenant) + entity.encode("ascii")


class TokenCipher:
    """Seals values into tokens and opens them again, for one key."""

    def __init__(self, *, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("token_key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    def seal(self, value: str, *, entity: str, tenant: str) -> str:
        if not _ENTITY.fullmatch(entity):
            raise ValueError(f"entity {entity!r} cannot name a token")
        nonce = os.urandom(_NONCE_BYTES)
        plain = value.encode("utf-8", "surrogatepass")
        sealed = self._aead.encrypt(nonce, plain, _aad(tenant=tenant, entity=entity))
        payload = b64url(nonce + sealed)
        return f"{OPENING}PII:{entity}:{payload}{CLOSING}"

    def open(self, token: re.Match[str], *, tenant: str) -> str | None:
        """The value a token holds, or None when it does not open for `tenant`."""
        entity, payload = token.group(1), token.group(2)
        try:
            raw = b64url_decode(payload)
            nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            plain = self._aead.decrypt(nonce, sealed, _aad(tenant=tenant, entity=entity))
            return plain.decode("utf-8", "surrogatepass")
        except (binascii.Error, InvalidTag, ValueError):
            return None

    def restore(self, text: str, *, tenant: str) -> str:
        """Put back the values of the tokens that open for `tenant`; leave the rest."""
        return self.restore_counted(text, tenant=tenant)[0]

    def restore_counted(self, text: str, *, tenant: str) -> tuple[str, int]:
        """`restore`, with how many tokens opened."""
        if OPENING not in text:
            return text, 0
        opened = 0

        def swap(token: re.Match[str]) -> str:
            nonlocal opened
            value = self.open(token, tenant=tenant)
            if value is None:
                return token.group(0)
            opened += 1
            return value

        return TOKEN_PATTERN.sub(swap, text), opened
