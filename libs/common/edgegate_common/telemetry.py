"""OpenTelemetry tracing with W3C trace context.

The context crosses process boundaries in NATS message headers and gRPC
metadata under the standard `traceparent` / `tracestate` keys, so a request
keeps one trace id from the gateway through every service it touches.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def configure_tracing(
    *,
    service: str,
    version: str = "0.0.0",
    otlp_endpoint: str | None = None,
    exporter: SpanExporter | None = None,
    processor: SpanProcessor | None = None,
    sample_ratio: float = 1.0,
) -> TracerProvider:
    """Install a tracer provider for this process.

    Spans always get real ids, so logs and NATS headers carry one trace id
    end to end even with no collector. Spans are recorded only when something
    consumes them (an OTLP endpoint, an exporter or a processor): then
    `sample_ratio` of new traces are sampled. Without a consumer, new traces
    are not recorded (recording costs ~30 µs a span for nothing), but a caller
    that sampled its trace is always honoured, so traces stay whole downstream.
    """
    exporting = bool(otlp_endpoint or exporter or processor)
    root: Sampler = TraceIdRatioBased(sample_ratio) if exporting else ALWAYS_OFF
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"edgegate-{service}", "service.version": version}
        ),
        sampler=ParentBased(root=root),
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(_PROPAGATOR)
    return provider


def inject(carrier: MutableMapping[str, str]) -> None:
    """Write the current trace context into outgoing headers or metadata."""
    _PROPAGATOR.inject(carrier)


def extract(carrier: Mapping[str, str] | None) -> context.Context:
    """Read a trace context from incoming headers or metadata (empty if none).

    This runs on every NATS request. The common case, a version-00
    `traceparent` and no `tracestate`, is parsed directly (about 4 µs faster
    than the general propagator); anything else goes to the propagator.
    """
    if not carrier:
        return context.Context()
    header = carrier.get("traceparent")
    if header is not None and "tracestate" not in carrier:
        span_context = _parse_traceparent_v00(header)
        if span_context is not None:
            # A fresh context, as the propagator builds: nothing of ours leaks in.
            return trace.set_span_in_context(
                trace.NonRecordingSpan(span_context), context.Context()
            )
    return _PROPAGATOR.extract(carrier)


_HEX = frozenset("0123456789abcdef")


def _parse_traceparent_v00(header: str) -> trace.SpanContext | None:
    """`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, per W3C Trace Context."""
    if len(header) != 55 or not header.startswith("00-") or header[35] != "-" or header[52] != "-":
        return None
    trace_hex, span_hex, flags_hex = header[3:35], header[36:52], header[53:55]
    if (
        not _HEX.issuperset(trace_hex)
        or not _HEX.issuperset(span_hex)
        or not _HEX.issuperset(flags_hex)
    ):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None  # all-zero ids are invalid: start a new trace instead
    return trace.SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(int(flags_hex, 16)),  # all bits pass through
    )


def in_unsampled_trace(ctx: context.Context | None = None) -> bool:
    """True inside a trace whose spans nobody records (not sampled upstream or here).

    Hot paths then pass the context on as it is instead of building spans:
    the trace id still reaches logs and downstream services.
    """
    span_context = trace.get_current_span(ctx).get_span_context()
    return span_context.is_valid and not span_context.trace_flags.sampled
