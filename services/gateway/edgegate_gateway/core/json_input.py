"""The one way the gateway reads JSON from outside: bounded, checked, with clear errors.

Every adapter (HTTP bodies, chat webhooks after their signature check,
WebSocket frames, MQTT payloads) and every document the operator writes to
NATS KV (routes, quotas) goes through `decode`. It refuses, as INVALID_ARGUMENT with a message that
says what was wrong and never echoes the input:

- bytes that are not UTF-8, and text that is not JSON (with line and column);
- `NaN`, `Infinity` and `-Infinity`, which are not JSON, numbers too large
  for a double (`1e400`, which Python reads as infinity) and integers of
  more than 4300 digits: no downstream encoder accepts them;
- nesting deeper than `MAX_DEPTH`: Python's decoder recurses, so a few
  thousand `[` would otherwise raise RecursionError (a 500), and every later
  walk of the value would recurse again;
- strings (keys included) holding lone UTF-16 surrogates (`"\\ud800"`): JSON
  allows the escape, but such a string is not Unicode text and fails the
  moment it is encoded (into protobuf, NATS, a log line).

The checks walk the decoded value once, without recursion, so their cost is
linear in its size.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from edgegate_common.errors import InvalidArgument

MAX_DEPTH = 32  # OpenAI's, Slack's and Telegram's documents need under 10
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode(data: str | bytes, *, what: str = "the body") -> Any:
    """The JSON value in `data`, checked as the module says; `what` names it in errors."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidArgument(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except _Constant as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    except ValueError:  # Python's limit on integer digits
        raise InvalidArgument(f"{what} holds an integer of more than 4300 digits") from None
    _check(value, what=what)
    return value


def decode_object(data: str | bytes, *, what: str = "the body") -> dict[str, Any]:
    """`decode`, for the common case of a JSON object."""
    value = decode(data, what=what)
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object, not {json_type(value)}")
    return value


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages ("a number", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _Constant(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Constant(f"{name} is not a JSON number")


def _check(value: Any, *, what: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, what=what)
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidArgument(f"{what} holds a number too large for a double")
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise InvalidArgument(f"{what} nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, what=what)
                stack.append((child, depth + 1))
        else:
            stack.extend((child, depth + 1) for child in item)


def _check_text(text: str, *, what: str) -> None:
    if not text.isascii() and _SURROGATE.search(text):
        raise InvalidArgument(
            f"{what} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape); "
            "strings must be Unicode text"
        )
