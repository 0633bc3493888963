"""Prometheus metrics: the shared instruments and the `/metrics` endpoint.

Instruments live on a `CollectorRegistry` that the service runtime creates,
never on the global default registry, so several services (or tests) in one
process do not collide. Names follow Prometheus conventions: `edgegate_`
prefix, base units, `_total` for counters.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Latency buckets from 100 µs to 10 s: bus calls are sub-millisecond, inference is not.
LATENCY_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


MetricT = TypeVar("MetricT", Counter, Histogram)


class _Children(Generic[MetricT]):
    """A labelled metric's children, each made once.

    `metric.labels(...)` costs microseconds (validation, a lock, a dict); on
    request paths that run tens of thousands of times a second we look the
    child up in a plain dict instead.
    """

    def __init__(self, metric: MetricT) -> None:
        self._metric: MetricT = metric
        self._children: dict[tuple[str, ...], MetricT] = {}

    def __call__(self, *labels: str) -> MetricT:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child


class BusMetrics:
    """What a service's NATS handlers did."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "edgegate_nats_requests_handled_total",
            "NATS requests handled, by subject and result code.",
            ["subject", "code"],
            registry=registry,
        )
        self.handling = Histogram(
            "edgegate_nats_request_handling_seconds",
            "Time from receiving a NATS request to publishing its reply.",
            ["subject"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.connected = Gauge(
            "edgegate_nats_connected", "1 while connected to NATS.", registry=registry
        )
        self.publish_failures = Counter(
            "edgegate_nats_publish_failures_total",
            "Best-effort NATS publishes (events, snapshots) that failed, by kind of message.",
            ["kind"],
            registry=registry,
        )
        self._handled = _Children(self.handled)
        self._handling = _Children(self.handling)
        self._publish_failures = _Children(self.publish_failures)

    def observe_handled(self, subject: str, code: str, seconds: float) -> None:
        self._handled(subject, code).inc()
        self._handling(subject).observe(seconds)

    def publish_failed(self, kind: str) -> None:
        self._publish_failures(kind).inc()


class RpcMetrics:
    """What a service's gRPC server did (the names grpc-prometheus uses)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "edgegate_grpc_server_handled_total",
            "gRPC calls completed, by method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=registry,
        )
        self.handling = Histogram(
            "edgegate_grpc_server_handling_seconds",
            "gRPC call duration until the handler returned.",
            ["grpc_service", "grpc_method"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._handled = _Children(self.handled)
        self._handling = _Children(self.handling)

    def observe_handled(self, service: str, method: str, code: str, seconds: float) -> None:
        self._handled(service, method, code).inc()
        self._handling(service, method).observe(seconds)


class MetricsServer:
    """`/metrics` over HTTP on its own thread (prometheus_client's WSGI server)."""

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("metrics server not started")
        return int(self._server.server_port)

    def start(self) -> None:
        self._server, self._thread = start_http_server(
            self._port, addr=self._host, registry=self._registry
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
