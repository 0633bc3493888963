"""The headers edgegate puts on NATS messages, and their pure encode/decode.

- `traceparent` / `tracestate`: W3C trace context (see edgegate_common.telemetry).
- `Edgegate-Timeout-Ms`: the time the caller will wait, in milliseconds, as
  gRPC's `grpc-timeout` does: each host turns it into a deadline on its own
  clock, so clock skew between hosts cannot expire or extend requests.
- `Edgegate-Error-Code` / `Edgegate-Error-Message` / `Edgegate-Error-Details`:
  set on a reply instead of a body when the handler failed; the caller
  re-raises the typed error. Details (a JSON object of strings, such as a
  denial's `reason` code) are what a program branches on; the message is for people.
- `Edgegate-Body-Type`: the full protobuf name of a request's body, so that
  a subject can take several request types and name a wrong one clearly.
- `Nats-Msg-Id`: JetStream de-duplication id, on anything durable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from edgegate_common.errors import Code, EdgegateError, Internal, error_for

TIMEOUT = "Edgegate-Timeout-Ms"
ERROR_CODE = "Edgegate-Error-Code"
ERROR_MESSAGE = "Edgegate-Error-Message"
ERROR_DETAILS = "Edgegate-Error-Details"
BODY_TYPE = "Edgegate-Body-Type"
MSG_ID = "Nats-Msg-Id"

_MAX_ERROR_MESSAGE = 1024
_MAX_ERROR_DETAILS = 2048


def encode_timeout(timeout_s: float) -> str:
    return str(max(0, round(timeout_s * 1000)))


def decode_timeout(headers: Mapping[str, str] | None) -> float | None:
    """The caller's timeout in seconds, or None if absent or unreadable."""
    raw = (headers or {}).get(TIMEOUT)
    if raw is None or not raw.isdigit():
        return None
    return int(raw) / 1000


def encode_error(error: EdgegateError) -> dict[str, str]:
    # Header values cannot hold line breaks; keep them short too.
    message = " ".join(error.message.split())[:_MAX_ERROR_MESSAGE]
    headers = {ERROR_CODE: error.code.name, ERROR_MESSAGE: message}
    if error.details:
        # ensure_ascii escapes line breaks too: the value stays one header line.
        details = json.dumps(error.details, ensure_ascii=True, separators=(",", ":"))
        if len(details) <= _MAX_ERROR_DETAILS:
            headers[ERROR_DETAILS] = details
    return headers


def decode_error(headers: Mapping[str, str] | None) -> EdgegateError | None:
    """The typed error a reply carries, or None for a successful reply."""
    if not headers or ERROR_CODE not in headers:
        return None
    code = headers[ERROR_CODE]
    message = headers.get(ERROR_MESSAGE, "")
    if code == Code.OK.name:
        return Internal(f"reply marked as an error with code OK: {message}")
    return error_for(code, message, _details(headers.get(ERROR_DETAILS)))


def _details(raw: str | None) -> dict[str, str] | None:
    """The details a reply carries; unreadable ones are dropped, never an error of their own."""
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {str(k): str(v) for k, v in parsed.items()}
