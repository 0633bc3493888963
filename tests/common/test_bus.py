"""The NATS wrapper against a real nats-server: replies, typed errors, deadlines, traces."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import nats.errors
import pytest
import structlog
from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from support.certs import make_certs
from support.harness import NatsLike, raw_request
from support.waiting import eventually

from edgegate_common.bus import Bus, RequestContext, client_tls_context
from edgegate_common.errors import (
    DeadlineExceeded,
    Internal,
    NoResponders,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from edgegate_common.local import LocalNatsServer, free_port
from edgegate_common.metrics import BusMetrics
from edgegate_protos.common.v1 import status_pb2

Status = status_pb2.ServiceStatus
Ask = status_pb2.StatusRequest


async def test_request_reply_carries_protobuf_both_ways(bus: Bus) -> None:
    async def answer(_: status_pb2.StatusRequest, ctx: RequestContext) -> status_pb2.ServiceStatus:
        return Status(service="echo", instance=ctx.subject, serving=True)

    await bus.serve("test.bus.echo", Ask, answer)
    reply = await bus.request("test.bus.echo", Ask(), Status, timeout_s=2)
    assert reply == Status(service="echo", instance="test.bus.echo", serving=True)


async def test_a_subject_nobody_serves_fails_fast_with_a_typed_error(bus: Bus) -> None:
    started = time.monotonic()
    with pytest.raises(
        NoResponders, match=r"no service is listening on edgegate\.nobody\.v1\.ping"
    ):
        await bus.request("edgegate.nobody.v1.ping", Ask(), Status, timeout_s=10)
    assert time.monotonic() - started < 1.0  # an answer from the server, not a timeout


async def test_remote_domain_errors_come_back_typed(bus: Bus) -> None:
    async def missing(_: Ask, __: RequestContext) -> Status:
        raise NotFound("model 'm' version '7' is not loaded")

    await bus.serve("test.bus.missing", Ask, missing)
    with pytest.raises(NotFound, match="model 'm' version '7' is not loaded"):
        await bus.request("test.bus.missing", Ask(), Status, timeout_s=2)


async def test_unexpected_handler_failures_are_internal_without_details(bus: Bus) -> None:
    async def broken(_: Ask, __: RequestContext) -> Status:
        raise RuntimeError("secret connection string")

    await bus.serve("test.bus.broken", Ask, broken)
    with pytest.raises(Internal) as info:
        await bus.request("test.bus.broken", Ask(), Status, timeout_s=2)
    assert "secret" not in info.value.message


async def test_garbage_bytes_get_invalid_argument(bus: Bus) -> None:
    async def never(_: Status, __: RequestContext) -> Status:
        raise AssertionError("handler must not run on undecodable input")

    await bus.serve("test.bus.strict", Status, never)
    reply = await raw_request(bus, "test.bus.strict", b"\xff\xff\xff", timeout_s=2)
    assert reply.headers is not None
    assert reply.headers["Edgegate-Error-Code"] == "INVALID_ARGUMENT"
    assert "edgegate.common.v1.ServiceStatus" in reply.headers["Edgegate-Error-Message"]


async def test_the_deadline_reaches_the_handler_and_stops_slow_work(bus: Bus) -> None:
    seen: list[float | None] = []
    cancelled = asyncio.Event()

    async def slow(_: Ask, ctx: RequestContext) -> Status:
        seen.append(ctx.remaining_s())
        try:
            await asyncio.sleep(5)  # the behaviour: work that outlives the deadline
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Status()

    await bus.serve("test.bus.slow", Ask, slow)
    with pytest.raises(DeadlineExceeded, match=r"no reply on test\.bus\.slow within 0\.3s"):
        await bus.request("test.bus.slow", Ask(), Status, timeout_s=0.3)
    assert seen and seen[0] is not None and 0 < seen[0] <= 0.3
    await asyncio.wait_for(cancelled.wait(), timeout=0.5)  # stopped at its deadline, not at 5 s


async def test_a_reply_too_big_for_nats_becomes_resource_exhausted(bus: Bus) -> None:
    async def huge(_: Ask, __: RequestContext) -> Status:
        return Status(instance="x" * (bus.max_payload + 1))

    await bus.serve("test.bus.huge", Ask, huge)
    with pytest.raises(ResourceExhausted, match="exceeds the NATS max payload"):
        await bus.request("test.bus.huge", Ask(), Status, timeout_s=2)


async def _request_in_flight(server: Bus, client: Bus, subject: str) -> asyncio.Future[Status]:
    """Serve `subject` slowly on `server`; `client`'s request, once its handler is running."""
    started = asyncio.Event()

    async def slowish(_: Ask, __: RequestContext) -> Status:
        started.set()
        await asyncio.sleep(0.3)  # the behaviour: still working when close() begins
        return Status(serving=True)

    await server.serve(subject, Ask, slowish)
    pending = asyncio.ensure_future(client.request(subject, Ask(), Status, timeout_s=3))
    await started.wait()
    return pending


async def test_close_finishes_requests_in_flight(shared_nats: NatsLike) -> None:
    server = await Bus.connect(servers=[shared_nats.url], name="closing", connect_timeout_s=5)
    client = await Bus.connect(servers=[shared_nats.url], name="client", connect_timeout_s=5)
    try:
        pending = await _request_in_flight(server, client, "test.bus.closing")
        await server.close()
        assert (await pending).serving  # answered although close() began while it ran
        with pytest.raises(NoResponders):  # and nothing listens any more
            await client.request("test.bus.closing", Ask(), Status, timeout_s=3)
    finally:
        await client.close()


async def test_stop_serving_finishes_requests_and_keeps_the_connection(
    shared_nats: NatsLike,
) -> None:
    server = await Bus.connect(servers=[shared_nats.url], name="stopping", connect_timeout_s=5)
    client = await Bus.connect(servers=[shared_nats.url], name="client", connect_timeout_s=5)
    try:
        pending = await _request_in_flight(server, client, "test.bus.stopping")
        await server.stop_serving()
        assert (await pending).serving  # answered although stop_serving() began while it ran
        with pytest.raises(NoResponders):
            await client.request("test.bus.stopping", Ask(), Status, timeout_s=3)
        # Still connected: what handlers used (an audit log, say) can flush now.
        # A PING/PONG round trip: the connection still writes and reads.
        assert server.connected
        await server.flush(timeout_s=5)
    finally:
        await server.close()
        await client.close()


async def test_many_requests_are_handled_concurrently(bus: Bus) -> None:
    async def pause(_: Ask, __: RequestContext) -> Status:
        await asyncio.sleep(0.2)  # the behaviour: handlers that wait, concurrently
        return Status(serving=True)

    await bus.serve("test.bus.pause", Ask, pause)
    started = time.monotonic()
    replies = await asyncio.gather(
        *(bus.request("test.bus.pause", Ask(), Status) for _ in range(20))
    )
    assert all(r.serving for r in replies)
    assert time.monotonic() - started < 1.5  # 20 x 0.2 s would be 4 s one at a time


async def test_one_trace_spans_caller_and_handler(bus: Bus, spans: InMemorySpanExporter) -> None:
    async def answer(_: Ask, __: RequestContext) -> Status:
        return Status()

    await bus.serve("test.bus.traced", Ask, answer)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        await bus.request("test.bus.traced", Ask(), Status, timeout_s=2)

    def both_spans() -> dict[str, ReadableSpan] | None:
        by_name = {s.name: s for s in spans.get_finished_spans()}
        wanted = {"process test.bus.traced", "send test.bus.traced"}
        return by_name if wanted <= by_name.keys() else None

    by_name = await eventually(both_spans, timeout_s=5, what="the caller's and handler's spans")
    server, client = by_name["process test.bus.traced"], by_name["send test.bus.traced"]
    trace_id = caller.get_span_context().trace_id
    assert server.context.trace_id == client.context.trace_id == trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id


async def test_requests_fail_fast_while_disconnected(nats_server: NatsLike) -> None:
    bus = await Bus.connect(servers=[nats_server.url], name="test", connect_timeout_s=5)
    try:
        nats_server.kill()
        await eventually(lambda: not bus.connected, timeout_s=5, what="the bus to notice")
        with pytest.raises(Unavailable, match="not connected to NATS"):
            await bus.request("test.bus.any", Ask(), Status, timeout_s=5)
    finally:
        await bus.close()


async def test_a_best_effort_publish_reaches_subscribers(bus: Bus) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def receive(msg: Msg) -> None:
        await received.put(msg.data)

    subscription = await bus.subscribe("test.bus.events", cb=receive)
    await bus.flush()
    sent = Status(service="events", serving=True)
    assert await bus.publish_best_effort("test.bus.events", sent, kind="test_event")
    assert Status.FromString(await asyncio.wait_for(received.get(), timeout=2)) == sent
    await bus.unsubscribe(subscription, drain=False)
    await bus.unsubscribe(subscription, drain=False)  # again: nothing raises


def _failures(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value("edgegate_nats_publish_failures_total", {"kind": kind})


async def test_a_best_effort_publish_on_a_closed_bus_is_logged_and_counted(
    shared_nats: NatsLike,
) -> None:
    registry = CollectorRegistry()
    bus = await Bus.connect(
        servers=[shared_nats.url], name="test", connect_timeout_s=5, metrics=BusMetrics(registry)
    )
    await bus.close()
    with structlog.testing.capture_logs() as logs:
        sent = await bus.publish_best_effort(
            "edgegate.gateway.v1.breaker", Status(), kind="breaker_event"
        )
    assert sent is False  # and no exception
    [line] = [entry for entry in logs if entry["event"] == "nats publish failed"]
    assert line["log_level"] == "warning"
    assert line["subject"] == "edgegate.gateway.v1.breaker"
    assert line["kind"] == "breaker_event"
    assert "ConnectionClosedError" in line["error"]
    assert _failures(registry, "breaker_event") == 1
    with pytest.raises(nats.errors.ConnectionClosedError):  # the plain publish does raise
        await bus.publish("edgegate.gateway.v1.breaker", b"")


async def test_a_best_effort_publish_too_big_for_nats_is_counted_once_per_message(
    shared_nats: NatsLike,
) -> None:
    registry = CollectorRegistry()
    bus = await Bus.connect(
        servers=[shared_nats.url], name="test", connect_timeout_s=5, metrics=BusMetrics(registry)
    )
    try:
        huge = b"x" * (bus.max_payload + 1)
        for _ in range(2):
            assert not await bus.publish_best_effort("test.bus.huge", huge, kind="snapshot")
        assert _failures(registry, "snapshot") == 2
        assert bus.connected  # the connection is fine; only those messages were not sent
        assert await bus.publish_best_effort("test.bus.small", b"ok", kind="snapshot")
        assert _failures(registry, "snapshot") == 2
    finally:
        await bus.close()


async def test_connect_gives_up_with_a_clear_error() -> None:
    with pytest.raises(Unavailable, match="cannot reach NATS"):
        await Bus.connect(
            servers=[f"nats://127.0.0.1:{free_port()}"], name="test", connect_timeout_s=0.5
        )


async def test_bus_talks_tls13_to_a_tls_nats_server(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    tls_args = ("--tls", "--tlscert", str(certs.cert), "--tlskey", str(certs.key))
    with LocalNatsServer(store_dir=tmp_path / "nats", extra_args=tls_args) as server:
        ctx = client_tls_context(ca=certs.ca)
        assert ctx is not None and ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        bus = await Bus.connect(servers=[server.url], name="test", connect_timeout_s=5, tls=ctx)
        try:
            account = await bus.js.account_info()  # a round trip over TLS
            assert account.limits is not None
        finally:
            await bus.close()
        with pytest.raises(Unavailable, match="cannot reach NATS"):
            await Bus.connect(servers=[server.url], name="test", connect_timeout_s=1)
