"""Conversations: messages in, acks and results out, resumable after a disconnect.

The WebSocket adapter (`/ws`) and gRPC `Converse` share this. The taskstore
is the conversation's log, so a result survives the connection that asked
for it:

- `send` runs one message through the pipeline. An answer given at once
  (local inference, the cloud fallback, the assistant) is stored in the
  taskstore as a completed task; work that cannot run now is queued there.
  Either way the caller's ack names a task that will not be lost, and the
  idempotency key makes a resend after a lost ack the same task.
- `results` follows the finished tasks of the conversation: the taskstore
  publishes each finish once on the user's events stream, and that stream's
  sequence number is the result's sequence. A client that reconnects with
  the last sequence it saw gets every later result of the conversation,
  none twice, whichever gateway replica it reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import InvalidArgument, NotFound, ResourceExhausted
from edgegate_gateway.assistant import Assistant
from edgegate_gateway.core.rules import ASSISTANT
from edgegate_gateway.pipeline import Offline, Pipeline
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

MAX_CONVERSATION_ID = 128
# Results buffered for a client that does not read; past this it is told to resume.
MAX_BUFFERED_RESULTS = 256


@dataclass(frozen=True, slots=True)
class Ack:
    """A message accepted for good: its task holds it (and, later, its result)."""

    envelope_id: str
    idempotency_key: str
    task_id: str
    deferred: bool  # queued to run later, not answered yet


@dataclass(frozen=True, slots=True)
class Result:
    sequence: int  # the events stream's sequence: resume after the last one seen
    task: tpb.Task


def conversation_id(requested: str) -> str:
    """The client's conversation id, checked; a new one when it names none."""
    if not requested:
        return uuid.uuid4().hex
    if len(requested) > MAX_CONVERSATION_ID or not requested.isprintable():
        raise InvalidArgument(
            f"a conversation id is at most {MAX_CONVERSATION_ID} printable characters",
            details={"field": "conversation"},
        )
    return requested


class Conversations:
    def __init__(self, *, bus: Bus, pipeline: Pipeline, assistant: Assistant | None) -> None:
        self._bus = bus
        self._pipeline = pipeline
        self._assistant = assistant

    async def authenticate(self, credential: str) -> principal_pb2.Principal:
        return await self._pipeline.authenticate(credential)

    async def answer(
        self, envelope: env.Envelope, *, credential: str, defer: bool = False
    ) -> env.Reply:
        """Route one message and answer it: the assistant, local inference, the cloud, or later.

        A message for a model no replica serves (or with `defer`) goes to the
        taskstore, and the reply carries its task id.
        """
        self._pipeline.route(envelope)
        if envelope.route.model == ASSISTANT:
            if self._assistant is None:
                raise NotFound("this gateway has no assistant (no knowledge folder is configured)")
            return await self._assistant.reply(envelope, credential=credential)
        return await self._pipeline.handle(
            envelope, credential=credential, defer=defer, offline=Offline.DEFER
        )

    async def send(self, envelope: env.Envelope, *, credential: str, defer: bool = False) -> Ack:
        """Run or queue one message of a conversation; the ack once its task is stored."""
        if not envelope.idempotency_key:
            envelope.idempotency_key = uuid.uuid4().hex
        reply = await self.answer(envelope, credential=credential, defer=defer)
        deferred = reply.backend == env.BACKEND_TASKSTORE
        if deferred:
            task_id = reply.task_id
        else:
            task_id = (await self._pipeline.record(envelope, reply, credential=credential)).id
        return Ack(envelope.id, envelope.idempotency_key, task_id, deferred)

    async def results(
        self, principal: principal_pb2.Principal, conversation: str, *, after_sequence: int = 0
    ) -> AsyncIterator[Result]:
        """The conversation's results after `after_sequence` (0: from now on), as they come.

        Raises RESOURCE_EXHAUSTED when the reader falls too far behind; it
        resumes from the last sequence it received.
        """
        buffered: asyncio.Queue[Result] = asyncio.Queue(maxsize=MAX_BUFFERED_RESULTS)
        overflowed = asyncio.Event()

        async def on_event(message: Msg) -> None:
            task = tpb.Task()
            try:
                task.ParseFromString(message.data)
            except Exception:
                return
            if task.envelope.conversation != conversation or overflowed.is_set():
                return
            try:
                buffered.put_nowait(Result(message.metadata.sequence.stream, task))
            except asyncio.QueueFull:
                overflowed.set()

        if after_sequence:
            start = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_sequence + 1
            )
        else:
            start = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        subscription = await self._bus.js.subscribe(
            subjects.taskstore_events(principal.tenant, principal.subject),
            stream=subjects.STREAM_TASK_EVENTS,
            cb=on_event,
            ordered_consumer=True,
            config=start,
        )
        last = after_sequence
        try:
            while True:
                if buffered.empty() and overflowed.is_set():
                    raise ResourceExhausted(
                        f"more than {MAX_BUFFERED_RESULTS} results waited for this client; "
                        f"resume after sequence {last}"
                    )
                waiting = asyncio.ensure_future(buffered.get())
                stalled = asyncio.ensure_future(overflowed.wait())
                try:
                    await asyncio.wait({waiting, stalled}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stalled.cancel()
                    if not waiting.done():
                        waiting.cancel()
                if waiting.cancelled():
                    continue
                result = waiting.result()
                last = result.sequence
                yield result
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
