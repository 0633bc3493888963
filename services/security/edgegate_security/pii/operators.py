"""What happens to a finding: mask, redact, replace or hash (tokenize lives in `tokens`).

Presidio's anonymizer operators were the first choice and do not fit: its mask
keeps characters at one end only (no "138****5678"), its hash appends a salt to
plain SHA-256 and raises on lone surrogates (`str.encode()`), and its engine
rebuilds the whole string once per finding and merges same-type findings that
only whitespace separates. These are a few lines each here.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import struct

from edgegate_security.pii.findings import Entity
from edgegate_security.pii.folding import fold

MASK_CHAR = "*"


class Operator(enum.StrEnum):
    """Operator names, as the service's configuration spells them."""

    MASK = "mask"
    REDACT = "redact"
    REPLACE = "replace"
    HASH = "hash"
    TOKENIZE = "tokenize"


def _kept_ends(entity: str, value: str, n: int) -> tuple[int, int]:
    """How many letters and digits stay visible at the start and at the end."""
    match entity:
        case Entity.CN_MOBILE | Entity.PHONE_NUMBER:
            return max(0, n - 8), 4  # the four digits before the last four: 138****5678
        case Entity.BANK_CARD:
            return 6, 4  # issuer and last four, as receipts print them
        case Entity.IP_ADDRESS:
            sep = ":" if ":" in value else "."
            head = sep.join(value.split(sep)[:2])
            return sum(c.isalnum() for c in head), 0  # the network: 192.168.*.*
        case Entity.CN_RESIDENT_ID | Entity.CN_USCC:
            return 3, 4
        case Entity.IBAN_CODE:
            return 4, 4
        case _:
            return 0, 0


def _mask_alnum(value: str, *, head: int, tail: int) -> str:
    """Mask letters and digits between the kept ends; separators stay for readability.

    At least a quarter of the characters are masked whatever the rule says, so
    short values (a 13-digit card, "1.1.1.1") never come out in clear.
    """
    positions = [i for i, c in enumerate(value) if c.isalnum()]
    n = len(positions)
    least = -(-n // 4)
    if n - head - tail < least:
        head = max(0, n - tail - least)
    if n - head - tail < least:
        tail = max(0, n - head - least)
    hidden = set(positions[head : n - tail])
    return "".join(MASK_CHAR if i in hidden else c for i, c in enumerate(value))


def mask(value: str, entity: str) -> str:
    """Keep a few characters so people can tell values apart: 138****5678, b**@example.com.

    The rules read the folded value, so an address typed in full width keeps its
    domain as an ASCII one does; the characters kept are the ones written.
    """
    folded = fold(value)
    if entity == Entity.EMAIL_ADDRESS and "@" in folded.text:
        i = folded.text.rindex("@")
        at = folded.span(i, i + 1)[0]
        return _mask_alnum(value[:at], head=1, tail=0) + value[at:]
    n = sum(c.isalnum() for c in value)
    head, tail = _kept_ends(entity, folded.text, n)
    return _mask_alnum(value, head=head, tail=tail)


def replace(entity: str) -> str:
    """The entity's name in angle brackets: `<CN_MOBILE>`."""
    return f"<{entity}>"


def canonical(value: str, entity: str) -> str:
    """One spelling per value, so "138 1234 5678" and "+86 13812345678" hash alike."""
    value = fold(value).text
    match entity:
        case Entity.EMAIL_ADDRESS:
            return value.lower()
        case Entity.IP_ADDRESS:
            try:
                return str(ipaddress.ip_interface(value))
            except ValueError:
                return value
        case Entity.CN_MOBILE:
            return "".join(c for c in value if c.isdigit())[-11:]
        case _:
            return "".join(c for c in value if c.isalnum()).upper()


def tenant_scope(tenant: str) -> bytes:
    """The tenant, length-prefixed: what binds a digest or a token to one tenant."""
    scope = tenant.encode("utf-8", "surrogatepass")
    return struct.pack(">I", len(scope)) + scope


class Hasher:
    """HMAC-SHA256 under the service's salt, scoped to the tenant.

    The salt is a key: without it nobody can hash every mobile number and look
    the digests up. The tenant goes into the message, so two tenants' digests of
    one value differ and cannot be joined; within a tenant they are stable.
    """

    def __init__(self, *, salt: bytes) -> None:
        if len(salt) < 16:
            raise ValueError("hash_salt must be at least 16 bytes")
        self._salt = salt

    def digest(self, value: str, *, entity: str, tenant: str) -> str:
        message = tenant_scope(tenant) + canonical(value, entity).encode("utf-8", "surrogatepass")
        return hmac.new(self._salt, message, hashlib.sha256).hexdigest()
