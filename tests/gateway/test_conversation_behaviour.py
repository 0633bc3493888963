"""What every conversation transport promises, checked once against each: gRPC `Converse`,
WebSocket `/ws` and MQTT, each through its real client.

Real processes: Mosquitto, nats-server, security, inference, taskstore and
one gateway serving all three. A driver per transport connects, sends,
reads the next frame (as a `Frame`) and closes; each case is written once.

Where a transport says less, the case says so: MQTT acks only work it
queued (`queued`), its results carry no sequence, and its resume is the
broker's persistent session rather than an `after_sequence`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiomqtt
import grpc
import pytest
from support.mqtt_broker import Mosquitto, gateway_subscribed
from support.suite_stack import TEXT_MODEL, Stack, bearer, start_stack, text_envelope

from edgegate_gateway.sessions import MAX_IN_FLIGHT
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
PREFIX = "edgegate/v1"
FINISHED = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class World:
    stack: Stack
    ws_url: str
    grpc_target: str
    http_base: str
    broker_port: int
    fleet_token: str  # the gateway's MQTT credential: the principal whose tasks devices make


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    broker = Mosquitto(tmp_path_factory.mktemp("behaviour-mosquitto"))
    broker.start()
    stack = start_stack(tmp_path_factory.mktemp("behaviour"), taskstores=1)
    try:
        fleet = stack.token("infer:*", "tasks:read", "tasks:write", tenant="devices", sub="fleet")
        proc, port = stack.start_gateway(
            "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--mqtt-credential", fleet
        )  # fmt: skip
        asyncio.run(gateway_subscribed(broker.port, prefix=PREFIX, identifier="behaviour-probe"))
        yield World(
            stack=stack,
            ws_url=f"ws://127.0.0.1:{port}/ws",
            grpc_target=proc.target,
            http_base=f"http://127.0.0.1:{port}/v1",
            broker_port=broker.port,
            fleet_token=fleet,
        )
    finally:
        stack.stop()
        broker.stop()


@dataclass(frozen=True)
class Frame:
    """What came back, in words every transport can be read into."""

    kind: str  # "ack", "result" or "error"
    ref: str = ""  # the client's id of the message it answers, where the transport echoes it
    task_id: str = ""
    sequence: int = 0  # results: what a client resumes after (0 from an ack; MQTT has none)
    code: str = ""  # errors: the gRPC code name
    status: str = ""  # results: the task's status


class Driver:
    """One client of one conversation: connect, send, read the next frame, close."""

    acks_answers = True  # whether a message answered at once is acked (MQTT: only queued ones)
    sequenced = True  # whether results carry the sequence a client resumes after

    def __init__(self, world: World, conversation: str) -> None:
        self.world = world
        self.conversation = conversation
        self.frames: list[Frame] = []  # every frame read since `open`
        self._exit = AsyncExitStack()  # what `open` entered
        # A user of its own: keys (and so task ids) of one case never name another's tasks.
        self._token = world.stack.token("infer:*", "tasks:read", "tasks:write", sub=conversation)

    @property
    def token(self) -> str:
        """A token of the principal the conversation's tasks belong to."""
        return self._token

    async def open(self, *, after_sequence: int = 0) -> None:
        raise NotImplementedError

    async def send(self, ref: str, text: str, *, key: str = "", defer: bool = False) -> None:
        raise NotImplementedError

    async def send_unreadable(self) -> None:
        """Something that is not a message at all."""
        raise NotImplementedError

    async def send_invalid(self, ref: str) -> None:
        """A message, readable, that names a model but has no text."""
        raise NotImplementedError

    async def send_meanwhile(self, ref: str, text: str, *, conversation: str = "") -> str:
        """Queue a message as another client of the same user would (this conversation unless
        one is named); its task id."""
        return await _send_deferred(
            self.world, self.token, ref, text, conversation or self.conversation
        )

    async def close(self) -> list[Frame]:
        """Leave; the frames the transport delivered for good that were not read yet."""
        raise NotImplementedError

    async def receive(self) -> Frame:
        raise NotImplementedError

    async def leave(self) -> None:
        """Let go of whatever is still open (after a failure, say)."""
        await self._exit.aclose()

    async def until(
        self, done: Callable[[list[Frame]], bool], *, timeout_s: float = 30.0
    ) -> list[Frame]:
        """Read frames until `done(self.frames)`."""
        try:
            async with asyncio.timeout(timeout_s):
                while not done(self.frames):
                    self.frames.append(await self.receive())
        except TimeoutError:
            raise AssertionError(f"still waiting after {timeout_s} s; got {self.frames}") from None
        return self.frames


class GrpcDriver(Driver):
    """`Converse`, opened with `Resume` (after 0: from now on) so that it names the conversation."""

    async def open(self, *, after_sequence: int = 0) -> None:
        self.frames = []
        self._exit = AsyncExitStack()
        channel = await self._exit.enter_async_context(
            grpc.aio.insecure_channel(self.world.grpc_target)
        )
        self._requests: asyncio.Queue[gateway_pb2.ConverseRequest] = asyncio.Queue()
        resume = gateway_pb2.Resume(conversation=self.conversation, after_sequence=after_sequence)
        self._requests.put_nowait(gateway_pb2.ConverseRequest(resume=resume))
        self._call = gateway_pb2_grpc.GatewayStub(channel).Converse(
            self._outgoing(), metadata=bearer(self.token)
        )

    async def _outgoing(self) -> AsyncIterator[gateway_pb2.ConverseRequest]:
        while True:
            yield await self._requests.get()

    async def send(self, ref: str, text: str, *, key: str = "", defer: bool = False) -> None:
        # Converse has no `defer`: every message is answered as soon as it can be.
        envelope = text_envelope(text, key=key)
        envelope.id = ref
        self._requests.put_nowait(gateway_pb2.ConverseRequest(envelope=envelope))

    async def send_unreadable(self) -> None:
        # gRPC reads its own frames; the least readable envelope is an empty one.
        self._requests.put_nowait(gateway_pb2.ConverseRequest(envelope=env.Envelope()))

    async def send_invalid(self, ref: str) -> None:
        envelope = env.Envelope(id=ref, route=env.RouteHint(model=TEXT_MODEL))
        self._requests.put_nowait(gateway_pb2.ConverseRequest(envelope=envelope))

    async def close(self) -> list[Frame]:
        self._call.cancel()
        await self.leave()
        return []  # nothing read is not seen: the client resumes after the last it took

    async def receive(self) -> Frame:
        response = await self._call.read()
        if response is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise AssertionError("the Converse stream ended")
        assert isinstance(response, gateway_pb2.ConverseResponse)
        if response.WhichOneof("kind") == "ack":
            return Frame("ack", response.ack.envelope_id, response.ack.task_id)
        reply = response.reply
        code = env.ErrorCode.Name(reply.error.code).removeprefix("ERROR_CODE_")
        if not reply.task_id:  # a refusal: no task holds it
            return Frame("error", reply.envelope_id, code=code)
        status = {"OK": "completed", "CANCELLED": "cancelled"}.get(code, "failed")
        return Frame("result", reply.envelope_id, reply.task_id, response.sequence, status=status)


class WebSocketDriver(Driver):
    async def open(self, *, after_sequence: int = 0) -> None:
        self.frames = []
        self._exit = AsyncExitStack()
        http = await self._exit.enter_async_context(aiohttp.ClientSession())
        self._ws = await self._exit.enter_async_context(http.ws_connect(self.world.ws_url))
        await self._ws.send_json(
            {
                "type": "authenticate",
                "token": self.token,
                "conversation": self.conversation,
                "after_sequence": after_sequence,
            }
        )
        ready = await self._ws.receive_json(timeout=20)
        assert ready == {
            "type": "ready",
            "conversation": self.conversation,
            "after_sequence": after_sequence,
        }

    async def send(self, ref: str, text: str, *, key: str = "", defer: bool = False) -> None:
        frame = {"type": "send", "id": ref, "model": TEXT_MODEL, "text": text, "defer": defer}
        await self._ws.send_json({**frame, "idempotency_key": key} if key else frame)

    async def send_unreadable(self) -> None:
        await self._ws.send_str("{not json")

    async def send_invalid(self, ref: str) -> None:
        await self._ws.send_json({"type": "send", "id": ref, "model": TEXT_MODEL})

    async def close(self) -> list[Frame]:
        await self.leave()
        return []  # nothing read is not seen: the client resumes after the last it took

    async def receive(self) -> Frame:
        message = await self._ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"the connection ended: {message.type!r}")
        return _json_frame(json.loads(message.data))


class MqttDriver(Driver):
    """A device (the conversation names it) with a persistent session: what is published to
    it while it is away, the broker keeps for it (QoS 1). That is MQTT's resume, so
    `after_sequence` means nothing here."""

    acks_answers = False  # `queued` is the ack of deferred work; an answer comes as the result
    sequenced = False

    @property
    def token(self) -> str:
        return self.world.fleet_token

    async def open(self, *, after_sequence: int = 0) -> None:
        self.frames = []
        self._exit = AsyncExitStack()
        self._client = await self._exit.enter_async_context(self._connect(self.conversation))
        await self._client.subscribe(f"{PREFIX}/{self.conversation}/reply", qos=1)

    def _connect(self, name: str, *, persistent: bool = True) -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1",
            self.world.broker_port,
            identifier=f"device-{name}" if persistent else f"helper-{uuid.uuid4().hex}",
            clean_session=not persistent,
        )

    async def send(self, ref: str, text: str, *, key: str = "", defer: bool = False) -> None:
        body = {"id": ref, "model": TEXT_MODEL, "text": text, "defer": defer}
        await self._publish(self._client, self.conversation, {**body, "idempotency_key": key})

    async def send_unreadable(self) -> None:
        await self._client.publish(
            f"{PREFIX}/{self.conversation}/request", b"\xff\xfe not utf-8", qos=1
        )

    async def send_invalid(self, ref: str) -> None:
        await self._publish(self._client, self.conversation, {"id": ref, "model": TEXT_MODEL})

    async def send_meanwhile(self, ref: str, text: str, *, conversation: str = "") -> str:
        """Another publisher on the device's request topic; it watches the reply topic too,
        for the task id in `queued`."""
        device = conversation or self.conversation
        async with self._connect(device, persistent=False) as helper:
            await helper.subscribe(f"{PREFIX}/{device}/reply", qos=1)
            body = {"id": ref, "model": TEXT_MODEL, "text": text, "defer": True}
            await self._publish(helper, device, body)
            async with asyncio.timeout(20):
                async for message in helper.messages:
                    reply = json.loads(_payload(message))
                    if reply["type"] == "queued" and reply["id"] == ref:
                        return str(reply["task_id"])
        raise AssertionError("no queued reply")

    async def close(self) -> list[Frame]:
        await self.leave()
        # Received (and so acknowledged to the broker) but not read yet: the device has them.
        kept = []
        while len(self._client.messages):
            kept.append(_json_frame(json.loads(_payload(self._client._queue.get_nowait()))))
        return kept

    async def receive(self) -> Frame:
        return _json_frame(json.loads(_payload(await anext(self._client.messages))))

    @staticmethod
    async def _publish(client: aiomqtt.Client, device: str, body: dict[str, Any]) -> None:
        await client.publish(f"{PREFIX}/{device}/request", json.dumps(body), qos=1)


def _payload(message: aiomqtt.Message) -> bytes:
    assert isinstance(message.payload, bytes)
    return message.payload


def _json_frame(frame: dict[str, Any]) -> Frame:
    """A WebSocket frame or an MQTT reply: the same JSON but for MQTT's `queued` ack."""
    ref = frame.get("id") or ""
    if frame["type"] in ("ack", "queued"):
        return Frame("ack", ref, frame["task_id"])
    if frame["type"] == "result":
        task = frame["task"]
        return Frame("result", ref, task["id"], frame.get("sequence", 0), status=task["status"])
    if frame["type"] == "error":
        return Frame("error", ref, code=frame["code"])
    raise AssertionError(f"an unexpected frame: {frame}")


async def _send_deferred(world: World, token: str, ref: str, text: str, conversation: str) -> str:
    envelope = text_envelope(text)
    envelope.id, envelope.conversation = ref, conversation
    async with grpc.aio.insecure_channel(world.grpc_target) as channel:
        sent = await gateway_pb2_grpc.GatewayStub(channel).Send(
            gateway_pb2.SendRequest(envelope=envelope, defer=True),
            metadata=bearer(token),
            timeout=20,
        )
    assert sent.reply.task_id
    return sent.reply.task_id


async def _finished(world: World, token: str, task_id: str) -> None:
    """Wait until the task finished and its result was published."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http, asyncio.timeout(30):
        while True:
            async with http.get(f"{world.http_base}/tasks/{task_id}") as answer:
                task = await answer.json()
            if task["status"] in FINISHED and task["notified"]:
                return
            await asyncio.sleep(0.05)


DRIVERS: dict[str, type[Driver]] = {
    "grpc": GrpcDriver,
    "websocket": WebSocketDriver,
    "mqtt": MqttDriver,
}


@pytest.fixture(params=list(DRIVERS))
async def driver(request: pytest.FixtureRequest, world: World) -> AsyncIterator[Driver]:
    client = DRIVERS[request.param](world, f"{request.param}-{uuid.uuid4().hex[:10]}")
    yield client
    await client.leave()


def _ack(frames: list[Frame], ref: str) -> Frame | None:
    acks = [f for f in frames if f.kind == "ack" and f.ref == ref]
    assert len(acks) <= 1, f"{ref} was acked more than once: {acks}"
    return acks[0] if acks else None


def _results(frames: list[Frame], task_id: str | None = None) -> list[Frame]:
    return [f for f in frames if f.kind == "result" and task_id in (None, f.task_id)]


def _answered(frames: list[Frame], ref: str) -> bool:
    """`ref` was acked, and its result came."""
    ack = _ack(frames, ref)
    return ack is not None and bool(_results(frames, ack.task_id))


def _in_order(frames: list[Frame], ack: Frame) -> Frame:
    """The one result of the task `ack` names, which came after `ack`."""
    (result,) = _results(frames, ack.task_id)
    assert frames.index(ack) < frames.index(result), f"{result} came before its ack"
    return result


async def test_a_message_is_acked_then_answered(driver: Driver) -> None:
    await driver.open()
    await driver.send("now", "hello there")
    await driver.send("later", "hello later", defer=True)
    frames = await driver.until(lambda f: len(_results(f)) >= 2)
    acked = ["now", "later"] if driver.acks_answers else ["later"]
    for ref in acked:
        ack = _ack(frames, ref)
        assert ack is not None and len(ack.task_id) == 32
        assert _in_order(frames, ack).status == "completed"
    results = _results(frames)
    assert len({r.task_id for r in results}) == 2
    assert all(r.sequence > 0 for r in results) or not driver.sequenced
    assert not [f for f in frames if f.kind == "error"]


async def test_a_resend_is_the_same_task_and_its_result_comes_once(driver: Driver) -> None:
    await driver.open()
    key = f"resend-{uuid.uuid4().hex[:8]}"
    await driver.send("first", "once", key=key, defer=True)
    await driver.send("twin", "once", key=key, defer=True)  # before the first is stored
    await driver.until(lambda f: _answered(f, "first") and _ack(f, "twin") is not None)
    # It finished: sent again, twice at once.
    await driver.send("again", "once", key=key, defer=True)
    await driver.send("and-again", "once", key=key, defer=True)
    await driver.until(lambda f: None not in (_ack(f, "again"), _ack(f, "and-again")))
    # A later message's result comes after anything a resend's ack would bring.
    await driver.send("sentinel", "after the resends", defer=True)
    frames = await driver.until(lambda f: _answered(f, "sentinel"))
    acks = [_ack(frames, ref) for ref in ("first", "twin", "again", "and-again")]
    task_ids = {a.task_id for a in acks if a is not None}
    assert None not in acks and len(task_ids) == 1
    assert len(_results(frames, task_ids.pop())) == 1


async def test_a_client_that_comes_back_gets_what_it_missed_once(driver: Driver) -> None:
    await driver.open()
    await driver.send("a", "before")
    frames = await driver.until(lambda f: bool(_results(f)))
    (seen,) = _results(frames)
    # Queued work: the client leaves right after the ack, before the result.
    await driver.send("b", "left before its result", defer=True)
    b = _ack(await driver.until(lambda f: _ack(f, "b") is not None), "b")
    assert b is not None
    kept = await driver.close()
    c = await driver.send_meanwhile("c", "sent while away")
    elsewhere = await driver.send_meanwhile(
        "o", "another conversation", conversation=f"elsewhere-{uuid.uuid4().hex[:8]}"
    )
    for task_id in (b.task_id, c, elsewhere):
        await _finished(driver.world, driver.token, task_id)

    await driver.open(after_sequence=seen.sequence)
    await driver.send("s", "back again", defer=True)

    def caught_up(frames: list[Frame]) -> bool:
        missed = {r.task_id for r in _results(kept + frames)} >= {b.task_id, c}
        return missed and _answered(frames, "s")

    frames = await driver.until(caught_up)
    for task_id in (b.task_id, c):
        (result,) = _results(kept + frames, task_id)
        assert result.sequence > seen.sequence or not driver.sequenced
    assert not _results(frames, seen.task_id), "a result seen before came again"
    assert not _results(frames, elsewhere), "another conversation's result came"


async def test_more_messages_than_the_cap_are_all_answered_once(driver: Driver) -> None:
    """Twice the cap and more, sent without waiting, every other one refused. Past the cap the
    gateway stops reading; what the client sees is that none is lost or answered twice. More
    than the cap are answered and more than the cap refused: a slot that either kept would
    leave the last ones unanswered."""
    await driver.open()
    good, bad = [], []
    for i in range(2 * MAX_IN_FLIGHT + 8):
        if i % 2:
            bad.append(f"bad-{i}")
            await driver.send_invalid(bad[-1])
        else:
            good.append(f"m-{i}")
            await driver.send(good[-1], f"message {i}")

    def all_in(frames: list[Frame]) -> bool:
        errors = [f for f in frames if f.kind == "error"]
        return len(_results(frames)) >= len(good) and len(errors) >= len(bad)

    frames = await driver.until(all_in, timeout_s=60)
    results = _results(frames)
    assert len(results) == len({r.task_id for r in results}) == len(good)
    assert all(r.status == "completed" for r in results)
    assert sorted(f.ref for f in frames if f.kind == "error") == sorted(bad)
    if driver.acks_answers:
        acks = [_ack(frames, ref) for ref in good]
        assert all(_in_order(frames, a) for a in acks if a is not None)
        assert None not in acks


async def test_a_bad_frame_gets_an_error_and_the_session_goes_on(driver: Driver) -> None:
    await driver.open()
    await driver.send_unreadable()
    (unreadable,) = await driver.until(lambda f: bool(f))
    assert unreadable.kind == "error" and unreadable.code == "INVALID_ARGUMENT"
    await driver.send_invalid("no-text")
    frames = await driver.until(lambda f: len(f) >= 2)
    assert frames[1] == Frame("error", "no-text", code="INVALID_ARGUMENT")
    await driver.send("fine", "still here", defer=True)
    frames = await driver.until(lambda f: _answered(f, "fine"))
    ack = _ack(frames, "fine")
    assert ack is not None and _in_order(frames, ack).status == "completed"
