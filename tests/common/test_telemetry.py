"""Trace context: our fast traceparent path must read headers exactly as OpenTelemetry does."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from edgegate_common import telemetry

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"

HEADERS = [
    f"00-{TRACE}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-00",
    f"00-{TRACE}-{SPAN}-02",  # the W3C level-2 "random" bit must pass through
    f"00-{TRACE}-{SPAN}-03",
    f"00-{TRACE}-{SPAN}-ff",
    f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase hex is invalid
    f"00-{'0' * 32}-{SPAN}-01",  # all-zero ids are invalid
    f"00-{TRACE}-{'0' * 16}-01",
    f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
    f"01-{TRACE}-{SPAN}-01-future",  # a later version may append fields
    f"00-{TRACE}-{SPAN}-01-extra",  # version 00 may not
    f"00-{TRACE}-{SPAN}-1",
    f" 00-{TRACE}-{SPAN}-01",
    "",
    "garbage",
]


def _seen(ctx: context.Context) -> tuple[bool, int, int, int]:
    span_context = trace.get_current_span(ctx).get_span_context()
    return (
        span_context.is_valid,
        span_context.trace_id,
        span_context.span_id,
        span_context.trace_flags,
    )


@pytest.mark.parametrize("header", HEADERS)
def test_fast_path_agrees_with_opentelemetry(header: str) -> None:
    reference = TraceContextTextMapPropagator().extract({"traceparent": header})
    assert _seen(telemetry.extract({"traceparent": header})) == _seen(reference)


def test_extracted_context_does_not_inherit_the_receivers_baggage() -> None:
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        extracted = telemetry.extract({"traceparent": f"00-{TRACE}-{SPAN}-01"})
    finally:
        context.detach(token)
    assert baggage.get_baggage("tenant", extracted) is None


def test_inject_writes_what_extract_reads() -> None:
    span = trace.NonRecordingSpan(
        trace.SpanContext(
            int(TRACE, 16), int(SPAN, 16), is_remote=False, trace_flags=trace.TraceFlags(1)
        )
    )
    carrier: dict[str, str] = {}
    with trace.use_span(span):
        telemetry.inject(carrier)
    assert carrier["traceparent"] == f"00-{TRACE}-{SPAN}-01"
    assert not telemetry.in_unsampled_trace(telemetry.extract(carrier))
