"""Reading what a gRPC caller sent besides the message."""

from __future__ import annotations

from typing import Any

import grpc


def authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's `authorization` metadata (`Bearer <jwt>`), or "" when it sent none."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return ""
