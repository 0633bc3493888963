"""Reading JSON request bodies the same way on every HTTP route, with clear 400s."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from edgegate_common.errors import InvalidArgument
from edgegate_gateway.core import json_input

MAX_INPUTS = 2048  # OpenAI's limit on inputs per embeddings request


async def json_object(request: web.Request) -> dict[str, Any]:
    return parse_object(await request.read())


def parse_object(raw: bytes) -> dict[str, Any]:
    """A body read already (a webhook checks its signature on the raw bytes first)."""
    return json_input.decode_object(raw, what="the body")


def field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, str) and not value):
        raise InvalidArgument(
            f"'{name}' is required and must be a non-empty {kind.__name__}",
            details={"param": name},
        )
    return value


def text_inputs(value: object) -> list[str]:
    """`input`: a string or a list of strings (token arrays are not supported)."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidArgument(
            "'input' must be a non-empty string or a non-empty list of strings",
            details={"param": "input"},
        )
    if len(texts) > MAX_INPUTS:
        raise InvalidArgument(
            f"'input' has {len(texts)} items; at most {MAX_INPUTS}", details={"param": "input"}
        )
    if any(not t for t in texts):
        raise InvalidArgument("'input' items must not be empty", details={"param": "input"})
    return texts


def text_field(frame: dict[str, Any], name: str, *, required: bool) -> str:
    value = frame.get(name, "")
    if not isinstance(value, str) or (required and not value):
        need = "a non-empty string" if required else "a string"
        raise InvalidArgument(f"'{name}' must be {need}", details={"param": name})
    return value


def error_response(status: int, kind: str, message: str, param: str | None) -> web.Response:
    """A refusal in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`."""
    code = kind if kind != "invalid_request_error" else None
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status=status,
    )
