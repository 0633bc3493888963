"""What the benchmarks share: percentiles, and the trace a caller is in.

Imported by the scripts beside it (`python bench/<name>.py` puts this folder
on the path).
"""

from __future__ import annotations

from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def unsampled_span() -> Span:
    """The span a service's request handler is in by default: valid ids, not sampled.

    No collector configured, or the ratio sampler said no: the trace id still
    travels in `traceparent`, and nobody builds spans for it.
    """
    ctx = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.DEFAULT),
    )
    return NonRecordingSpan(ctx)
