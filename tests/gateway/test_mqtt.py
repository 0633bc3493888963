"""MQTT: devices' requests through a real Mosquitto broker, replies published back.

Real processes: Mosquitto (started by the test on a free port), nats-server,
security, inference, taskstore and the gateway; the device is an aiomqtt client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import pytest
from support.mqtt_broker import Mosquitto
from support.suite_stack import (
    TEXT_MODEL,
    Stack,
    assistant_args,
    one_passage_knowledge,
    start_stack,
)

from edgegate_gateway.adapters.mqtt import device_of, read_request

PREFIX = "edgegate/v1"
pytestmark = pytest.mark.timeout(180)
ANSWER = "Devices get their answers on their own reply topic."


def test_only_request_topics_name_a_device() -> None:
    assert device_of("edgegate/v1/dev-7/request", PREFIX) == "dev-7"
    assert device_of("edgegate/v1/dev-7/reply", PREFIX) is None
    assert device_of("edgegate/v1//request", PREFIX) is None
    assert device_of("other/edgegate/v1/d/request", PREFIX) is None
    assert device_of("edgegate/v1/a/b/request", PREFIX) is None


def test_a_request_without_a_key_is_keyed_by_device_and_id() -> None:
    envelope, defer, message_id = read_request({"id": "r1", "model": "m", "text": "hi"}, "d1")
    assert (envelope.idempotency_key, defer, message_id) == ("d1/r1", False, "r1")
    assert envelope.conversation == "d1" and envelope.parts[0].text == "hi"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, broker: Mosquitto) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("gateway-mqtt"), taskstores=1)
    knowledge = one_passage_knowledge(running.folder, ANSWER)
    try:
        running.start_gateway(
            *assistant_args(knowledge),
            "--mqtt-host", "127.0.0.1",
            "--mqtt-port", str(broker.port),
            "--mqtt-credential",
            running.token("infer:*", "tasks:read", "tasks:write", tenant="devices", sub="fleet"),
        )  # fmt: skip
    except BaseException:
        running.stop()
        raise
    yield running
    running.stop()


class Device:
    def __init__(self, client: aiomqtt.Client, name: str) -> None:
        self.client = client
        self.name = name
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def request(self, body: dict[str, Any] | bytes) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.client.publish(f"{PREFIX}/{self.name}/request", payload, qos=1)

    async def reply(self, kind: str, timeout_s: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                body = await self.replies.get()
                if body["type"] == kind:
                    return body


@asynccontextmanager
async def device(broker: Mosquitto, name: str) -> AsyncIterator[Device]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"test-{name}") as client:
        await client.subscribe(f"{PREFIX}/{name}/reply", qos=1)
        dev = Device(client, name)

        async def listen() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                await dev.replies.put(json.loads(message.payload))

        listening = asyncio.create_task(listen())
        try:
            yield dev
        finally:
            listening.cancel()


@pytest.fixture
async def ready(stack: Stack, broker: Mosquitto) -> None:
    """Wait until the gateway's subscription is in place (it answers a probe)."""
    async with device(broker, "probe") as probe:
        for _ in range(60):
            await probe.request(b"probe")
            try:
                await probe.reply("error", timeout_s=0.5)
                return
            except TimeoutError:
                continue
    raise AssertionError("the gateway never subscribed to the broker")


@pytest.mark.slow
@pytest.mark.usefixtures("ready")
async def test_a_device_request_is_answered_on_its_reply_topic(broker: Mosquitto) -> None:
    async with device(broker, "dev-1") as dev:
        await dev.request({"id": "r1", "model": TEXT_MODEL, "text": "temperature 21C"})
        result = await dev.reply("result")
    assert result["id"] == "r1"
    task = result["task"]
    assert task["status"] == "completed" and task["conversation"] == "dev-1"
    assert task["result"]["outputs"][0]["type"] == "tensor"


@pytest.mark.slow
@pytest.mark.usefixtures("ready")
async def test_a_deferred_request_is_queued_then_answered(broker: Mosquitto) -> None:
    async with device(broker, "dev-2") as dev:
        await dev.request({"id": "later", "model": TEXT_MODEL, "text": "x", "defer": True})
        queued = await dev.reply("queued")
        result = await dev.reply("result")
    assert queued["id"] == result["id"] == "later"
    assert result["task"]["id"] == queued["task_id"] and result["task"]["status"] == "completed"


@pytest.mark.slow
@pytest.mark.usefixtures("ready")
async def test_the_assistant_answers_a_device(broker: Mosquitto) -> None:
    async with device(broker, "dev-3") as dev:
        await dev.request({"id": "q", "model": "edgegate-assistant", "text": "where is my answer?"})
        result = await dev.reply("result")
    assert result["task"]["result"]["outputs"] == [{"type": "text", "text": ANSWER}]


@pytest.mark.slow
@pytest.mark.usefixtures("ready")
async def test_bad_requests_get_error_replies(broker: Mosquitto) -> None:
    async with device(broker, "dev-5") as dev:
        await dev.request(b"\xff\xfe not utf-8")
        utf8 = await dev.reply("error")
        await dev.request({"id": "no-model", "text": "hi"})
        no_model = await dev.reply("error")
        await dev.request({"id": "ok", "model": TEXT_MODEL, "text": "still serving"})
        result = await dev.reply("result")
    assert utf8["code"] == "INVALID_ARGUMENT" and "UTF-8" in utf8["message"]
    assert no_model["id"] == "no-model" and "'model'" in no_model["message"]
    assert result["id"] == "ok"
