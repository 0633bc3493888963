"""Reading JSON request bodies the same way on every HTTP route, with clear 400s."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from edgegate_common.errors import InvalidArgument

MAX_INPUTS = 2048  # OpenAI's limit on inputs per embeddings request


async def json_object(request: web.Request) -> dict[str, Any]:
    return parse_object(await request.read())


def parse_object(raw: bytes) -> dict[str, Any]:
    """A body read already (a webhook checks its signature on the raw bytes first)."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidArgument("the body is not valid UTF-8") from None
    except ValueError:
        raise InvalidArgument("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    return body


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
