"""The work queue, dead-letter and result events on JetStream.

- `EDGEGATE_TASKS` (work-queue retention) holds one message per task round on
  `edgegate.taskstore.v1.queue.<priority>`, de-duplicated by `Nats-Msg-Id`
  `<task id>/<round>`, so a Submit retried after a lost ack queues it once.
  Each priority has its own durable pull consumer, shared by every replica.
- `EDGEGATE_TASKS_DEAD` keeps tasks past their attempts on
  `edgegate.taskstore.v1.dead.<tenant>.<task id>` until Retry takes them back.
- `EDGEGATE_TASK_EVENTS` keeps each finished task's record on
  `edgegate.taskstore.v1.events.<tenant>.<user>`, de-duplicated by
  `<task id>/<round>/<status>`: a worker that finishes a task again after a
  crash publishes the same id, and subscribers see it once.

Workers take messages with `no_wait` pull requests, highest priority first,
and wait for a wake-up (a new message on the queue subjects, or a tick for
delayed redeliveries) when all three are empty.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from edgegate_common import subjects
from edgegate_common.bus import TRANSIENT, Bus, ensure_stream
from edgegate_common.bus.headers import MSG_ID
from edgegate_common.errors import FailedPrecondition, Unavailable
from edgegate_common.logging import get_logger
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.adapters.records import Storage, store_error
from edgegate_taskstore.core import status

log = get_logger(__name__)

_PRIORITY_NAMES: dict[int, str] = {
    env.PRIORITY_HIGH: "high",
    env.PRIORITY_LOW: "low",
}  # else normal
_STATUS_HEADER = "Status"
DEAD_REASON = "Edgegate-Dead-Reason"
# The events stream's readers: one feed per gateway process and its resumes in progress (at
# most 32 each, short-lived), one durable per MQTT credential. Stated rather than left to
# nats-server, whose default moved from no limit to 1,000 (2.15): the same bound on every
# server, room for 30 gateway processes resuming at full tilt (30 x 33), and a stop to a leak.
EVENTS_MAX_CONSUMERS = 1000


def priority_name(priority: int) -> str:
    return _PRIORITY_NAMES.get(priority, "normal")


def consumer_name(priority: str) -> str:
    return f"tasks-{priority}"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    ack_wait_s: float = 30.0
    duplicate_window_s: float = 120.0
    dead_letter_ttl_s: float = 14 * 24 * 3600
    events_ttl_s: float = 7 * 24 * 3600
    max_ack_pending: int = 10_000


class WorkQueue:
    def __init__(self, bus: Bus, *, ack_wait_s: float) -> None:
        self._bus = bus
        self._js = bus.js
        # The consumers' real ack wait: an existing consumer keeps the one it was made with.
        self.ack_wait_s = ack_wait_s

    @classmethod
    async def open(cls, bus: Bus, *, storage: Storage, settings: QueueSettings) -> WorkQueue:
        """Declare the three streams and the per-priority consumers (safe to repeat and race)."""
        js = bus.js

        def stream(
            name: str,
            subject: str,
            *,
            work_queue: bool = False,
            max_age_s: float | None = None,
            max_consumers: int | None = None,
        ) -> StreamConfig:
            return StreamConfig(
                name=name,
                subjects=[subject],
                retention=RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS,
                max_age=max_age_s,
                max_bytes=storage.max_bytes,
                # A full queue refuses new tasks (RESOURCE_EXHAUSTED) and never drops
                # queued ones; full history (dead-letter, events) drops its oldest.
                discard=DiscardPolicy.NEW if work_queue else DiscardPolicy.OLD,
                storage=StorageType.FILE,
                num_replicas=storage.replicas,
                duplicate_window=settings.duplicate_window_s,
                max_consumers=max_consumers,
            )

        for config in (
            stream(subjects.STREAM_TASKS, subjects.TASKSTORE_QUEUE_ALL, work_queue=True),
            stream(
                subjects.STREAM_TASKS_DEAD,
                subjects.TASKSTORE_DEAD_ALL,
                max_age_s=settings.dead_letter_ttl_s,
            ),
            stream(
                subjects.STREAM_TASK_EVENTS,
                subjects.TASKSTORE_EVENTS_ALL,
                max_age_s=settings.events_ttl_s,
                max_consumers=EVENTS_MAX_CONSUMERS,
            ),
        ):
            await ensure_stream(js, config)
        ack_wait_s = settings.ack_wait_s
        for priority in subjects.TASK_PRIORITIES:
            ack_wait_s = await _ensure_consumer(
                js,
                ConsumerConfig(
                    durable_name=consumer_name(priority),
                    filter_subject=subjects.taskstore_queue(priority),
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=settings.ack_wait_s,
                    max_deliver=-1,  # attempts are counted in the record, not by deliveries
                    max_ack_pending=settings.max_ack_pending,
                    num_replicas=storage.replicas,
                ),
                ack_wait_s,
            )
        return cls(bus, ack_wait_s=ack_wait_s)

    async def enqueue(self, task: pb.Task) -> None:
        """Queue this round of the task (a repeat inside the duplicate window is dropped)."""
        await self._publish(
            subjects.taskstore_queue(priority_name(task.priority)),
            task,
            msg_id=f"{task.id}/{task.retries}",
        )

    async def publish_event(self, task: pb.Task) -> None:
        """Tell the task's user it finished; the same finish is published once."""
        await self._publish(
            subjects.taskstore_events(task.tenant, task.user),
            task,
            msg_id=f"{task.id}/{task.retries}/{status.name(task.status)}",
        )

    async def dead_letter(self, task: pb.Task, *, reason: str) -> None:
        await self._publish(
            subjects.taskstore_dead(task.tenant, task.id),
            task,
            msg_id=f"{task.id}/{task.retries}",
            extra={DEAD_REASON: " ".join(reason.split())[:512]},
        )

    async def dead_letter_seq(self, task: pb.Task) -> int | None:
        """The stream sequence of the task's dead-letter entry, or None if it has none."""
        try:
            entry = await self._js.get_last_msg(
                subjects.STREAM_TASKS_DEAD, subjects.taskstore_dead(task.tenant, task.id)
            )
        except nats.js.errors.NotFoundError:
            return None
        except TRANSIENT as exc:
            raise Unavailable(f"cannot read the dead-letter stream: {exc!r}") from exc
        return entry.seq

    async def leave_dead_letter(self, task: pb.Task, *, up_to_seq: int) -> None:
        """Remove the task's dead-letter entries up to `up_to_seq`, not a newer one."""
        try:
            await self._js.purge_stream(
                subjects.STREAM_TASKS_DEAD,
                subject=subjects.taskstore_dead(task.tenant, task.id),
                seq=up_to_seq + 1,  # JetStream purges below this sequence
            )
        except TRANSIENT as exc:
            raise Unavailable(f"cannot update the dead-letter stream: {exc!r}") from exc

    async def _publish(
        self, subject: str, task: pb.Task, *, msg_id: str, extra: dict[str, str] | None = None
    ) -> None:
        try:
            await self._js.publish(
                subject, task.SerializeToString(), headers={MSG_ID: msg_id, **(extra or {})}
            )
        except nats.js.errors.NoStreamResponseError:
            raise Unavailable(f"no JetStream stream stores {subject}") from None
        except (*TRANSIENT, nats.errors.MaxPayloadError) as exc:
            raise store_error(f"cannot store {subject}", exc) from exc

    async def puller(self, priority: str) -> Puller:
        puller = Puller(self._bus, subjects.STREAM_TASKS, consumer_name(priority))
        await puller.start()
        return puller

    async def wake_on_publish(self, wake: asyncio.Event) -> Subscription:
        """Set `wake` whenever something is queued (by any replica)."""

        async def on_message(_: Msg) -> None:
            wake.set()

        return await self._bus.subscribe(subjects.TASKSTORE_QUEUE_ALL, cb=on_message)


async def _ensure_consumer(
    js: JetStreamContext, config: ConsumerConfig, shortest_ack_wait_s: float
) -> float:
    """Create the consumer if needed; the shortest ack wait among those seen so far."""
    try:
        info = await js.add_consumer(subjects.STREAM_TASKS, config)
    except nats.js.errors.BadRequestError:
        # It exists with other settings (an older release's): those stay until
        # an operator changes them; replicas must not fight over it.
        log.warning("consumer exists with other settings; keeping it", name=config.durable_name)
        info = await js.consumer_info(subjects.STREAM_TASKS, config.durable_name or "")
    return min(shortest_ack_wait_s, info.config.ack_wait or shortest_ack_wait_s)


class Puller:
    """Takes what a durable pull consumer has now, without waiting for more (`no_wait`).

    Each pull request gets its own reply subject under one wildcard
    subscription, so the end-of-batch status of an earlier request (one that
    arrived after its timeout) is not taken for the answer to the current one.
    Messages themselves are always kept, whichever request they answer: a
    late one is handed out by the next `take` (or `leftover`) before anything
    is asked of the server, while its ack wait is still running.
    """

    def __init__(self, bus: Bus, stream: str, consumer: str) -> None:
        self._bus = bus
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = bus.new_inbox()
        self._requests = 0
        self._messages: collections.deque[Msg] = collections.deque()
        self._answered: set[str] = set()
        self._arrived = asyncio.Event()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._bus.subscribe(f"{self._inbox}.*", cb=self._receive)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._bus.unsubscribe(self._subscription, drain=False)

    async def _receive(self, msg: Msg) -> None:
        if msg.headers and _STATUS_HEADER in msg.headers:
            # 404 no messages, 408 expired, 409 consumer changed: that request is done.
            self._answered.add(msg.subject)
        else:
            self._messages.append(msg)
        self._arrived.set()

    def leftover(self) -> Msg | None:
        """A message that arrived after its request gave up, if any."""
        return self._messages.popleft() if self._messages else None

    async def take(self, batch: int, *, timeout_s: float = 2.0) -> list[Msg]:
        if self._subscription is None:
            raise FailedPrecondition("the puller is not started")
        taken = [self._messages.popleft() for _ in range(min(batch, len(self._messages)))]
        if taken:
            return taken
        self._requests += 1
        reply = f"{self._inbox}.{self._requests}"
        self._answered.clear()
        request = json.dumps({"batch": batch, "no_wait": True}).encode()
        try:
            await self._bus.publish(self._next_subject, request, reply=reply)
        except TRANSIENT as exc:
            raise Unavailable(f"cannot pull tasks: {exc!r}") from exc
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self._messages) < batch and reply not in self._answered:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
        return [self._messages.popleft() for _ in range(min(batch, len(self._messages)))]
