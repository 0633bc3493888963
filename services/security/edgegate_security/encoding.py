"""Byte encodings the security service writes in more than one place.

- unpadded base64url, as JOSE (JWS, JWK) writes binary values and as PII
  tokens carry their ciphertext;
- canonical JSON (sorted keys, no whitespace, UTF-8): RFC 8785 for the value
  types we hash (strings, integers, objects), so a JWK thumbprint or an audit
  record's hash can be recomputed with any other tool.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

# One encoder for all: json.dumps with options builds a new one on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The inverse of `b64url`; raises binascii.Error (a ValueError) on bad input."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8."""
    return _CANONICAL.encode(value).encode("utf-8")
