"""Pure pieces: error codes, NATS headers, subject names."""

from __future__ import annotations

import pytest

from edgegate_common import subjects
from edgegate_common.bus import headers as hdr
from edgegate_common.errors import (
    Code,
    DeadlineExceeded,
    EdgegateError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    error_for,
)
from edgegate_common.rpc import error_details
from edgegate_common.rpc.status import DETAILS_KEY, trailing_metadata
from edgegate_protos.common.v1 import envelope_pb2


def test_codes_match_the_proto_error_codes() -> None:
    # Code is what domain code raises; ErrorCode is what travels in Reply.error.
    for code in Code:
        assert envelope_pb2.ErrorCode.Value(f"ERROR_CODE_{code.name}") == code.value


@pytest.mark.parametrize("code", [Code.NOT_FOUND, "NOT_FOUND", 5])
def test_error_for_rebuilds_the_typed_error(code: Code | str | int) -> None:
    error = error_for(code, "no model m")
    assert isinstance(error, NotFound)
    assert error.message == "no model m"


def test_error_for_an_unknown_code_keeps_the_message() -> None:
    error = error_for("NO_SUCH_CODE", "boom")
    assert type(error) is EdgegateError
    assert "boom" in error.message and "NO_SUCH_CODE" in error.message


def test_error_headers_round_trip_and_stay_on_one_line() -> None:
    encoded = hdr.encode_error(ResourceExhausted("queue full\r\nretry later"))
    assert encoded[hdr.ERROR_CODE] == "RESOURCE_EXHAUSTED"
    assert "\n" not in encoded[hdr.ERROR_MESSAGE] and "\r" not in encoded[hdr.ERROR_MESSAGE]
    decoded = hdr.decode_error(encoded)
    assert isinstance(decoded, ResourceExhausted)
    assert decoded.message == "queue full retry later"


def test_error_details_cross_nats_headers_on_one_line() -> None:
    error = PermissionDenied("no", details={"reason": "tenant_mismatch", "note": "a\r\nb"})
    encoded = hdr.encode_error(error)
    assert "\n" not in encoded[hdr.ERROR_DETAILS]
    decoded = hdr.decode_error(encoded)
    assert isinstance(decoded, PermissionDenied)
    assert decoded.details == {"reason": "tenant_mismatch", "note": "a\r\nb"}
    # Details too big for a header are left out; unreadable ones are ignored, never an error.
    huge = hdr.encode_error(PermissionDenied("no", details={"x": "y" * 5000}))
    assert hdr.ERROR_DETAILS not in huge
    garbled = {**encoded, hdr.ERROR_DETAILS: "{not json"}
    assert hdr.decode_error(garbled).details == {}  # type: ignore[union-attr]


def test_error_details_travel_as_a_grpc_error_info() -> None:
    error = Unauthenticated("token refused", details={"reason": "token_expired"})
    trailer = trailing_metadata(error)
    assert [key for key, _ in trailer] == [DETAILS_KEY]
    assert error_details(trailer) == {"reason": "token_expired"}
    assert trailing_metadata(Unauthenticated("no details")) == ()
    assert error_details([(DETAILS_KEY, b"\xff garbage")]) == {}
    assert error_details(None) == {}


def test_a_reply_without_error_headers_is_a_success() -> None:
    assert hdr.decode_error(None) is None
    assert hdr.decode_error({"traceparent": "00-abc"}) is None


def test_timeout_header_round_trips_to_the_millisecond() -> None:
    assert hdr.decode_timeout({hdr.TIMEOUT: hdr.encode_timeout(2.5004)}) == 2.5
    assert hdr.encode_timeout(-1) == "0"  # already late: the receiver refuses at once
    for unreadable in ("soon", "-5", "1e3", ""):
        assert hdr.decode_timeout({hdr.TIMEOUT: unreadable}) is None
    assert hdr.decode_timeout({}) is None


def test_subjects_are_versioned_and_tokens_are_safe() -> None:
    assert (
        subjects.inference_infer("all-MiniLM-L6-v2", "3")
        == "edgegate.inference.v1.infer.all-MiniLM-L6-v2.3"
    )
    assert (
        subjects.taskstore_events("acme", "alice-2") == "edgegate.taskstore.v1.events.acme.alice-2"
    )
    assert subjects.status("gateway") == "edgegate.gateway.v1.status"
    with pytest.raises(ValueError, match="empty"):
        subjects.token("")
    with pytest.raises(ValueError, match="empty"):
        subjects.ident("")


def test_identity_tokens_never_collide() -> None:
    """Tenants "acme.io" and "acme_io" must not share a subject (or a KV key)."""
    names = ["acme.io", "acme_io", "acme io", "acme-io", "a.b>*", "a_b__", "x" * 64, "x" * 65]
    tokens = [subjects.ident(n) for n in names]
    assert len(set(tokens)) == len(names)
    for value in tokens:
        assert subjects.token(value) == value  # already a safe single token
    assert subjects.taskstore_events("acme corp", "a.b>*").count(".") == 5


def test_deadline_exceeded_is_an_edgegate_error_with_its_code() -> None:
    assert DeadlineExceeded("late").code is Code.DEADLINE_EXCEEDED
