"""Who is calling: what a verified credential says, and nothing the caller merely claimed.

A `Principal` is only ever built by `tokens.TokenVerifier` (or `TokenIssuer`,
for the token it has just signed), after the signature and every required
claim were checked. It is plain Python so that `core/` stays free of gRPC; the
servicer converts it to `edgegate.common.v1.Principal` one to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edgegate_common.errors import InvalidArgument


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The tenant and subject a token speaks for, with what it may do and until when.

    `scopes` holds the scope strings exactly as the token carried them,
    including ones this version does not know: authorisation ignores those
    (see `scopes.authorize`), audit records still show them.
    """

    tenant: str
    subject: str
    scopes: frozenset[str]
    expires_at: datetime
    token_id: str  # the token's `jti`; empty when the issuer set none

    def __post_init__(self) -> None:
        # A naive datetime would be read as local time by whoever converts it
        # to a protobuf Timestamp, silently shifting every expiry.
        if self.expires_at.tzinfo is None:
            raise InvalidArgument("Principal.expires_at must be timezone-aware (UTC)")
