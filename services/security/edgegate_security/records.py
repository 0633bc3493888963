"""What the plane's audit records hold of the caller's words and of tokens it issued.

Ids a caller chose (request ids, tenants, subjects another service passes)
go into records as they are when short and plain, hashed otherwise; a token
issued is named by its id and scopes, never by itself.
"""

from __future__ import annotations

import hashlib
import json
import re

from opentelemetry import trace

from edgegate_security.core.tokens import IssuedToken

# Up to 128 characters, no control characters, nothing that starts a JWT ("eyJ" is
# base64url for '{"'): what records may hold of ids the caller chose, as they are.
_PLAIN_ID = re.compile(r"(?!.*eyJ)[^\x00-\x1f\x7f]{0,128}", re.DOTALL)


def issued_details(issued: IssuedToken, *, ttl_s: float) -> dict[str, str]:
    """What an audit record says of a token issued: never the token itself."""
    p = issued.principal
    return {
        "issued_tenant": p.tenant,
        "issued_subject": p.subject,
        "issued_token_id": p.token_id,
        "scopes": json.dumps(sorted(p.scopes)),
        "ttl_s": f"{ttl_s:g}",
    }


def identifier(value: str) -> str:
    """`value` as a record may hold it: short plain ids as they are, anything else hashed.

    Request ids, tenants and subjects can come from the caller (an envelope id,
    a principal another service passes): a huge one, or one shaped like a
    token, must neither keep the refusal out of the log nor put a secret in it.
    """
    if _PLAIN_ID.fullmatch(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
