"""One client's side of a conversation: the delivery rules gRPC, WebSocket and MQTT share.

gRPC `Converse`, WebSocket `/ws` and MQTT only parse their frames into
envelopes (`Session.submit`) and format what comes back (an `Output`). A
`Session` does everything in between, so that the three keep one set of rules:

- At most `MAX_IN_FLIGHT` (32) messages run at once; `submit` waits past
  that, so the adapter stops reading and its transport pushes back.
- A message's ack is emitted before its result, also when it was answered at
  once and its result reached the feed before `Conversations.send` returned.
- Each task's result is emitted once per session, whether it came from the
  feed or from a resend's ack: a resend of a task that finished before is
  acked, then its result follows with sequence 0, unless this session
  emitted it already (`MAX_REMEMBERED` results are remembered).
- Results come from the conversation's feed (`follow`, from `after_sequence`
  on a resume), or from a feed the adapter keeps itself (`deliver`: MQTT's
  consumer shared by the replicas). A reader too far behind fails the
  session with RESOURCE_EXHAUSTED, a broken feed with UNAVAILABLE: the
  client resumes from the last sequence it saw.
- `close` stops the feed. Messages already taken finish being stored, so a
  client that left gets their results when it resumes; where the transport
  redelivers what was not settled (`redelivered`, MQTT at QoS 1) they are
  cancelled instead, and an outage is waited out rather than refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from typing import Generic, Protocol, TypeVar

from edgegate_common.errors import EdgegateError, Internal, Unavailable
from edgegate_common.logging import get_logger
from edgegate_gateway.conversations import Ack, Conversations, Follow, Result
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)

MAX_IN_FLIGHT = 32  # messages one session may have running; past it, reading pauses
MAX_REMEMBERED = 4096  # task ids whose result a session remembers having emitted
RETRY_S = (0.5, 10.0)  # first and longest wait before a send meeting UNAVAILABLE is retried

Ref = TypeVar("Ref")
RefIn = TypeVar("RefIn", contravariant=True)


class Output(Protocol[RefIn]):
    """How a session's adapter formats what goes back. `ref` is what the adapter passed to
    `submit` with the message (a frame id, the envelope, the MQTT request)."""

    async def ack(self, ref: RefIn, ack: Ack) -> None:
        """The message is stored for good (`ack.task_id` holds it)."""

    async def result(self, sequence: int, task: tpb.Task) -> None:
        """A finished task; sequence 0 when it came from a resend's ack, not the feed."""

    async def error(self, ref: RefIn, exc: EdgegateError) -> None:
        """The message was refused; the session goes on."""

    async def fail(self, exc: EdgegateError) -> None:
        """The results feed stopped: the session cannot go on (the client resumes later)."""


class Session(Generic[Ref]):
    """One client's messages and results, under `credential`.

    `redelivered`: the transport delivers again what the session did not
    settle (ack or refuse), as MQTT at QoS 1 does. Then a send meeting an
    outage waits it out, and `close` cancels the sends still running.
    """

    def __init__(
        self,
        conversations: Conversations,
        output: Output[Ref],
        *,
        credential: str,
        redelivered: bool = False,
    ) -> None:
        self._conversations = conversations
        self._output = output
        self._credential = credential
        self._redelivered = redelivered
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._sending: set[asyncio.Task[None]] = set()
        # Messages not acked yet, by idempotency key: their results wait for the acks.
        self._acking: dict[str, list[asyncio.Event]] = {}
        self._awaiting: set[str] = set()  # acked task ids whose result has not been emitted
        self._emitted = _Remembered(MAX_REMEMBERED)
        self._changed = asyncio.Event()  # a send ended or an awaited result went out
        self._follow: Follow | None = None
        self._pump: asyncio.Task[None] | None = None

    async def follow(
        self, principal: principal_pb2.Principal, conversation: str, *, after_sequence: int = 0
    ) -> None:
        """Subscribe to the conversation's results after `after_sequence` (0: from now on).

        They are emitted once `start` is called, so that the adapter can greet
        the client first; whatever is submitted meanwhile has its result kept.
        """
        self._follow = await self._conversations.follow(
            principal, conversation, after_sequence=after_sequence
        )

    def start(self) -> None:
        """Start emitting the followed results."""
        if self._follow is not None and self._pump is None:
            self._pump = asyncio.create_task(self._pump_results(self._follow))

    async def submit(self, envelope: env.Envelope, *, defer: bool, ref: Ref) -> None:
        """Run one parsed message; returns once it runs, waiting while MAX_IN_FLIGHT do."""
        await self._slots.acquire()
        if not envelope.idempotency_key:  # known before sending: its result waits for the ack
            envelope.idempotency_key = uuid.uuid4().hex
        acked = asyncio.Event()
        self._acking.setdefault(envelope.idempotency_key, []).append(acked)
        sending = asyncio.create_task(self._send(envelope, defer, ref, acked))
        self._sending.add(sending)
        sending.add_done_callback(self._sent)

    async def deliver(self, result: Result) -> None:
        """Emit one result of a feed: after its message's ack, once per session.

        Raises what the output raises; the result then counts as not emitted.
        """
        # Answered at once, the result may beat its own ack here (or a resend's).
        for acked in list(self._acking.get(result.task.envelope.idempotency_key, ())):
            await acked.wait()
        await self._emit(result.sequence, result.task)

    async def drained(self) -> None:
        """Wait until no message runs and every acked one has had its result."""
        while True:
            self._changed.clear()
            if not self._sending and not self._awaiting:
                return
            await self._changed.wait()

    async def close(self) -> None:
        stopping = [self._pump] if self._pump is not None else []
        if self._redelivered:  # not settled: the transport delivers them again
            stopping.extend(self._sending)
        for task in stopping:
            task.cancel()
        for task in [*stopping, *self._sending]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._follow is not None:
            await self._follow.close()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._changed.set()

    async def _send(
        self, envelope: env.Envelope, defer: bool, ref: Ref, acked: asyncio.Event
    ) -> None:
        key = envelope.idempotency_key
        try:
            await self._answer(envelope, defer, ref)
        except Exception as exc:  # the output failed: the client is gone
            log.info("conversation output failed", error=repr(exc))
        finally:
            waiting = self._acking[key]
            waiting.remove(acked)
            if not waiting:
                del self._acking[key]
            acked.set()
            self._slots.release()

    async def _answer(self, envelope: env.Envelope, defer: bool, ref: Ref) -> None:
        try:
            ack = await self._stored(envelope, defer)
        except EdgegateError as exc:
            await self._output.error(ref, exc)
            return
        except Exception:
            log.exception("conversation send failed")
            await self._output.error(ref, Internal("the gateway failed; see its log"))
            return
        await self._output.ack(ref, ack)
        if ack.finished is not None:  # a resend: its result went out before, maybe not here
            await self._emit(0, ack.finished)
        elif ack.task_id not in self._emitted:
            self._awaiting.add(ack.task_id)

    async def _stored(self, envelope: env.Envelope, defer: bool) -> Ack:
        """The message's ack; where the transport redelivers, once a service outage is over.

        Each retry starts from the message as received: a failed try may have
        changed its copy (routed, admitted, masked).
        """
        received = _copy(envelope) if self._redelivered else envelope
        attempt, wait_s = envelope, RETRY_S[0]
        while True:
            try:
                return await self._conversations.send(
                    attempt, credential=self._credential, defer=defer
                )
            except Unavailable as exc:
                if not self._redelivered:
                    raise
                log.info("conversation send waits", why=exc.message, retry_in_s=wait_s)
            await asyncio.sleep(wait_s)
            attempt, wait_s = _copy(received), min(wait_s * 2, RETRY_S[1])

    async def _emit(self, sequence: int, task: tpb.Task) -> None:
        if task.id in self._emitted:
            return
        self._emitted.add(task.id)  # before writing: a resend's ack and the feed may race
        try:
            await self._output.result(sequence, task)
        except BaseException:
            self._emitted.discard(task.id)
            raise
        if task.id in self._awaiting:
            self._awaiting.discard(task.id)
            self._changed.set()

    async def _pump_results(self, follow: Follow) -> None:
        try:
            async for result in follow.results():
                await self.deliver(result)
        except EdgegateError as exc:  # too far behind: resume from the last sequence seen
            await self._output.fail(exc)
        except Exception as exc:
            log.warning("conversation results stopped", error=repr(exc))
            await self._output.fail(Unavailable("the results feed broke; reconnect and resume"))


class _Remembered:
    """The last `size` task ids added, the oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def add(self, task_id: str) -> None:
        self._ids[task_id] = None
        self._ids.move_to_end(task_id)
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def discard(self, task_id: str) -> None:
        self._ids.pop(task_id, None)


def _copy(envelope: env.Envelope) -> env.Envelope:
    copied = env.Envelope()
    copied.CopyFrom(envelope)
    return copied
