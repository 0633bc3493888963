"""One exception root for edgegate, with a subclass per status code.

Domain code raises these and nothing else. They carry no transport: the gRPC
bootstrap maps them to status codes in one interceptor, and the NATS bus
carries them across processes in reply headers, so a caller in another
service gets the same typed exception back.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class Code(enum.IntEnum):
    """The canonical gRPC status codes (same numbers as `edgegate.common.v1.ErrorCode`)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# Codes that say the request itself is wrong: another attempt fails the same way, and the
# service that refused it is healthy (a circuit breaker does not count them).
REQUEST_ERRORS = frozenset(
    {
        Code.INVALID_ARGUMENT,
        Code.NOT_FOUND,
        Code.PERMISSION_DENIED,
        Code.UNAUTHENTICATED,
        Code.FAILED_PRECONDITION,
        Code.OUT_OF_RANGE,
        Code.UNIMPLEMENTED,
    }
)

# The codes that say "not now" (the same request may succeed later), each with the wait
# to suggest when the refusing code knows no better: an overloaded queue drains in about
# a second; an absent dependency takes a few to come back. Their answers always tell the
# caller when to try again (HTTP `Retry-After`, gRPC `google.rpc.RetryInfo`).
DEFAULT_RETRY_AFTER_S: dict[Code, float] = {
    Code.RESOURCE_EXHAUSTED: 1.0,
    Code.UNAVAILABLE: 2.0,
}
MAX_RETRY_AFTER_S = 300.0

RETRY_AFTER_KEY = "retry_after_s"  # in `details`: the wait the refusing code chose


class EdgegateError(Exception):
    """Root of every error edgegate raises on purpose."""

    code: ClassVar[Code] = Code.UNKNOWN

    def __init__(self, message: str, *, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class Cancelled(EdgegateError):
    code = Code.CANCELLED


class InvalidArgument(EdgegateError):
    code = Code.INVALID_ARGUMENT


class DeadlineExceeded(EdgegateError):
    code = Code.DEADLINE_EXCEEDED


class NotFound(EdgegateError):
    code = Code.NOT_FOUND


class AlreadyExists(EdgegateError):
    code = Code.ALREADY_EXISTS


class PermissionDenied(EdgegateError):
    code = Code.PERMISSION_DENIED


class ResourceExhausted(EdgegateError):
    code = Code.RESOURCE_EXHAUSTED


class FailedPrecondition(EdgegateError):
    code = Code.FAILED_PRECONDITION


class Unimplemented(EdgegateError):
    code = Code.UNIMPLEMENTED


class Internal(EdgegateError):
    code = Code.INTERNAL


class Unavailable(EdgegateError):
    code = Code.UNAVAILABLE


class Unauthenticated(EdgegateError):
    code = Code.UNAUTHENTICATED


class NoResponders(Unavailable):
    """Nobody serves the NATS subject a request was sent to."""


_BY_CODE: dict[Code, type[EdgegateError]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Unimplemented,
        Internal,
        Unavailable,
        Unauthenticated,
    )
}


def retry_after_s(error: EdgegateError) -> float | None:
    """How long the caller should wait before trying again; None if retrying cannot help.

    The wait the refusing code put in `details` (a breaker's time to its next
    probe, a bucket's time to its next token), else the code's default.
    """
    default = DEFAULT_RETRY_AFTER_S.get(error.code)
    if default is None:
        return None
    try:
        chosen = float(error.details.get(RETRY_AFTER_KEY, default))
    except ValueError:
        chosen = default
    if chosen != chosen:  # NaN
        chosen = default
    return min(MAX_RETRY_AFTER_S, max(0.0, chosen))


def error_for(
    code: Code | int | str, message: str, details: dict[str, str] | None = None
) -> EdgegateError:
    """Rebuild a typed error from a code received over the wire."""
    try:
        parsed = Code[code] if isinstance(code, str) else Code(code)
    except (KeyError, ValueError):
        return EdgegateError(f"{message} (unknown error code {code!r})", details=details)
    return _BY_CODE.get(parsed, EdgegateError)(message, details=details)
