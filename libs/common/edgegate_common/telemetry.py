"""OpenTelemetry tracing with W3C trace context.

The context crosses process boundaries in NATS message headers and gRPC
metadata under the standard `traceparent` / `tracestate` keys, so a request
keeps one trace id from the gateway through every service it touches.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def configure_tracing(
    *,
    service: str,
    version: str = "0.0.0",
    otlp_endpoint: str | None = None,
    exporter: SpanExporter | None = None,
    processor: SpanProcessor | None = None,
) -> TracerProvider:
    """Install a tracer provider for this process.

    Spans always get real ids (so logs and NATS headers carry a trace even
    with no collector); they are exported only when an OTLP endpoint, an
    exporter or a processor is given.
    """
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"edgegate-{service}", "service.version": version})
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
    """Read a trace context from incoming headers or metadata (empty if none)."""
    return _PROPAGATOR.extract(carrier or {})


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
