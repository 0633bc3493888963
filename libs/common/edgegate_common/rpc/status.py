"""Error details on gRPC, in the standard rich-status form.

A denial's `reason` (and any other `EdgegateError.details`) travels as a
`google.rpc.ErrorInfo` inside a `google.rpc.Status` in the
`grpc-status-details-bin` trailer, the form every gRPC language's
rich-error helpers read. `ErrorInfo.reason` is the reason code in upper
case, as AIP-193 spells reasons; `metadata` holds the details verbatim.
A refusal that may pass later (RESOURCE_EXHAUSTED, UNAVAILABLE) also
carries a `google.rpc.RetryInfo` whose `retry_delay` says when to retry,
as AIP-194 asks.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from edgegate_common.errors import RETRY_AFTER_KEY, EdgegateError, retry_after_s

DETAILS_KEY = "grpc-status-details-bin"
DOMAIN = "edgegate.io"


def trailing_metadata(error: EdgegateError) -> tuple[tuple[str, bytes], ...]:
    """The trailer that carries `error.details` and when to retry; empty when neither."""
    wait_s = retry_after_s(error)
    details = dict(error.details)
    if wait_s is not None:
        details[RETRY_AFTER_KEY] = f"{wait_s:g}"
    if not details:
        return ()
    info = error_details_pb2.ErrorInfo(
        reason=details.get("reason", error.code.name).upper(),
        domain=DOMAIN,
        metadata=details,
    )
    status = status_pb2.Status(code=int(error.code), message=error.message)
    status.details.add().Pack(info)
    if wait_s is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(round(wait_s * 1e9))
        status.details.add().Pack(retry)
    return ((DETAILS_KEY, status.SerializeToString()),)


def error_details(trailing: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """The details of an edgegate error, read from a failed call's trailing metadata."""
    for key, value in trailing or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return {}
        for any_detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if any_detail.Unpack(info) and info.domain == DOMAIN:
                return dict(info.metadata)
    return {}
