"""The gRPC bootstrap: domain errors → status codes, traces, metrics, TLS 1.3 only."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from support.certs import make_certs
from support.waiting import eventually

from edgegate_common import telemetry
from edgegate_common.errors import NotFound, ResourceExhausted, Unavailable
from edgegate_common.local import free_port, health_status
from edgegate_common.metrics import RpcMetrics
from edgegate_common.rpc import GrpcServer
from edgegate_common.rpc.status import DETAILS_KEY, error_details
from edgegate_gateway.config import GatewaySettings
from edgegate_protos.common.v1 import envelope_pb2
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name


class Behaviours(gateway_pb2_grpc.GatewayServicer):
    """Send answers according to the envelope id; Converse acks once, then runs out of room."""

    async def Send(
        self, request: gateway_pb2.SendRequest, context: object
    ) -> gateway_pb2.SendResponse:
        match request.envelope.id:
            case "missing":
                raise NotFound("no route for channel 'fax'")
            case "crash":
                raise RuntimeError("password=hunter2")
            case "slow":
                await asyncio.sleep(5)  # the behaviour: work that outlives the caller's deadline
            case "busy":
                raise ResourceExhausted("queue full", details={"retry_after_s": "0.25"})
            case "away":
                raise Unavailable("the taskstore is not answering")
        return gateway_pb2.SendResponse(reply=envelope_pb2.Reply(envelope_id=request.envelope.id))

    async def Converse(
        self, request_iterator: AsyncIterator[gateway_pb2.ConverseRequest], context: object
    ) -> AsyncIterator[gateway_pb2.ConverseResponse]:
        async for _ in request_iterator:
            yield gateway_pb2.ConverseResponse(sequence=1, ack=gateway_pb2.Ack(envelope_id="e1"))
            raise ResourceExhausted("conversation queue is full")


class WriteStyle(gateway_pb2_grpc.GatewayServicer):
    """Converse that sends with context.write() instead of yielding, as grpc.aio allows."""

    async def Converse(
        self, request_iterator: AsyncIterator[gateway_pb2.ConverseRequest], context: Any
    ) -> None:
        async for request in request_iterator:
            ack = gateway_pb2.Ack(envelope_id=request.envelope.id)
            await context.write(gateway_pb2.ConverseResponse(sequence=1, ack=ack))
        raise ResourceExhausted("written, then full")


async def _serve(
    tmp_path: Path, servicer: gateway_pb2_grpc.GatewayServicer | None = None, **tls: Path
) -> tuple[GrpcServer, CollectorRegistry]:
    registry = CollectorRegistry()
    settings = GatewaySettings(grpc_host="127.0.0.1", grpc_port=free_port(), metrics_port=0, **tls)
    server = GrpcServer(settings, metrics=RpcMetrics(registry))
    server.add(
        gateway_pb2_grpc.add_GatewayServicer_to_server,
        servicer or Behaviours(),
        service_name=GATEWAY,
    )
    await server.start()
    await server.set_serving(True)
    return server, registry


@pytest.fixture
async def plain(
    tmp_path: Path,
) -> AsyncIterator[tuple[gateway_pb2_grpc.GatewayStub, CollectorRegistry]]:
    server, registry = await _serve(tmp_path)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield gateway_pb2_grpc.GatewayStub(channel), registry
    await server.stop(grace_s=1)


async def _converse(
    stub: gateway_pb2_grpc.GatewayStub, envelope_id: str
) -> tuple[list[gateway_pb2.ConverseResponse], grpc.aio.AioRpcError]:
    """Send one envelope on Converse; return what came back before the call failed."""
    request = gateway_pb2.ConverseRequest(envelope=envelope_pb2.Envelope(id=envelope_id))
    call = stub.Converse(iter([request]))
    received = []
    try:
        async for response in call:
            received.append(response)
    except grpc.aio.AioRpcError as error:
        return received, error
    raise AssertionError(f"Converse ended without an error after {received}")


def _send(envelope_id: str) -> gateway_pb2.SendRequest:
    return gateway_pb2.SendRequest(envelope=envelope_pb2.Envelope(id=envelope_id))


async def test_domain_errors_become_their_status_code(
    plain: tuple[gateway_pb2_grpc.GatewayStub, CollectorRegistry],
) -> None:
    stub, registry = plain
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Send(_send("missing"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "no route for channel 'fax'"
    labels = {"grpc_service": GATEWAY, "grpc_method": "Send", "grpc_code": "NOT_FOUND"}
    assert registry.get_sample_value("edgegate_grpc_server_handled_total", labels) == 1


def _retry_delay_s(error: grpc.aio.AioRpcError) -> float | None:
    """The `google.rpc.RetryInfo` delay in the error's rich status, as clients read it."""
    for key, value in error.trailing_metadata() or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                retry = error_details_pb2.RetryInfo()
                if detail.Unpack(retry):
                    return retry.retry_delay.ToNanoseconds() / 1e9
    return None


@pytest.mark.parametrize(
    ("envelope_id", "code", "delay_s"),
    [
        ("busy", grpc.StatusCode.RESOURCE_EXHAUSTED, 0.25),  # the refusing code's own wait
        ("away", grpc.StatusCode.UNAVAILABLE, 2.0),  # the default for its code
        ("missing", grpc.StatusCode.NOT_FOUND, None),  # retrying cannot help
    ],
)
async def test_refusals_that_may_pass_later_say_when_to_retry(
    plain: tuple[gateway_pb2_grpc.GatewayStub, CollectorRegistry],
    envelope_id: str,
    code: grpc.StatusCode,
    delay_s: float | None,
) -> None:
    stub, _ = plain
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Send(_send(envelope_id))
    assert info.value.code() == code
    assert _retry_delay_s(info.value) == delay_s
    if delay_s is not None:
        assert float(error_details(info.value.trailing_metadata())["retry_after_s"]) == delay_s


async def test_bytes_that_do_not_parse_are_invalid_argument_naming_the_message(
    tmp_path: Path,
) -> None:
    server, _ = await _serve(tmp_path)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        send = channel.unary_unary(
            f"/{GATEWAY}/Send", request_serializer=bytes, response_deserializer=bytes
        )
        for garbage in (b"\xff\xff\xff\xff", b"\x0a\x03\x0a\x01\xc3"):  # junk; bad UTF-8
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await send(garbage)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == (
                "the request is not a valid edgegate.gateway.v1.SendRequest message"
            )
        converse = channel.stream_stream(
            f"/{GATEWAY}/Converse", request_serializer=bytes, response_deserializer=bytes
        )
        call = converse(iter([b"\xff\xff"]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await server.stop(grace_s=1)


async def test_unexpected_errors_are_internal_and_leak_nothing(
    plain: tuple[gateway_pb2_grpc.GatewayStub, CollectorRegistry],
) -> None:
    stub, _ = plain
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Send(_send("crash"))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (info.value.details() or "")


async def test_streams_map_errors_after_their_last_message(
    plain: tuple[gateway_pb2_grpc.GatewayStub, CollectorRegistry],
) -> None:
    stub, _ = plain
    received, error = await _converse(stub, "e1")
    assert [r.ack.envelope_id for r in received] == ["e1"]
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_traceparent_metadata_continues_the_callers_trace(
    plain: tuple[gateway_pb2_grpc.GatewayStub, CollectorRegistry], spans: InMemorySpanExporter
) -> None:
    stub, _ = plain
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        metadata: dict[str, str] = {}
        telemetry.inject(metadata)
        await stub.Send(_send("ok"), metadata=tuple(metadata.items()))
    caller_ctx = caller.get_span_context()

    def server_span_of_the_trace() -> ReadableSpan | None:
        finished = spans.get_finished_spans()
        in_trace = [s for s in finished if s.context.trace_id == caller_ctx.trace_id]
        return next((s for s in in_trace if s.name == f"{GATEWAY}/Send"), None)

    server_span = await eventually(server_span_of_the_trace, timeout_s=5, what="the server span")
    assert server_span.parent is not None and server_span.parent.span_id == caller_ctx.span_id


async def test_tls_serves_tls13_and_refuses_tls12(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    server, _ = await _serve(tmp_path, grpc_tls_cert=certs.cert, grpc_tls_key=certs.key)
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
        async with grpc.aio.secure_channel(f"localhost:{server.port}", credentials) as channel:
            reply = await gateway_pb2_grpc.GatewayStub(channel).Send(_send("ok"), timeout=5)
        assert reply.reply.envelope_id == "ok"

        # The same raw client handshakes when it may use TLS 1.3, and fails when capped at 1.2.
        client = ssl.create_default_context(cafile=str(certs.ca))
        _, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=client, server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        writer.close()
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=client, server_hostname="localhost"
            )
        # Plain-text gRPC against the TLS port is refused too.
        assert await health_status(f"127.0.0.1:{server.port}") == "UNREACHABLE"
    finally:
        await server.stop(grace_s=1)


async def test_mtls_refuses_a_client_without_a_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    server, _ = await _serve(
        tmp_path,
        grpc_tls_cert=certs.cert,
        grpc_tls_key=certs.key,
        grpc_tls_client_ca=certs.ca,
    )
    target = f"localhost:{server.port}"
    ca = certs.ca.read_bytes()
    try:
        anonymous = grpc.ssl_channel_credentials(root_certificates=ca)
        async with grpc.aio.secure_channel(target, anonymous) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gateway_pb2_grpc.GatewayStub(channel).Send(_send("no cert"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # A certificate the client CA signed (the test CA's one leaf serves as both).
        known = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=certs.key.read_bytes(),
            certificate_chain=certs.cert.read_bytes(),
        )
        async with grpc.aio.secure_channel(target, known) as channel:
            reply = await gateway_pb2_grpc.GatewayStub(channel).Send(_send("cert"), timeout=5)
        assert reply.reply.envelope_id == "cert"
    finally:
        await server.stop(grace_s=1)


async def test_drain_reports_not_serving(tmp_path: Path) -> None:
    server, _ = await _serve(tmp_path)
    target = f"127.0.0.1:{server.port}"
    assert await health_status(target, service=GATEWAY) == "SERVING"
    await server.health.enter_graceful_shutdown()
    assert await health_status(target, service=GATEWAY) == "NOT_SERVING"
    await server.stop(grace_s=1)


async def test_write_style_streams_work_and_map_errors(tmp_path: Path) -> None:
    server, _ = await _serve(tmp_path, WriteStyle())
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            received, error = await _converse(gateway_pb2_grpc.GatewayStub(channel), "w1")
        assert [r.ack.envelope_id for r in received] == ["w1"]
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await server.stop(grace_s=1)


async def test_calls_the_client_abandons_are_counted_as_cancelled(
    plain: tuple[gateway_pb2_grpc.GatewayStub, CollectorRegistry],
) -> None:
    stub, registry = plain
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Send(_send("slow"), timeout=0.2)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    def count(code: str) -> float | None:
        labels = {"grpc_service": GATEWAY, "grpc_method": "Send", "grpc_code": code}
        return registry.get_sample_value("edgegate_grpc_server_handled_total", labels)

    await eventually(lambda: count("CANCELLED"), timeout_s=5, what="the cancelled call counted")
    assert count("CANCELLED") == 1
    assert count("OK") is None


async def test_tls_client_sees_the_end_when_grpc_closes_its_connection(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    server, _ = await _serve(tmp_path, grpc_tls_cert=certs.cert, grpc_tls_key=certs.key)
    try:
        client = ssl.create_default_context(cafile=str(certs.ca))
        client.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=client, server_hostname="localhost"
        )
        writer.write(b"this is not an HTTP/2 preface\r\n\r\n")  # gRPC drops the connection
        # The relay must pass that on (TLS has no half-close): read until EOF.
        async with asyncio.timeout(3):
            while await reader.read(65536):
                pass
        writer.close()
    finally:
        await server.stop(grace_s=0.5)
