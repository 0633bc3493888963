"""Conversations over WebSocket `/ws` and gRPC `Converse`: what only these two do (a resend on
a new session, the assistant, routing rules, authentication, a stream's end) and the details
of their frames. What every transport shares is `test_conversation_behaviour.py`.

Real processes: nats-server, security, inference, taskstore and the gateway
(with the assistant answering from a one-passage knowledge base).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import grpc
import pytest
from support.suite_stack import (
    TEXT_MODEL,
    Stack,
    assistant_args,
    bearer,
    one_passage_knowledge,
    start_stack,
    text_envelope,
)

from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ANSWER = "Offline messages wait in the taskstore until a model can answer them."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("conversations"), taskstores=1)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> tuple[str, str]:
    """(WebSocket URL, gRPC target) of a gateway whose assistant knows ANSWER."""
    knowledge = one_passage_knowledge(stack.folder, ANSWER)
    rules = stack.folder / "rules.yaml"
    rules.write_text(
        '- match: {channel: websocket, prefix: "/ask"}\n  to: {pipeline: assistant}\n'
        f'- match: {{model: "text-embedding-*"}}\n  to: {{model: {TEXT_MODEL}}}\n',
        encoding="utf-8",
    )
    proc, port = stack.start_gateway("--routing-rules", str(rules), *assistant_args(knowledge))
    return f"ws://127.0.0.1:{port}/ws", proc.target


def _token(stack: Stack, sub: str = "alice") -> str:
    return stack.token("infer:*", "tasks:read", "tasks:write", sub=sub)


class Client:
    """A WebSocket client that keeps every frame it receives, by type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def send(self, **frame: Any) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def next(self, kind: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """The first frame of `kind` not taken yet (frames of other kinds wait their turn)."""
        async with asyncio.timeout(timeout_s):
            while True:
                for i, frame in enumerate(self.frames):
                    if frame["type"] == kind:
                        return self.frames.pop(i)
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"the connection ended: {message.type!r}")
                self.frames.append(json.loads(message.data))

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Frames not taken yet and those that arrive within `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    message = await self.ws.receive()
                    self.frames.append(json.loads(message.data))
        except TimeoutError:
            pass
        got, self.frames = self.frames, []
        return got


@asynccontextmanager
async def connect(url: str, token: str | None = None, **hello: Any) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        client = Client(ws)
        if token is not None:
            await client.send(type="authenticate", token=token, **hello)
        yield client


async def test_a_message_gets_an_ack_then_its_result(
    stack: Stack, gateway: tuple[str, str]
) -> None:
    url, _ = gateway
    async with connect(url, _token(stack)) as client:
        ready = await client.next("ready")
        await client.send(type="send", id="m1", model=TEXT_MODEL, text="hello there")
        ack = await client.next("ack")
        assert not client.frames  # no result came before its ack
        result = await client.next("result")
    assert ready["conversation"] and ready["after_sequence"] == 0
    assert ack["id"] == "m1" and len(ack["task_id"]) == 32
    task = result["task"]
    assert task["id"] == ack["task_id"] and task["status"] == "completed"
    assert task["conversation"] == ready["conversation"]
    assert task["result"]["backend"] == "local"
    assert task["result"]["outputs"][0]["type"] == "tensor"
    assert result["sequence"] > 0


async def test_the_assistant_answers_over_websocket(stack: Stack, gateway: tuple[str, str]) -> None:
    url, _ = gateway
    async with connect(url, _token(stack)) as client:
        await client.next("ready")
        await client.send(type="send", model="edgegate-assistant", text="where do messages wait?")
        result = await client.next("result")
    answer = result["task"]["result"]
    assert answer["outputs"] == [{"type": "text", "text": ANSWER}]
    assert answer["metadata"]["source"] == "faq.md#1" and "score" in answer["metadata"]


async def test_a_resend_after_a_lost_ack_gets_the_earlier_result_at_once(
    stack: Stack, gateway: tuple[str, str]
) -> None:
    """The first try finished; the client never saw it and sends again on a new session."""
    url, target = gateway
    key = f"lost-ack-{uuid.uuid4().hex[:8]}"
    async with connect(url, _token(stack)) as client:
        await client.next("ready")
        await client.send(type="send", model=TEXT_MODEL, text="once", idempotency_key=key)
        first = await client.next("result")
    async with connect(url, _token(stack)) as client:
        await client.next("ready")
        await client.send(type="send", model=TEXT_MODEL, text="once", idempotency_key=key)
        ack = await client.next("ack")
        again = await client.next("result")
        later = await client.quiet(1.0)
    assert ack["task_id"] == first["task"]["id"] == again["task"]["id"]
    assert again["sequence"] == 0 and not [f for f in later if f["type"] == "result"]
    # Converse: the same resend ends the stream (it does not wait for a result already out).
    envelope = text_envelope("once", key=key)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        call = stub.Converse(
            _converse_requests(gateway_pb2.ConverseRequest(envelope=envelope)),
            metadata=bearer(_token(stack)),
        )
        responses = await asyncio.wait_for(_all(call), timeout=20)
    replies = [r for r in responses if r.WhichOneof("kind") == "reply"]
    assert [(r.sequence, r.reply.task_id) for r in replies] == [(0, first["task"]["id"])]


async def _all(call: Any) -> list[gateway_pb2.ConverseResponse]:
    return [response async for response in call]


async def test_bad_frames_get_error_frames_and_the_session_goes_on(
    stack: Stack, gateway: tuple[str, str]
) -> None:
    url, _ = gateway
    async with connect(url, _token(stack)) as client:
        await client.next("ready")
        await client.ws.send_str("{not json")
        assert (await client.next("error"))["code"] == "INVALID_ARGUMENT"
        await client.ws.send_bytes(b"\x00\x01")
        assert "JSON text" in (await client.next("error"))["message"]
        await client.send(type="launch", id="x")
        assert (await client.next("error"))["id"] == "x"
        await client.send(type="send", id="no-text", model=TEXT_MODEL)
        refused = await client.next("error")
        assert refused["id"] == "no-text" and "'text'" in refused["message"]
        await client.send(type="send", id="bad-priority", model=TEXT_MODEL, text="a", priority=9)
        assert (await client.next("error"))["id"] == "bad-priority"
        await client.send(type="ping", id="p")
        assert (await client.next("pong"))["id"] == "p"


@pytest.mark.parametrize(
    ("hello", "code"),
    [
        ({"type": "send", "text": "hi"}, "UNAUTHENTICATED"),
        ({"type": "authenticate", "token": "not-a-token"}, "UNAUTHENTICATED"),
        ({"type": "authenticate"}, "UNAUTHENTICATED"),
        ({"type": "authenticate", "token": "x", "after_sequence": -1}, "INVALID_ARGUMENT"),
    ],
)
async def test_a_session_must_authenticate_first(
    gateway: tuple[str, str], hello: dict[str, Any], code: str
) -> None:
    url, _ = gateway
    async with connect(url) as client:
        await client.send(**hello)
        assert (await client.next("error"))["code"] == code
        closing = await client.ws.receive()
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_routing_rules_send_a_command_to_the_assistant_and_alias_a_model(
    stack: Stack, gateway: tuple[str, str]
) -> None:
    url, target = gateway
    async with connect(url, _token(stack)) as client:
        await client.next("ready")
        await client.send(type="send", model=TEXT_MODEL, text="/ask where do messages wait?")
        asked = (await client.next("result"))["task"]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        aliased = await stub.Send(
            gateway_pb2.SendRequest(envelope=text_envelope("hi", model="text-embedding-3-small")),
            metadata=bearer(_token(stack)),
        )
    assert asked["model"] == "edgegate-assistant"
    assert asked["result"]["outputs"] == [{"type": "text", "text": ANSWER}]
    assert aliased.reply.backend == env.BACKEND_LOCAL and aliased.reply.model == TEXT_MODEL


def _converse_requests(
    *items: gateway_pb2.ConverseRequest,
) -> Iterator[gateway_pb2.ConverseRequest]:
    yield from items


async def test_converse_acks_and_answers_every_message_then_ends(
    stack: Stack, gateway: tuple[str, str]
) -> None:
    _, target = gateway
    good = [text_envelope(f"message {i}") for i in range(3)]
    bad = env.Envelope(route=env.RouteHint(model=TEXT_MODEL))  # no parts
    requests = [gateway_pb2.ConverseRequest(envelope=e) for e in [*good, bad]]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        call = stub.Converse(_converse_requests(*requests), metadata=bearer(_token(stack)))
        responses = [r async for r in call]
    acks = [r.ack for r in responses if r.WhichOneof("kind") == "ack"]
    replies = [r for r in responses if r.WhichOneof("kind") == "reply"]
    refused = [r.reply for r in replies if r.reply.error.code]
    answered = [r for r in replies if not r.reply.error.code]
    assert len(acks) == 3 and len({a.task_id for a in acks}) == 3
    assert len({a.conversation for a in acks}) == 1
    assert {r.reply.task_id for r in answered} == {a.task_id for a in acks}
    assert all(r.sequence > 0 and r.reply.backend == env.BACKEND_LOCAL for r in answered)
    assert [r.error.code for r in refused] == [env.ERROR_CODE_INVALID_ARGUMENT]


async def test_converse_without_a_token_is_unauthenticated(gateway: tuple[str, str]) -> None:
    _, target = gateway
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        # Nothing written: a write racing the server's refusal fails in grpc's core (INTERNAL).
        call = stub.Converse()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def gateway_without_assistant(stack: Stack) -> str:
    """The WebSocket URL of a gateway with no knowledge folder."""
    _, port = stack.start_gateway()
    return f"ws://127.0.0.1:{port}/ws"


async def test_a_gateway_without_an_assistant_says_so(
    stack: Stack, gateway_without_assistant: str
) -> None:
    """No knowledge folder: a message for the assistant is NOT_FOUND, and the session goes on."""
    async with connect(gateway_without_assistant, _token(stack)) as client:
        await client.next("ready")
        await client.send(type="send", id="q", model="edgegate-assistant", text="anyone there?")
        error = await client.next("error")
        await client.send(type="ping", id="p")
        await client.next("pong")
    assert error["id"] == "q" and error["code"] == "NOT_FOUND"
    assert "no assistant" in error["message"]
