"""The caller's credential as the transports hand it over: an `Authorization` value.

gRPC metadata, HTTP headers, a WebSocket's first frame and NATS headers all
carry the same thing: `Bearer <token>`, or (from clients that send it bare)
just the token. Parsing it is no transport's business, so it lives here,
once, for the gateway, the taskstore and the security service alike.
"""

from __future__ import annotations

from edgegate_common.errors import Unauthenticated

SCHEME = "bearer"  # compared case-insensitively (RFC 9110, section 11.1)

# The reasons the security service files these refusals under (its `Reason` values).
MISSING = "token_missing"
MALFORMED = "token_malformed"


def bearer_token(authorization: str) -> str:
    """The token in an `Authorization` value: `Bearer <token>`, or the bare token.

    The scheme is matched in any case and whitespace around either part is
    ignored. UNAUTHENTICATED (with the reason in its details) when there is
    no token (`""`, `"Bearer"`, `"Bearer   "`), when the scheme is another
    (`"Basic ..."`), or when the token holds whitespace: a token never does,
    and a value that looks like one is better refused here than sent on.
    """
    words = authorization.split(maxsplit=1)
    if not words or (len(words) == 1 and words[0].lower() == SCHEME):
        raise Unauthenticated(
            "a bearer token is required (the authorization header or metadata)",
            details={"reason": MISSING},
        )
    if len(words) == 1:
        return words[0]  # sent bare
    scheme, token = words[0], words[1].strip()
    if scheme.lower() != SCHEME:
        # The scheme is the caller's text: named only when it is short and plain.
        named = repr(scheme) if len(scheme) <= 16 and scheme.isalnum() else "another"
        raise Unauthenticated(
            f"the authorization scheme is {named}, not Bearer",
            details={"reason": MALFORMED},
        )
    if len(token.split()) != 1:
        raise Unauthenticated(
            "the authorization value is not `Bearer <token>`: the token holds whitespace",
            details={"reason": MALFORMED},
        )
    return token
