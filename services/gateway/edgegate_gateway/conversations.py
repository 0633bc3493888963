"""Conversations: messages in, acks and results out, resumable after a disconnect.

The WebSocket adapter (`/ws`), gRPC `Converse` and MQTT share this through
a `Session` (`sessions.py`), which holds the delivery rules on top of it:
the in-flight cap, ack before result, each result once. The taskstore is
the conversation's log, so a result survives the connection that asked for
it:

- `send` runs one message through the pipeline. An answer given at once
  (local inference, the cloud fallback, the assistant) is stored in the
  taskstore as a completed task; work that cannot run now is queued there.
  Either way the caller's ack names a task that will not be lost, and the
  idempotency key makes a resend after a lost ack the same task.
- `results` follows the finished tasks of the conversation: the taskstore
  publishes each finish once on the user's events stream, and that stream's
  sequence number is the result's sequence. A client that reconnects with
  the last sequence it saw gets every later result of the conversation,
  none twice, whichever gateway replica it reaches. Each gateway process
  reads the stream once (`adapters/events_feed.py`) and hands every
  conversation followed there its user's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from edgegate_common.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from edgegate_gateway.adapters.events_feed import EventsFeed
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.assistant import Assistant
from edgegate_gateway.pipeline import Handled, Offline, Pipeline
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
    finished: tpb.Task | None = None  # a resend of a task that finished (and was published) before


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


class _NoAssistant:
    """Stands in for the assistant on a gateway configured without one: a known caller
    is told so (a stranger, UNAUTHENTICATED)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def reply(self, envelope: env.Envelope, *, credential: str) -> env.Reply:
        await self._pipeline.authenticate(credential)
        raise NotFound("this gateway has no assistant (no knowledge folder is configured)")


class Conversations:
    def __init__(
        self,
        *,
        pipeline: Pipeline,
        taskstore: TaskstoreClient,
        assistant: Assistant | None,
        feed: EventsFeed,
    ) -> None:
        self._feed = feed
        self._pipeline = pipeline
        self._taskstore = taskstore
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
        return (await self._run(envelope, credential=credential, defer=defer)).reply

    async def _run(self, envelope: env.Envelope, *, credential: str, defer: bool) -> Handled:
        return await self._pipeline.handle(
            envelope,
            credential=credential,
            defer=defer,
            offline=Offline.DEFER,
            assistant=self._assistant or _NoAssistant(self._pipeline),
        )

    async def send(self, envelope: env.Envelope, *, credential: str, defer: bool = False) -> Ack:
        """Run or queue one message of a conversation; the ack once its task is stored.

        A message whose key names a task that finished before (a resend after
        a lost ack) comes back with that task in `Ack.finished`: its result
        was published then, so the caller delivers it from the ack.
        """
        repeatable = bool(envelope.idempotency_key)
        if not repeatable:
            envelope.idempotency_key = uuid.uuid4().hex
        handled = await self._run(envelope, credential=credential, defer=defer)
        if handled.task is not None:  # deferred: the task as the taskstore (or outbox) keeps it
            # Only a client's own key can name an earlier task.
            finished = handled.task if repeatable and handled.task.reported else None
            return Ack(envelope.id, envelope.idempotency_key, handled.task.id, True, finished)
        # Every result is delivered from the taskstore, so an answer given here is stored
        # there too, as completed (its event published); the same key stores it once.
        task = await self._taskstore.submit(envelope, credential=credential, answer=handled.reply)
        # Another envelope id: the key named a task answered before this message.
        earlier = task if task.envelope.id != envelope.id and task.reported else None
        return Ack(envelope.id, envelope.idempotency_key, task.id, False, earlier)

    async def follow(
        self, principal: principal_pb2.Principal, conversation: str, *, after_sequence: int = 0
    ) -> Follow:
        """Start following the conversation's results after `after_sequence` (0: from now on).

        The process's events feed has this follow when this returns, so that
        whatever the caller sends next has its result delivered.
        """
        if not 0 <= after_sequence < 2**63:
            raise InvalidArgument("after_sequence is not a sequence this gateway gave out")
        follow = Follow(conversation, after_sequence)
        await follow.start(self._feed, principal)
        return follow


class Follow:
    """One conversation's results as they are published, each once, in sequence order.

    They come from the process's `EventsFeed`. A resume first reads what it
    missed with a replay of its own while the feed's live results wait in
    `_held`, then hands over to them: nothing at or below the mark twice.
    """

    def __init__(self, conversation: str, after_sequence: int) -> None:
        self._conversation = conversation
        # Nothing at or below this is delivered: not on resume, nor what the
        # replay and the live feed both bring.
        self._mark = after_sequence
        self._buffered: asyncio.Queue[Result] = asyncio.Queue(maxsize=MAX_BUFFERED_RESULTS)
        self._overflowed = False
        self._failure: str | None = None  # why the feed stopped (UNAVAILABLE)
        self._stopped = asyncio.Event()  # overflowed or failed: nothing more is taken
        self._held: list[Result] | None = None  # live results while the missed ones are read
        self._catching_up: asyncio.Task[None] | None = None
        self._feed: EventsFeed | None = None
        self._principal = principal_pb2.Principal()
        self._delivered = 0  # the last sequence handed to the reader (set by start)

    async def start(self, feed: EventsFeed, principal: principal_pb2.Principal) -> None:
        """Register with the feed (it starts if it has not); a resume starts its catch-up."""
        live_after = await feed.register(principal.tenant, principal.subject, self)
        self._feed, self._principal = feed, principal
        if not self._mark:  # from now on: what the feed brings next
            self._mark = live_after
        elif self._mark < live_after:
            self._held = []
            self._catching_up = asyncio.create_task(self._catch_up(feed, live_after))
        self._delivered = self._mark

    async def close(self) -> None:
        if self._catching_up is not None:
            self._catching_up.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._catching_up
        if self._feed is not None:
            self._feed.unregister(self._principal.tenant, self._principal.subject, self)

    def event(self, sequence: int, task: tpb.Task) -> None:
        """The feed's next event of this user (the `Listener` side)."""
        if task.envelope.conversation != self._conversation:
            return
        if self._held is None:
            self._take(Result(sequence, task))
        elif len(self._held) < MAX_BUFFERED_RESULTS:
            self._held.append(Result(sequence, task))
        else:
            self._overflow()

    def broken(self, exc: Unavailable) -> None:
        """The feed stopped: the reader gets UNAVAILABLE once it took what came before."""
        self._failure = self._failure or exc.message
        self._stopped.set()

    def _take(self, result: Result) -> None:
        if result.sequence <= self._mark or self._stopped.is_set():
            return
        self._mark = result.sequence
        try:
            self._buffered.put_nowait(result)
        except asyncio.QueueFull:
            self._overflow()

    def _overflow(self) -> None:
        self._overflowed = True
        self._stopped.set()

    async def _catch_up(self, feed: EventsFeed, live_after: int) -> None:
        """The results missed up to where the live feed began, then the held live ones."""
        tenant, user = self._principal.tenant, self._principal.subject
        replayed = feed.replay(tenant, user, after=self._mark, until=live_after)
        try:
            async with contextlib.aclosing(replayed):  # its consumer goes, also on cancel
                async for sequence, task in replayed:
                    if self._stopped.is_set():
                        return
                    if sequence <= self._mark or task.envelope.conversation != self._conversation:
                        continue
                    self._mark = sequence
                    await self._buffered.put(Result(sequence, task))  # the reader sets the pace
        except Unavailable as exc:
            self.broken(exc)
            return
        except Exception as exc:
            self.broken(Unavailable(f"cannot read the missed results: {exc!r}"))
            return
        held, self._held = self._held or [], None
        for result in held:
            self._take(result)

    async def results(self) -> AsyncIterator[Result]:
        """The results as they come. RESOURCE_EXHAUSTED when the reader falls too far behind,
        UNAVAILABLE when the feed broke; either way it resumes from the last sequence it
        received."""
        while True:
            if self._buffered.empty() and self._stopped.is_set():
                raise self._stop_error()
            waiting = asyncio.ensure_future(self._buffered.get())
            stalled = asyncio.ensure_future(self._stopped.wait())
            try:
                await asyncio.wait({waiting, stalled}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stalled.cancel()
                if not waiting.done():  # a cancelled task is only done once it has run
                    waiting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting
            if waiting.cancelled():
                continue
            result = waiting.result()
            self._delivered = result.sequence
            yield result

    def _stop_error(self) -> ResourceExhausted | Unavailable:
        if self._overflowed:
            return ResourceExhausted(
                f"more than {MAX_BUFFERED_RESULTS} results waited for this client; "
                f"resume after sequence {self._delivered}"
            )
        return Unavailable(f"{self._failure}; resume after sequence {self._delivered}")
