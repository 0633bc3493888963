"""The four services as real processes against a real nats-server.

Each runs as `python -m edgegate_<service>`, exactly as in its container.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import start_services
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.harness import NatsLike
from support.waiting import eventually

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.local import ServiceProcess, health_status
from edgegate_protos.common.v1 import status_pb2

pytestmark = pytest.mark.slow

SERVICES = {
    "gateway": "edgegate.gateway.v1.Gateway",
    "inference": "inference.GRPCInferenceService",
    "taskstore": "edgegate.taskstore.v1.TaskStore",
    "security": "edgegate.security.v1.Security",
}


@pytest.fixture(scope="module")
def suite(
    shared_nats: NatsLike, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    log_dir = tmp_path_factory.mktemp("suite-logs")
    procs = asyncio.run(
        start_services(
            list(SERVICES),
            nats_url=shared_nats.url,
            log_dir=log_dir,
            extra_args=("--log-level", "debug"),
        )
    )
    yield {p.service: p for p in procs}
    for proc in procs:
        proc.stop()


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_reports_serving(suite: dict[str, ServiceProcess], service: str) -> None:
    proc = suite[service]
    assert await health_status(proc.target) == "SERVING"
    assert await health_status(proc.target, service=SERVICES[service]) == "SERVING"
    assert await health_status(proc.target, service="no.such.Service") == "SERVICE_UNKNOWN"


async def _reflect(
    target: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        async for response in stub.ServerReflectionInfo(iter([request])):
            return response
    raise AssertionError("reflection sent no response")


@pytest.mark.parametrize("service", SERVICES)
async def test_reflection_lists_and_describes_each_service(
    suite: dict[str, ServiceProcess], service: str
) -> None:
    target = suite[service].target
    listed = await _reflect(target, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in listed.list_services_response.service}
    assert {
        SERVICES[service],
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    described = await _reflect(
        target, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICES[service])
    )
    assert described.file_descriptor_response.file_descriptor_proto, described


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_endpoint_serves_prometheus_text(
    suite: dict[str, ServiceProcess], service: str
) -> None:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{suite[service].metrics_port}/metrics", timeout=5
    ) as reply:
        body = reply.read().decode()
    assert "edgegate_nats_connected 1.0" in body
    # start_services polled health until SERVING: those calls were counted.
    health_checks = (
        'edgegate_grpc_server_handled_total{grpc_code="OK",grpc_method="Check",'
        'grpc_service="grpc.health.v1.Health"} '
    )
    counted = [line for line in body.splitlines() if line.startswith(health_checks)]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1


def _log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for raw in path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return lines


@pytest.mark.parametrize("service", SERVICES)
async def test_a_nats_request_keeps_one_trace_id_across_processes(
    suite: dict[str, ServiceProcess],
    shared_nats: NatsLike,
    spans: InMemorySpanExporter,
    service: str,
) -> None:
    bus = await Bus.connect(servers=[shared_nats.url], name="test", connect_timeout_s=5)
    try:
        with trace.get_tracer("test").start_as_current_span("caller") as span:
            reply = await bus.request(
                subjects.status(service),
                status_pb2.StatusRequest(),
                status_pb2.ServiceStatus,
                timeout_s=5,
            )
        trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        await bus.close()
    assert reply.service == service and reply.serving
    # The service logged its handling of our request (JSON, debug level) under our trace id.
    handled = await eventually(
        lambda: [
            line
            for line in _log_lines(suite[service].log_file)
            if line.get("event") == "status requested" and line.get("trace_id") == trace_id
        ],
        timeout_s=5,
        what=f"a log line of {service} that carries trace {trace_id}",
    )
    # The service logged inside a span of its own, a child of our "send" span.
    ours = {
        format(s.context.span_id, "016x")
        for s in spans.get_finished_spans()
        if format(s.context.trace_id, "032x") == trace_id
    }
    assert len(ours) == 2  # "caller" and "send ..." were both recorded here
    assert handled[0]["span_id"] not in ours


def test_sigterm_drains_and_exits_zero(shared_nats: NatsLike, tmp_path: Path) -> None:
    (proc,) = asyncio.run(start_services(["security"], nats_url=shared_nats.url, log_dir=tmp_path))
    started = time.monotonic()
    assert proc.stop(timeout_s=15) == 0
    assert time.monotonic() - started < 10
    events = [line.get("event") for line in _log_lines(proc.log_file)]
    assert events[-3:] == ["draining", "stopped", "exit"]
