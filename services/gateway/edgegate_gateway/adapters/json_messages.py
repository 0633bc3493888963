"""The JSON message both WebSocket frames and MQTT requests carry, read with clear errors.

A message is a JSON object: `text` for `model`, and optionally `version`,
`idempotency_key`, `priority` (`high` / `normal` / `low`) and `defer` (queue
it in the taskstore even if it could run now). Anything else in it is
ignored; anything wrong in it is an INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from typing import Any

from edgegate_common.errors import EdgegateError, InvalidArgument, retry_after_s
from edgegate_gateway.adapters.http_json import text_field
from edgegate_gateway.adapters.tasks_http import text_priority
from edgegate_gateway.core import json_input
from edgegate_protos.common.v1 import envelope_pb2 as env

MAX_TEXT_CHARS = 64 * 1024


def frame_object(data: str | bytes) -> dict[str, Any]:
    """A JSON object from text (or UTF-8 bytes), or INVALID_ARGUMENT."""
    return json_input.decode_object(data, what="the message")


def error_frame(exc: EdgegateError, message_id: str | None) -> dict[str, Any]:
    """The `error` message answering `message_id`: the gRPC code name, what was wrong,
    and, for a refusal that may pass later, `retry_after_s`."""
    frame: dict[str, Any] = {
        "type": "error",
        "id": message_id,
        "code": exc.code.name,
        "message": exc.message,
    }
    wait_s = retry_after_s(exc)
    if wait_s is not None:
        frame["retry_after_s"] = wait_s
    return frame


def message_envelope(
    frame: dict[str, Any], channel: env.Channel.ValueType, conversation: str
) -> tuple[env.Envelope, bool]:
    """The envelope a message asks for, and whether it asked to be deferred."""
    text = text_field(frame, "text", required=True)
    if len(text) > MAX_TEXT_CHARS:  # a limit of the message, not a load: no retry helps
        raise InvalidArgument(
            f"'text' is longer than {MAX_TEXT_CHARS} characters", details={"param": "text"}
        )
    defer = frame.get("defer", False)
    if not isinstance(defer, bool):
        raise InvalidArgument("'defer' must be true or false", details={"param": "defer"})
    envelope = env.Envelope(
        channel=channel,
        conversation=conversation,
        idempotency_key=text_field(frame, "idempotency_key", required=False),
        priority=text_priority(frame.get("priority", "normal")),
        route=env.RouteHint(
            model=text_field(frame, "model", required=True),
            version=text_field(frame, "version", required=False),
        ),
    )
    envelope.parts.add(text=text)
    return envelope, defer
