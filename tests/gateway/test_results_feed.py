"""The gateway's one results feed per process (`adapters/events_feed.py`) and the follows on it.

Two levels, both on a real nats-server:
- the feed and `Follow` themselves, on an events stream this test creates and
  publishes to as the taskstore would: tenant isolation, a resume that
  catches up while live results arrive, a feed that breaks for good;
- the real stack (security, inference, taskstore, one gateway): many
  sessions share one consumer, users see only their own results, and the
  feed recovers without loss when its consumer is deleted from outside.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from support.suite_stack import OTHER_TENANT, TENANT, TEXT_MODEL, Stack, start_stack
from support.waiting import eventually

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import ResourceExhausted, Unavailable
from edgegate_gateway.adapters.events_feed import EventsFeed
from edgegate_gateway.conversations import MAX_BUFFERED_RESULTS, Follow, Result
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb
from edgegate_taskstore.adapters.queue import EVENTS_MAX_CONSUMERS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


# -- the feed and Follow on a stream of this test's own --------------------------------


@pytest.fixture
async def events_bus(nats_server: Any) -> AsyncIterator[Bus]:
    """A bus whose nats-server has the events stream, configured as the taskstore's."""
    bus = await Bus.connect(servers=[nats_server.url], name="test", connect_timeout_s=10)
    await bus.js.add_stream(_events_stream())
    yield bus
    await bus.close()


def _events_stream() -> StreamConfig:
    return StreamConfig(
        name=subjects.STREAM_TASK_EVENTS,
        subjects=[subjects.TASKSTORE_EVENTS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
    )


def _principal(user: str, tenant: str = TENANT) -> principal_pb2.Principal:
    return principal_pb2.Principal(tenant=tenant, subject=user)


async def _publish(bus: Bus, user: str, conversation: str, *, tenant: str = TENANT) -> int:
    """A finished task of `user` in `conversation`, as the taskstore publishes it; its sequence."""
    task = tpb.Task(id=uuid.uuid4().hex, tenant=tenant, user=user)
    task.envelope.conversation = conversation
    ack = await bus.js.publish(subjects.taskstore_events(tenant, user), task.SerializeToString())
    return ack.seq


async def _take(follow: Follow, count: int, *, timeout_s: float = 20.0) -> list[Result]:
    taken: list[Result] = []
    async with asyncio.timeout(timeout_s):
        async for result in follow.results():
            taken.append(result)
            if len(taken) == count:
                break
    return taken


async def _read_all(follow: Follow, into: list[Result]) -> None:
    async for result in follow.results():
        into.append(result)


async def _follow(feed: EventsFeed, user: str, conversation: str, after: int = 0) -> Follow:
    follow = Follow(conversation, after)
    await follow.start(feed, _principal(user))
    return follow


async def test_a_follow_gets_its_users_conversation_only(events_bus: Bus) -> None:
    """Another user, the same user name in another tenant, another conversation: none of theirs,
    though all share the conversation id."""
    feed = EventsFeed(events_bus)
    alice = await _follow(feed, "alice", "talk")
    others = [
        await _publish(events_bus, "bob", "talk"),
        await _publish(events_bus, "alice", "talk", tenant=OTHER_TENANT),
        await _publish(events_bus, "alice", "another"),
    ]
    mine = [await _publish(events_bus, "alice", "talk") for _ in range(3)]
    try:
        taken = await _take(alice, 3)
        # A later result of hers came after any of theirs: had one leaked, it would be here.
        mine.append(await _publish(events_bus, "alice", "talk"))
        taken += await _take(alice, 1)
    finally:
        await alice.close()
        await feed.close()
    assert [r.sequence for r in taken] == mine
    assert not set(others) & {r.sequence for r in taken}


async def test_many_follows_share_one_consumer(events_bus: Bus) -> None:
    feed = EventsFeed(events_bus)
    follows = [await _follow(feed, f"user-{i}", "talk") for i in range(20)]
    try:
        info = await events_bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
        assert info.state.consumer_count == 1
        sequence = await _publish(events_bus, "user-7", "talk")
        assert [r.sequence for r in await _take(follows[7], 1)] == [sequence]
    finally:
        for follow in follows:
            await follow.close()
        await feed.close()


async def test_a_resume_catches_up_and_takes_what_came_meanwhile_once(events_bus: Bus) -> None:
    """More missed results than a follow buffers, so the catch-up is still under way (waiting
    for the reader) when a live result arrives; every one comes once, in order."""
    seen = await _publish(events_bus, "alice", "talk")
    missed = []
    for i in range(MAX_BUFFERED_RESULTS + 40):
        missed.append(await _publish(events_bus, "alice", "talk"))
        if i % 50 == 0:  # others' results in between are skipped
            await _publish(events_bus, "alice", "elsewhere")
            await _publish(events_bus, "bob", "talk")
    feed = EventsFeed(events_bus)
    follow = await _follow(feed, "alice", "talk", after=seen)
    try:
        live = await _publish(events_bus, "alice", "talk")
        await eventually(lambda: feed.position >= live, what="the feed to pass the live result")
        taken = await _take(follow, len(missed) + 1)
        info = await events_bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
    finally:
        await follow.close()
        await feed.close()
    assert [r.sequence for r in taken] == [*missed, live]
    assert info.state.consumer_count == 1, "the catch-up's consumer was left behind"


async def test_a_session_that_leaves_during_its_catch_up_leaves_no_consumer(
    events_bus: Bus,
) -> None:
    seen = await _publish(events_bus, "alice", "talk")
    for _ in range(MAX_BUFFERED_RESULTS + 10):  # more than it buffers: the catch-up waits
        await _publish(events_bus, "alice", "talk")
    feed = EventsFeed(events_bus)
    follow = await _follow(feed, "alice", "talk", after=seen)
    try:
        await eventually(_consumer_count_is(events_bus, 2), what="the catch-up's consumer")
        await follow.close()
        await eventually(_consumer_count_is(events_bus, 1), what="the catch-up's consumer gone")
    finally:
        await feed.close()


def _consumer_count_is(bus: Bus, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        info = await bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
        return bool(info.state.consumer_count == count)

    return check


async def test_a_reader_too_far_behind_is_told_to_resume(events_bus: Bus) -> None:
    """Past MAX_BUFFERED_RESULTS unread, RESOURCE_EXHAUSTED naming the last sequence taken."""
    feed = EventsFeed(events_bus)
    follow = await _follow(feed, "alice", "talk")
    try:
        published = [
            await _publish(events_bus, "alice", "talk") for _ in range(MAX_BUFFERED_RESULTS + 1)
        ]
        await eventually(lambda: feed.position >= published[-1], what="the feed to pass them")
        taken: list[Result] = []
        with pytest.raises(ResourceExhausted) as behind:
            await _read_all(follow, taken)
    finally:
        await follow.close()
        await feed.close()
    assert [r.sequence for r in taken] == published[:MAX_BUFFERED_RESULTS]
    assert f"resume after sequence {taken[-1].sequence}" in behind.value.message


async def test_a_feed_that_breaks_fails_its_follows_and_starts_again(events_bus: Bus) -> None:
    feed = EventsFeed(events_bus, heartbeat_s=0.2, check_s=0.1, broken_after_s=1.0)
    follow = await _follow(feed, "alice", "talk")
    await events_bus.js.delete_stream(subjects.STREAM_TASK_EVENTS)  # its consumer goes with it
    with pytest.raises(Unavailable, match="results feed broke"):
        await _take(follow, 1)
    await follow.close()
    assert not feed.running
    await events_bus.js.add_stream(_events_stream())
    again = await _follow(feed, "alice", "talk")
    try:
        sequence = await _publish(events_bus, "alice", "talk")
        assert [r.sequence for r in await _take(again, 1)] == [sequence]
    finally:
        await again.close()
        await feed.close()


# -- the real stack ------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("results-feed"), taskstores=1)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ws_url(stack: Stack) -> str:
    _, port = stack.start_gateway()
    return f"ws://127.0.0.1:{port}/ws"


class Client:
    """One authenticated `/ws` session; keeps the frames it read."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def send(self, ref: str, text: str) -> None:
        await self.ws.send_json({"type": "send", "id": ref, "model": TEXT_MODEL, "text": text})

    async def result_of(self, ref: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The result of the message `ref` (its ack names the task), read until it comes."""
        async with asyncio.timeout(timeout_s):
            while True:
                acks = [f for f in self.frames if f["type"] == "ack" and f["id"] == ref]
                if acks:
                    results = self.results(acks[0]["task_id"])
                    if results:
                        return results[0]
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"the connection ended: {message.type!r}")
                self.frames.append(json.loads(message.data))

    def results(self, task_id: str | None = None) -> list[dict[str, Any]]:
        return [
            f for f in self.frames if f["type"] == "result" and task_id in (None, f["task"]["id"])
        ]


@asynccontextmanager
async def sessions(
    url: str, tokens: list[str], conversation: str = ""
) -> AsyncIterator[list[Client]]:
    async with AsyncExitStack() as exits:
        http = await exits.enter_async_context(aiohttp.ClientSession())
        clients = []
        for token in tokens:
            ws = await exits.enter_async_context(http.ws_connect(url))
            hello = {"type": "authenticate", "token": token, "conversation": conversation}
            await ws.send_json(hello)
            ready = await ws.receive_json(timeout=20)
            assert ready["type"] == "ready", ready
            clients.append(Client(ws))
        yield clients


async def _consumers(stack: Stack) -> int:
    async with stack.bus() as bus:
        info = await bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
    return int(info.state.consumer_count)


async def test_fifty_sessions_on_one_gateway_use_one_consumer(stack: Stack, ws_url: str) -> None:
    tokens = [stack.token(sub=f"many-{i}") for i in range(50)]
    async with sessions(ws_url, tokens) as clients:
        assert await _consumers(stack) == 1
        await clients[-1].send("m", "hello")
        result = await clients[-1].result_of("m")
        assert result["task"]["status"] == "completed" and result["sequence"] > 0
        assert await _consumers(stack) == 1


async def test_two_users_each_see_only_their_own_results(stack: Stack, ws_url: str) -> None:
    """Same conversation id; alice, bob, and an alice of another tenant."""
    tokens = [
        stack.token(sub="iso-alice"),
        stack.token(sub="iso-bob"),
        stack.token(sub="iso-alice", tenant=OTHER_TENANT),
    ]
    async with sessions(ws_url, tokens, conversation="shared-name") as clients:
        for i, client in enumerate(clients):
            await client.send(f"mine-{i}", f"from client {i}")
        mine = [await c.result_of(f"mine-{i}") for i, c in enumerate(clients)]
        # Each one's next result comes after the others' first: a leak would be here by then.
        for i, client in enumerate(clients):
            await client.send(f"last-{i}", "after the others")
        last = [await c.result_of(f"last-{i}") for i, c in enumerate(clients)]
    for i, client in enumerate(clients):
        own = {mine[i]["task"]["id"], last[i]["task"]["id"]}
        assert {r["task"]["id"] for r in client.results()} == own


async def test_the_feed_recovers_without_loss_when_its_consumer_is_deleted(
    stack: Stack, ws_url: str
) -> None:
    """Deleted from outside, nats.py's ordered consumer is made again from where it was: a
    result published while it is gone still comes, once, and so does the next."""
    async with sessions(ws_url, [stack.token(sub="feed-deleted")]) as (client,):
        await client.send("before", "before")
        before = await client.result_of("before")
        async with stack.bus() as bus:
            (feed,) = await bus.js.consumers_info(subjects.STREAM_TASK_EVENTS)
            await bus.js.delete_consumer(subjects.STREAM_TASK_EVENTS, feed.name)
        await client.send("while-gone", "while the consumer is gone")
        gone = await client.result_of("while-gone")
        await eventually(_consumers_are(stack, 1), timeout_s=30, what="the feed's new consumer")
        await client.send("after", "after")
        after = await client.result_of("after")
    assert before["sequence"] < gone["sequence"] < after["sequence"]
    assert len(client.results()) == 3


def _consumers_are(stack: Stack, count: int) -> Any:
    async def check() -> bool:
        return await _consumers(stack) == count

    return check


async def test_the_events_stream_states_its_consumer_limit(stack: Stack) -> None:
    """The taskstore's own bound, not nats-server's default (which differs between versions)."""
    async with stack.bus() as bus:
        info = await bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
    assert info.config.max_consumers == EVENTS_MAX_CONSUMERS
