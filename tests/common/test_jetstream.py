"""JetStream helpers on a real nats-server: idempotent declarations, de-duplication, durability."""

from __future__ import annotations

import pytest
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from support.harness import NatsLike

from edgegate_common.bus import Bus, ensure_key_value, ensure_stream
from edgegate_common.errors import InvalidArgument, NoResponders
from edgegate_protos.common.v1 import status_pb2


def _stream(name: str, *, max_msgs: int = 1000) -> StreamConfig:
    return StreamConfig(
        name=name, subjects=[f"test.{name.lower()}.>"], storage=StorageType.FILE, max_msgs=max_msgs
    )


async def test_ensure_stream_is_idempotent_and_applies_changes(bus: Bus) -> None:
    first = await ensure_stream(bus.js, _stream("IDEMPOTENT"))
    again = await ensure_stream(bus.js, _stream("IDEMPOTENT"))
    assert first.config.name == again.config.name == "IDEMPOTENT"
    changed = await ensure_stream(bus.js, _stream("IDEMPOTENT", max_msgs=5))
    assert changed.config.max_msgs == 5
    assert (await bus.js.stream_info("IDEMPOTENT")).config.max_msgs == 5


async def test_publish_durable_stores_a_message_id_once(bus: Bus) -> None:
    await ensure_stream(bus.js, _stream("DEDUP"))
    message = status_pb2.ServiceStatus(service="taskstore", instance="i-1")
    first = await bus.publish_durable("test.dedup.tasks", message, msg_id="task-42")
    retry = await bus.publish_durable("test.dedup.tasks", message, msg_id="task-42")
    other = await bus.publish_durable("test.dedup.tasks", message, msg_id="task-43")
    assert (bool(first.duplicate), retry.duplicate, bool(other.duplicate)) == (False, True, False)
    assert retry.seq == first.seq
    stored = await bus.js.get_msg("DEDUP", first.seq)
    assert status_pb2.ServiceStatus.FromString(stored.data) == message
    assert stored.headers is not None and stored.headers["Nats-Msg-Id"] == "task-42"
    assert (await bus.js.stream_info("DEDUP")).state.messages == 2


async def test_publish_durable_refuses_what_no_stream_captures(bus: Bus) -> None:
    with pytest.raises(NoResponders, match=r"no JetStream stream captures nowhere\.at\.all"):
        await bus.publish_durable("nowhere.at.all", status_pb2.StatusRequest(), msg_id="x")
    with pytest.raises(InvalidArgument, match="msg_id"):
        await bus.publish_durable("test.dedup.tasks", status_pb2.StatusRequest(), msg_id="")


async def test_ensure_key_value_opens_an_existing_bucket(bus: Bus) -> None:
    kv = await ensure_key_value(bus.js, KeyValueConfig(bucket="test-routes", history=5))
    await kv.put("gateway", b"stable=90,canary=10")
    reopened = await ensure_key_value(bus.js, KeyValueConfig(bucket="test-routes", history=1))
    entry = await reopened.get("gateway")
    assert entry.value == b"stable=90,canary=10"


async def test_stored_messages_survive_a_nats_crash(nats_server: NatsLike) -> None:
    bus = await Bus.connect(servers=[nats_server.url], name="test", connect_timeout_s=5)
    try:
        await ensure_stream(bus.js, _stream("DURABLE"))
        ack = await bus.publish_durable(
            "test.durable.one", status_pb2.StatusRequest(), msg_id="m-1"
        )
    finally:
        await bus.close()
    nats_server.kill()
    nats_server.start()
    bus = await Bus.connect(servers=[nats_server.url], name="test", connect_timeout_s=5)
    try:
        info = await bus.js.stream_info("DURABLE")
        assert info.state.messages == 1 and info.state.last_seq == ack.seq
    finally:
        await bus.close()
