"""Breaker and cloud fallback end to end: injected inference failures open it, the cloud
stand-in (speaking OpenAI's embeddings wire format) answers, and the breaker closes again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from support.standins import HttpStandIn
from support.suite_stack import Stack, start_stack
from support.waiting import wait_until

from edgegate_common import subjects
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
CLOUD_DIM = 5


class CloudStandIn(HttpStandIn):
    """An OpenAI-compatible `/v1/embeddings` that records what it was sent."""

    def __init__(self) -> None:
        super().__init__({"/v1/embeddings": self._embeddings})
        self.requests: list[dict[str, Any]] = []

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("Authorization")})
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.5] * CLOUD_DIM}
            for i in range(len(texts))
        ]
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )


@pytest.fixture(scope="module")
def cloud() -> Iterator[CloudStandIn]:
    stand_in = CloudStandIn()
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("gateway-fallback"), taskstores=0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def base_url(stack: Stack, cloud: CloudStandIn) -> str:
    _, port = stack.start_gateway(
        "--fallback-url", f"{cloud.url}/v1",
        "--fallback-api-key", "cloud-secret",
        "--fallback-model", "text-embedding-3-small",
        "--inference-timeout-s", "0.5",
        "--breaker-min-calls", "3",
        "--breaker-open-s", "1",
        "--breaker-probes", "1",
    )  # fmt: skip
    return f"http://127.0.0.1:{port}/v1"


def _embed(
    base: str, token: str, text: str = "hello"
) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(
        f"{base}/embeddings",
        data=json.dumps({"model": "toy_text", "input": text}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:  # it holds the connection
            return refused.code, dict(refused.headers), json.loads(refused.read())


def test_the_breaker_opens_on_failures_serves_from_the_cloud_and_closes_again(
    stack: Stack, base_url: str, cloud: CloudStandIn
) -> None:
    token = stack.token("infer:*")
    events: list[gpb.BreakerEvent] = []
    listening, done = threading.Event(), threading.Event()
    listener = threading.Thread(target=_listen, args=(stack, events, listening, done))
    listener.start()
    assert listening.wait(10), "the breaker events listener never subscribed"
    status, headers, _ = _embed(base_url, token)
    assert (status, headers["Edgegate-Backend"]) == (200, "local")
    assert stack.inference is not None and stack.inference.pid is not None
    os.kill(stack.inference.pid, signal.SIGSTOP)  # inference stops answering: timeouts
    try:
        answers = [_embed(base_url, token, f"during the outage {i}") for i in range(3)]
        assert all(s == 200 and h["Edgegate-Backend"] == "fallback" for s, h, _ in answers)
        assert len(answers[0][2]["data"][0]["embedding"]) == CLOUD_DIM
        started = time.monotonic()
        status, headers, _ = _embed(base_url, token, "breaker open")
        assert (status, headers["Edgegate-Backend"]) == (200, "fallback")
        assert time.monotonic() - started < 0.4  # open: straight to the cloud, no timeout
    finally:
        os.kill(stack.inference.pid, signal.SIGCONT)
    time.sleep(1.2)  # the behaviour: the open time runs out, so the next call is a probe
    status, headers, _ = _embed(base_url, token, "probe")
    assert (status, headers["Edgegate-Backend"]) == (200, "local")
    assert cloud.requests[0]["auth"] == "Bearer cloud-secret"
    assert cloud.requests[0]["body"]["model"] == "text-embedding-3-small"
    wait_until(lambda: len(events) >= 3, timeout_s=5, what="the breaker closing again")
    done.set()
    listener.join(10)
    states = [(e.model, e.state) for e in events]
    assert states == [("toy_text", "open"), ("toy_text", "half_open"), ("toy_text", "closed")]
    assert "failure rate" in events[0].reason


def _listen(
    stack: Stack,
    events: list[gpb.BreakerEvent],
    listening: threading.Event,
    done: threading.Event,
) -> None:
    async def listen() -> None:
        async with stack.bus() as bus:

            async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
                events.append(gpb.BreakerEvent.FromString(msg.data))

            await bus.subscribe(subjects.GATEWAY_BREAKER_EVENTS, cb=on_event)
            await bus.flush()
            listening.set()
            await asyncio.to_thread(done.wait)

    asyncio.run(listen())


def test_client_errors_never_trip_the_breaker(stack: Stack, base_url: str) -> None:
    """Requests the model refuses as invalid are the caller's fault, however many."""
    import grpc

    from edgegate_protos.common.v1 import envelope_pb2 as env
    from edgegate_protos.gateway.v1 import gateway_pb2_grpc

    target = stack.gateways[-1].target
    token = stack.token("infer:*")
    bad = env.Envelope(route=env.RouteHint(model="toy_text"))
    bad.parts.add(tensor=env.Tensor(name="NOPE", datatype="FP32", shape=[1], raw_data=b"\0" * 4))

    async def send_bad() -> list[grpc.StatusCode]:
        codes = []
        async with grpc.aio.insecure_channel(target) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            for _ in range(6):
                try:
                    await stub.Send(
                        gpb.SendRequest(envelope=bad),
                        metadata=(("authorization", f"Bearer {token}"),),
                    )
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
        return codes

    assert asyncio.run(send_bad()) == [grpc.StatusCode.INVALID_ARGUMENT] * 6
    status, headers, _ = _embed(base_url, token, "still local")
    assert (status, headers["Edgegate-Backend"]) == (200, "local")


def test_a_remote_oip_server_is_the_fallback_for_a_model_served_nowhere_here(
    stack: Stack,
) -> None:
    """The remote OIP v2 server is a second edgegate inference service, reached over gRPC."""
    assert stack.inference is not None
    _, port = stack.start_gateway(
        "--fallback-protocol", "oip",
        "--fallback-url", stack.inference.target,
        "--fallback-model", "toy_text",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    token = stack.token("infer:*")
    request = urllib.request.Request(
        f"{base}/embeddings",
        data=json.dumps({"model": "remote-encoder", "input": ["hello", "world"]}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        remote, headers = json.loads(answer.read()), dict(answer.headers)
    status, local_headers, local = _embed(base, token, "hello")
    assert headers["Edgegate-Backend"] == "fallback"
    assert local_headers["Edgegate-Backend"] == "local" and status == 200
    assert [d["index"] for d in remote["data"]] == [0, 1]
    # The same model answered both ways: the same vector.
    assert remote["data"][0]["embedding"] == pytest.approx(local["data"][0]["embedding"], abs=1e-6)
