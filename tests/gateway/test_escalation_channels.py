"""A person's answer to an escalated question reaches an MQTT device and a gRPC `Converse`
client, exactly once, on the conversation that asked.

Real processes: Mosquitto, nats-server, security, inference, one taskstore and
one gateway whose assistant answers at a threshold nothing reaches, so every
question escalates. The answer is given as the console gives it: the
taskstore's `Answer`, with an admin token of the asker's tenant.
(WebSocket: tests/gateway/test_console.py.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiomqtt
import grpc
import openai
import pytest
from support.mqtt_broker import Mosquitto, gateway_subscribed
from support.suite_stack import (
    Stack,
    assistant_args,
    bearer,
    first_answer,
    one_passage_knowledge,
    start_stack,
)

from edgegate_gateway.assistant import ESCALATION_MODEL, NOT_FOUND
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
PREFIX = "edgegate/v1"
ASSISTANT = "edgegate-assistant"
KNOWN = "Hold the power button for ten seconds to reset the device."
FLEET_TENANT = "devices"
QUIET_S = 2.0  # after the answer came: long enough for a second copy to come too
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    stack: Stack
    broker_port: int
    grpc_target: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    broker = Mosquitto(tmp_path_factory.mktemp("escalation-mosquitto"))
    broker.start()
    stack = start_stack(tmp_path_factory.mktemp("escalation-channels"), taskstores=1)
    try:
        fleet = stack.token(
            "infer:*", "tasks:read", "tasks:write", tenant=FLEET_TENANT, sub="fleet"
        )
        proc, port = stack.start_gateway(
            *assistant_args(one_passage_knowledge(stack.folder, KNOWN), "0.999"),
            "--mqtt-host", "127.0.0.1",
            "--mqtt-port", str(broker.port),
            "--mqtt-credential", fleet,
        )  # fmt: skip
        probe = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key=stack.token("infer:*", sub="probe"),
            max_retries=0,
        )
        first_answer(probe)  # the knowledge base is embedded: the assistant answers
        asyncio.run(gateway_subscribed(broker.port, prefix=PREFIX, identifier="escalation-probe"))
        yield World(stack=stack, broker_port=broker.port, grpc_target=proc.target)
    finally:
        stack.stop()
        broker.stop()


async def _answer(world: World, task_id: str, text: str, *, tenant: str) -> tpb.Task:
    """Answer the escalation as the console does: `Answer`, by an admin of the tenant."""
    reply = env.Reply()
    reply.parts.add(text=text)
    reply.metadata["answered_by"] = "sre-alice"
    admin = world.stack.token("admin", tenant=tenant, sub="sre-alice")
    async with world.stack.stub() as taskstore:
        task: tpb.Task = await taskstore.Answer(  # type: ignore[misc]  # the stubs are sync
            tpb.AnswerRequest(id=task_id, answer=reply), metadata=bearer(admin), timeout=20
        )
    assert task.status == tpb.TASK_STATUS_COMPLETED
    assert task.envelope.route.model == ESCALATION_MODEL
    return task


class Inbox(Generic[T]):
    """What a client received, in order, as a background task reads it."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._arrived = asyncio.Event()

    def put(self, item: T) -> None:
        self.items.append(item)
        self._arrived.set()

    async def first(self, match: Callable[[T], bool], *, timeout_s: float = 30.0) -> T:
        """The first item `match(item)` accepts, waiting for it to come."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    found = next((i for i in self.items if match(i)), None)
                    if found is not None:
                        return found
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"nothing matching came in {timeout_s} s: {self.items}") from None


# MQTT


@asynccontextmanager
async def device(
    world: World, name: str
) -> AsyncIterator[tuple[aiomqtt.Client, Inbox[dict[str, Any]]]]:
    """A device subscribed to its reply topic, and the replies it got."""
    async with aiomqtt.Client("127.0.0.1", world.broker_port, identifier=f"dev-{name}") as client:
        await client.subscribe(f"{PREFIX}/{name}/reply", qos=1)
        inbox: Inbox[dict[str, Any]] = Inbox()

        async def listen() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                inbox.put(json.loads(message.payload))

        listening = asyncio.create_task(listen())
        try:
            yield client, inbox
        finally:
            listening.cancel()


async def test_an_answered_escalation_reaches_the_mqtt_device_once(world: World) -> None:
    name, answer = "kiosk-9", "The kiosk prints receipts in Klingon after the firmware pack."
    async with device(world, name) as (client, inbox):
        question = {"id": "q1", "model": ASSISTANT, "text": "Can my kiosk print in Klingon?"}
        await client.publish(f"{PREFIX}/{name}/request", json.dumps(question), qos=1)
        first = await inbox.first(lambda r: r["type"] == "result")
        assert first["id"] == "q1"
        assert first["task"]["result"]["outputs"] == [{"type": "text", "text": NOT_FOUND}]
        escalation = first["task"]["result"]["metadata"]["escalation_task"]

        await _answer(world, escalation, answer, tenant=FLEET_TENANT)

        def answered(reply: dict[str, Any]) -> bool:
            return bool(reply["type"] == "result" and reply["task"]["id"] == escalation)

        delivered = await inbox.first(answered)
        await asyncio.sleep(QUIET_S)
    assert delivered["id"] == "q1"  # the question's own id: the device knows what it answers
    assert delivered["task"]["status"] == "completed"
    assert delivered["task"]["conversation"] == name
    assert delivered["task"]["result"]["outputs"] == [{"type": "text", "text": answer}]
    assert [r for r in inbox.items if answered(r)] == [delivered]


# gRPC Converse


class Conversation:
    """One `Converse` stream of `conversation`, opened with `Resume` so that it names it."""

    def __init__(self, world: World, conversation: str, token: str) -> None:
        self._world = world
        self._conversation = conversation
        self._token = token
        self._requests: asyncio.Queue[gateway_pb2.ConverseRequest] = asyncio.Queue()
        self.inbox: Inbox[gateway_pb2.ConverseResponse] = Inbox()

    @asynccontextmanager
    async def open(self, *, after_sequence: int = 0) -> AsyncIterator[Conversation]:
        resume = gateway_pb2.Resume(conversation=self._conversation, after_sequence=after_sequence)
        self._requests = asyncio.Queue()
        self._requests.put_nowait(gateway_pb2.ConverseRequest(resume=resume))
        self.inbox = Inbox()
        async with grpc.aio.insecure_channel(self._world.grpc_target) as channel:
            call = gateway_pb2_grpc.GatewayStub(channel).Converse(
                self._outgoing(), metadata=bearer(self._token)
            )
            reading = asyncio.create_task(self._read(call))
            try:
                yield self
            finally:
                call.cancel()
                reading.cancel()

    def ask(self, ref: str, text: str) -> None:
        envelope = env.Envelope(id=ref, route=env.RouteHint(model=ASSISTANT))
        envelope.parts.add(text=text)
        self._requests.put_nowait(gateway_pb2.ConverseRequest(envelope=envelope))

    async def reply_to(self, ref: str) -> gateway_pb2.ConverseResponse:
        """The reply (not the ack) to the envelope `ref`; the first if there are more."""
        return await self.inbox.first(lambda r: _is_reply(r) and r.reply.envelope_id == ref)

    def replies_of(self, task_id: str) -> list[gateway_pb2.ConverseResponse]:
        return [r for r in self.inbox.items if _is_reply(r) and r.reply.task_id == task_id]

    async def _outgoing(self) -> AsyncIterator[gateway_pb2.ConverseRequest]:
        while True:
            yield await self._requests.get()

    async def _read(self, call: Any) -> None:
        async for response in call:
            self.inbox.put(response)


def _is_reply(response: gateway_pb2.ConverseResponse) -> bool:
    return response.WhichOneof("kind") == "reply"


def _text(reply: env.Reply) -> str:
    (part,) = reply.parts
    return part.text


async def test_an_answered_escalation_reaches_the_converse_stream_once(world: World) -> None:
    answer = "Only with the Klingon firmware pack."
    token = world.stack.token("infer:*", "tasks:read", "tasks:write", sub="dana")
    talk = Conversation(world, "dana-support", token)
    async with talk.open():
        talk.ask("q1", "Can my toaster speak Klingon?")
        first = await talk.reply_to("q1")
        assert _text(first.reply) == NOT_FOUND and first.sequence > 0
        escalation = first.reply.metadata["escalation_task"]
        assert escalation and escalation != first.reply.task_id

        await _answer(world, escalation, answer, tenant="acme")

        delivered = await talk.inbox.first(lambda r: _is_reply(r) and r.reply.task_id == escalation)
        await asyncio.sleep(QUIET_S)
        assert talk.replies_of(escalation) == [delivered]
    assert _text(delivered.reply) == answer and not delivered.reply.error.code
    assert delivered.reply.envelope_id == "q1"  # the question's own envelope: what it answers
    assert delivered.sequence > first.sequence  # a client resumes after it

    # Back after the answer: the next question is answered, the old answer not sent again.
    async with talk.open(after_sequence=delivered.sequence):
        talk.ask("q2", "Does the toaster sing too?")
        second = await talk.reply_to("q2")
        assert _text(second.reply) == NOT_FOUND
        assert second.sequence > delivered.sequence
        assert not talk.replies_of(escalation)

    # Back from before the answer: it is delivered again, once, from the conversation's log.
    async with talk.open(after_sequence=first.sequence):
        replayed = await talk.inbox.first(lambda r: _is_reply(r) and r.reply.task_id == escalation)
        await talk.reply_to("q2")  # what came after it, too
        assert talk.replies_of(escalation) == [replayed]
    assert replayed.sequence == delivered.sequence and _text(replayed.reply) == answer
