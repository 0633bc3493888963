"""Reading what a caller sent besides the message: its metadata, `authorization` among it.

The token inside an `authorization` value is `edgegate_common.credentials.bearer_token`'s
to find: the HTTP and NATS transports carry the same value.
"""

from __future__ import annotations

from typing import Any

import grpc


def authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's `authorization` metadata (`Bearer <jwt>`), or "" when it sent none."""
    return metadata(context, "authorization") or ""


def metadata(context: grpc.aio.ServicerContext[Any, Any], name: str) -> str | None:
    """The caller's metadata `name` (lower case), or None when it sent none."""
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None
