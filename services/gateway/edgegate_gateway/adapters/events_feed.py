"""The taskstore's events, read once per gateway process and fanned out to the conversations.

The taskstore publishes each finished task once on its user's subject of the
events stream. A conversation session needs its user's events from "now", or
from the sequence it resumes after. One JetStream consumer per session does
that, but nats-server caps a stream at 1,000 consumers by default (all
replicas together), and nats.py gives each ordered consumer timers of its
own. So the process keeps one ordered consumer on every user's subject
(`EventsFeed`) and hands each event to the listeners registered for its
subject; a resume reads what it missed with a short-lived consumer of its
own (`EventsFeed.replay`), at most `MAX_REPLAYS` at a time.

nats.py's ordered consumer recreates itself from the last sequence it
delivered when its consumer goes away (a missed heartbeat, a gap), so a blip
loses nothing. When the consumer stays gone for `broken_after_s`, the feed
is broken: each listener hears `broken`, its client resumes, and the next
`register` starts a fresh feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any, Protocol

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import Unavailable
from edgegate_common.logging import get_logger
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)

MAX_REPLAYS = 32  # resumes reading their missed events at once, each with its own consumer
REPLAY_BATCH = 64
REPLAY_FETCH_S = 5.0
REPLAY_IDLE_S = 30.0  # the server drops a replay's consumer its gateway left behind (a crash)


class Listener(Protocol):
    """What the feed hands a user's events to (in the event loop, in sequence order)."""

    def event(self, sequence: int, task: tpb.Task) -> None:
        """One finished task of the user (any conversation); must not block."""

    def broken(self, exc: Unavailable) -> None:
        """The feed stopped for good: nothing more comes."""


class EventsFeed:
    """One subscription to every user's events, shared by the follows of this process."""

    def __init__(
        self,
        bus: Bus,
        *,
        heartbeat_s: float = 2.0,
        check_s: float = 5.0,
        broken_after_s: float = 20.0,
    ) -> None:
        self._bus = bus
        self._heartbeat_s = heartbeat_s
        self._check_s = check_s
        self._broken_after_s = broken_after_s
        self._listeners: dict[str, set[Listener]] = {}
        self._subscription: Any = None
        self._watchdog: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._replays = asyncio.Semaphore(MAX_REPLAYS)
        self._position = 0  # the last sequence handed out: later ones are still to come

    @property
    def running(self) -> bool:
        return self._subscription is not None

    @property
    def position(self) -> int:
        """The last sequence handed to the listeners (a listener registered now gets later ones)."""
        return self._position

    async def register(self, tenant: str, user: str, listener: Listener) -> int:
        """Hand `listener` the user's events from now on; the sequence they start after.

        Starts the feed if it is not running (UNAVAILABLE if it cannot start).
        """
        await self._start()
        key = subjects.taskstore_events(tenant, user)
        self._listeners.setdefault(key, set()).add(listener)
        return self._position

    def unregister(self, tenant: str, user: str, listener: Listener) -> None:
        key = subjects.taskstore_events(tenant, user)
        listeners = self._listeners.get(key)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[key]

    async def replay(
        self, tenant: str, user: str, *, after: int, until: int
    ) -> AsyncGenerator[tuple[int, tpb.Task]]:
        """The user's events after `after` up to `until` at least, in order, read with a
        consumer of their own that is deleted at the end. UNAVAILABLE if that fails."""
        if after >= until:
            return
        async with self._replays:
            name = f"edgegate-replay-{uuid.uuid4().hex}"
            config = ConsumerConfig(
                name=name,
                filter_subject=subjects.taskstore_events(tenant, user),
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=after + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=REPLAY_IDLE_S,
                num_replicas=1,
                mem_storage=True,
            )
            try:
                info = await self._bus.js.add_consumer(subjects.STREAM_TASK_EVENTS, config)
            except (nats.errors.Error, TimeoutError) as exc:
                raise Unavailable(f"cannot read the missed results: {exc!r}") from exc
            try:
                pending = info.num_pending or 0
                reader = await self._bus.js.pull_subscribe_bind(
                    consumer=name, stream=subjects.STREAM_TASK_EVENTS
                )
                fetched = _fetched(reader, pending=pending, until=until)
                try:
                    async with contextlib.aclosing(fetched):
                        async for found in fetched:
                            yield found
                finally:
                    with contextlib.suppress(Exception):
                        await reader.unsubscribe()
            finally:
                with contextlib.suppress(Exception):
                    await self._bus.js.delete_consumer(subjects.STREAM_TASK_EVENTS, name)

    async def close(self) -> None:
        """Stop the feed; its listeners hear that it broke."""
        await self._stop(Unavailable("the gateway is stopping; resume on another"))

    async def _start(self) -> None:
        async with self._starting:
            if self._subscription is not None:
                return
            try:
                info = await self._bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
                position = info.state.last_seq
                self._subscription = await self._bus.js.subscribe(
                    subjects.TASKSTORE_EVENTS_ALL,
                    stream=subjects.STREAM_TASK_EVENTS,
                    cb=self._on_event,
                    ordered_consumer=True,
                    idle_heartbeat=self._heartbeat_s,
                    config=ConsumerConfig(
                        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                        opt_start_seq=position + 1,
                    ),
                )
            except nats.js.errors.NotFoundError:
                raise Unavailable("the taskstore has not created its events stream yet") from None
            except (nats.errors.Error, TimeoutError) as exc:
                raise Unavailable(f"cannot follow the conversation's results: {exc!r}") from exc
            self._position = position
            self._watchdog = asyncio.create_task(self._watch())
            log.info("results feed started", after_sequence=position)

    async def _on_event(self, message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        if sequence <= self._position:  # again, after the consumer was recreated
            return
        self._position = sequence
        listeners = self._listeners.get(message.subject)
        if not listeners:
            return
        task = tpb.Task()
        try:
            task.ParseFromString(message.data)
        except DecodeError:
            return
        for listener in list(listeners):
            listener.event(sequence, task)

    async def _watch(self) -> None:
        """Break the feed when its consumer stays gone (nats.py recreates it after a blip)."""
        subscription, missing_since = self._subscription, None
        while subscription is self._subscription:
            await asyncio.sleep(self._check_s)
            try:
                await subscription.consumer_info()
                missing_since = None
                continue
            except (nats.errors.Error, TimeoutError) as exc:
                missing_since = missing_since or time.monotonic()
                if time.monotonic() - missing_since < self._broken_after_s:
                    continue
                log.warning("results feed broke", error=repr(exc))
            await self._stop(Unavailable("the results feed broke; reconnect and resume"))

    async def _stop(self, exc: Unavailable) -> None:
        subscription, self._subscription = self._subscription, None
        watchdog, self._watchdog = self._watchdog, None
        listeners, self._listeners = self._listeners, {}
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        for group in listeners.values():
            for listener in group:
                listener.broken(exc)


async def _fetched(
    reader: Any, *, pending: int, until: int
) -> AsyncGenerator[tuple[int, tpb.Task]]:
    """Fetch until nothing was pending or `until` is reached."""
    while pending > 0:
        try:
            messages = await reader.fetch(REPLAY_BATCH, timeout=REPLAY_FETCH_S)
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot read the missed results: {exc!r}") from exc
        for message in messages:
            metadata = message.metadata
            pending = metadata.num_pending
            task = tpb.Task()
            try:
                task.ParseFromString(message.data)
            except DecodeError:
                continue
            yield metadata.sequence.stream, task
        if messages and messages[-1].metadata.sequence.stream >= until:
            return
