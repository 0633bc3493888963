"""Task records in the JetStream KV bucket `edgegate-tasks`, changed only by compare-and-set.

A record's key is `<tenant>.<task id>` and its value the `Task` message; the
KV revision (the stream sequence of the write) is the task's `revision`.
Every change reads the record, lets the caller compute the next one, checks
that it moves forward (`core.status`) and writes it only if nobody wrote
since the read; on a conflict it reads again. A finished record is written
with a per-message TTL, so finished tasks expire and pending ones never do.

Because the bucket keeps one revision per key, "what changed after revision
R" is the stream read from R+1: `scan` and `watch` both work that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from edgegate_common import subjects
from edgegate_common.bus import TRANSIENT, ensure_stream
from edgegate_common.errors import (
    EdgegateError,
    Internal,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.core import status

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
# Failures of the store that may pass (a reconnect, a leader election).

Change = Callable[[pb.Task], pb.Task | None]


@dataclass(frozen=True, slots=True)
class Storage:
    """Where and how long: 1 replica on one machine, 3 in a cluster."""

    replicas: int = 1
    finished_ttl_s: float = 7 * 24 * 3600
    failed_ttl_s: float = 14 * 24 * 3600  # as long as its dead-letter entry, so Retry works
    max_bytes: int = -1


def record_key(tenant: str, task_id: str) -> str:
    return f"{subjects.ident(tenant)}.{task_id}"


class TaskRecords:
    def __init__(self, js: JetStreamContext, kv: KeyValue, *, storage: Storage) -> None:
        self._js = js
        self._kv = kv
        self._storage = storage
        self._prefix = f"$KV.{subjects.KV_TASKS}."

    @classmethod
    async def open(cls, js: JetStreamContext, *, storage: Storage) -> TaskRecords:
        """Declare the bucket (a KV stream that allows per-message TTLs) and bind to it."""
        await ensure_stream(
            js,
            StreamConfig(
                name=f"KV_{subjects.KV_TASKS}",
                subjects=[f"$KV.{subjects.KV_TASKS}.>"],
                max_msgs_per_subject=1,
                max_bytes=storage.max_bytes,
                discard=DiscardPolicy.NEW,
                storage=StorageType.FILE,
                num_replicas=storage.replicas,
                allow_rollup_hdrs=True,
                deny_delete=True,
                allow_direct=True,
                allow_msg_ttl=True,
            ),
        )
        return cls(js, await js.key_value(subjects.KV_TASKS), storage=storage)

    async def create(self, task: pb.Task) -> tuple[pb.Task, bool]:
        """Store a new record; if the key exists, return the stored one instead (and False)."""
        key = record_key(task.tenant, task.id)
        try:
            task.revision = await self._write(key, task, last=0)
            return task, True
        except nats.js.errors.KeyWrongLastSequenceError:
            return await self.get(task.tenant, task.id), False

    async def get(self, tenant: str, task_id: str) -> pb.Task:
        try:
            entry = await self._kv.get(record_key(tenant, task_id))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            raise NotFound(f"there is no task {task_id}") from None
        except TRANSIENT as exc:
            raise Unavailable(f"cannot read task {task_id}: {exc!r}") from exc
        return _decode(entry.value or b"", entry.revision or 0)

    async def exists_elsewhere(self, task_id: str) -> bool:
        """Whether some tenant has a task with this id (to refuse, not to read it)."""
        try:
            info = await self._js.stream_info(
                f"KV_{subjects.KV_TASKS}", subjects_filter=f"{self._prefix}*.{task_id}"
            )
        except TRANSIENT as exc:
            raise Unavailable(f"cannot look up task {task_id}: {exc!r}") from exc
        return bool(info.state.subjects)

    async def change(self, tenant: str, task_id: str, change: Change) -> pb.Task:
        """Apply `change` to the current record until a compare-and-set write succeeds.

        `change` gets a copy of the record and returns the next one, or None to
        leave it as it is (the current record is returned). A change that does
        not move the task forward raises FailedPrecondition and writes nothing.
        """
        key = record_key(tenant, task_id)
        while True:
            current = await self.get(tenant, task_id)
            proposed = pb.Task()
            proposed.CopyFrom(current)
            nxt = change(proposed)
            if nxt is None:
                return current
            status.check_forward(current, nxt)
            nxt.updated_at.GetCurrentTime()
            try:
                nxt.revision = await self._write(key, nxt, last=current.revision)
                return nxt
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # someone wrote in between: read again, decide again

    async def _write(self, key: str, task: pb.Task, *, last: int) -> int:
        task.revision = 0  # the revision is the write's sequence, not part of the value
        headers = {EXPECTED_LAST_SUBJECT_SEQ: str(last)}
        try:
            ack = await self._js.publish(
                self._prefix + key,
                task.SerializeToString(),
                headers=headers,
                msg_ttl=self._ttl(task),
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code in (10071, 10164):  # wrong last sequence
                raise nats.js.errors.KeyWrongLastSequenceError(
                    description=exc.description
                ) from None
            raise store_error(f"cannot store task record {key}", exc) from exc
        except (*TRANSIENT, nats.errors.MaxPayloadError) as exc:
            raise store_error(f"cannot store task record {key}", exc) from exc
        return int(ack.seq)

    def _ttl(self, task: pb.Task) -> float | None:
        if task.status == status.FAILED:
            return self._storage.failed_ttl_s
        return self._storage.finished_ttl_s if task.status in status.FINISHED else None

    async def scan(
        self,
        tenant: str,
        *,
        after_revision: int = 0,
        since: dt.datetime | None = None,
        batch: int = 256,
    ) -> AsyncIterator[pb.Task]:
        """The tenant's records in revision order, changed after `after_revision` or `since`."""
        filter_subject = f"{self._prefix}{subjects.ident(tenant)}.>"
        if after_revision:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_revision + 1
            )
        elif since is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since
            )
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        config.ack_policy = AckPolicy.NONE
        config.inactive_threshold = 5.0  # the server removes it soon after the read stops
        try:
            subscription = await self._js.pull_subscribe(
                filter_subject, stream=f"KV_{subjects.KV_TASKS}", config=config
            )
            pending = (await subscription.consumer_info()).num_pending
        except TRANSIENT as exc:
            raise Unavailable(f"cannot list tasks: {exc!r}") from exc
        try:
            while pending:
                try:
                    messages = await subscription.fetch(min(batch, pending), timeout=5.0)
                except TRANSIENT as exc:
                    # Stopping here would return a shorter list as if it were complete.
                    raise Unavailable(f"listing tasks stopped part-way: {exc!r}") from exc
                for message in messages:
                    if message.data:
                        yield _decode(message.data, message.metadata.sequence.stream)
                pending = messages[-1].metadata.num_pending
        finally:
            await _quietly(subscription.unsubscribe())

    async def watch(
        self, tenant: str, *, after_revision: int, max_buffered: int = 256
    ) -> AsyncIterator[pb.Task]:
        """Every change to the tenant's records after `after_revision` (0: from now on), live.

        A watcher that falls `max_buffered` changes behind is ended with
        RESOURCE_EXHAUSTED naming the revision to resume from, rather than
        buffering without bound.
        """
        queue: asyncio.Queue[pb.Task] = asyncio.Queue(maxsize=max_buffered)
        overflowed = asyncio.Event()

        async def on_message(message: Msg) -> None:
            if not message.data or overflowed.is_set():
                return
            try:
                queue.put_nowait(_decode(message.data, message.metadata.sequence.stream))
            except asyncio.QueueFull:
                overflowed.set()

        if after_revision:
            policy = {
                "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": after_revision + 1,
            }
        else:
            policy = {"deliver_policy": DeliverPolicy.NEW}
        subscription = await self._js.subscribe(
            f"{self._prefix}{subjects.ident(tenant)}.>",
            stream=f"KV_{subjects.KV_TASKS}",
            cb=on_message,
            ordered_consumer=True,
            config=ConsumerConfig(**policy),  # type: ignore[arg-type]
        )
        last = after_revision
        try:
            while True:
                if queue.empty() and overflowed.is_set():
                    raise ResourceExhausted(
                        f"the watcher fell {max_buffered} changes behind; "
                        f"watch again with after_revision={last}"
                    )
                getting = asyncio.ensure_future(queue.get())
                stalled = asyncio.ensure_future(overflowed.wait())
                await asyncio.wait({getting, stalled}, return_when=asyncio.FIRST_COMPLETED)
                stalled.cancel()
                if not getting.done():
                    getting.cancel()
                    continue
                task = getting.result()
                last = task.revision
                yield task
        finally:
            await _quietly(subscription.unsubscribe())


def store_error(what: str, exc: BaseException) -> EdgegateError:
    """RESOURCE_EXHAUSTED when the store is full or the message too big, else UNAVAILABLE."""
    detail = exc.description if isinstance(exc, nats.js.errors.APIError) else repr(exc)
    full = isinstance(exc, nats.errors.MaxPayloadError) or "maximum" in str(detail).lower()
    return (ResourceExhausted if full else Unavailable)(f"{what}: {detail}")


def _decode(data: bytes, revision: int) -> pb.Task:
    try:
        task = pb.Task.FromString(data)
    except DecodeError:
        raise Internal(f"the task record at revision {revision} is unreadable") from None
    task.revision = revision
    return task


async def _quietly(awaitable: Awaitable[object]) -> None:
    with contextlib.suppress(*TRANSIENT):
        await awaitable
