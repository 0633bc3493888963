"""Reading what a caller sent besides the message: its `authorization` and the token in it."""

from __future__ import annotations

from typing import Any

import grpc

from edgegate_common.errors import Unauthenticated

BEARER = "bearer "


def authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's `authorization` metadata (`Bearer <jwt>`), or "" when it sent none."""
    return metadata(context, "authorization") or ""


def metadata(context: grpc.aio.ServicerContext[Any, Any], name: str) -> str | None:
    """The caller's metadata `name` (lower case), or None when it sent none."""
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def bearer_token(credential: str) -> str:
    """The token in an `Authorization` value (`Bearer <jwt>`, or the bare token).

    UNAUTHENTICATED when there is none: every call that needs a caller says so the same way.
    """
    token = credential[len(BEARER) :] if credential.lower().startswith(BEARER) else credential
    token = token.strip()
    if not token:
        raise Unauthenticated("a bearer token is required (the authorization header or metadata)")
    return token
