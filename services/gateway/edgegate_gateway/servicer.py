"""gRPC `edgegate.gateway.v1.Gateway`: the credential from metadata, the pipeline does the rest.

`Send` runs one envelope, routed by the rules: the assistant, inference
when a replica serves its model, else (or when `defer` asks for it) the
taskstore, whose task id the reply carries.

`Converse` is a conversation (`conversations.py`): envelopes in; an ack per
accepted envelope and a reply per finished task out. A client that
reconnects sends `Resume` first with the last sequence it saw. The stream
ends when the client has closed its side and every acked message has had
its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from edgegate_common.errors import EdgegateError, Internal, Unavailable
from edgegate_common.logging import get_logger
from edgegate_common.rpc import authorization
from edgegate_gateway.conversations import Conversations, Result, conversation_id
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2 as pb
from edgegate_protos.gateway.v1 import gateway_pb2_grpc
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext

log = get_logger(__name__)

MAX_IN_FLIGHT = 32  # envelopes one stream may have running; past it, reading pauses
MAX_QUEUED_RESPONSES = 256


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, conversations: Conversations) -> None:
        self._conversations = conversations

    async def Send(self, request: pb.SendRequest, context: Context) -> pb.SendResponse:
        envelope = env.Envelope()
        envelope.CopyFrom(request.envelope)
        envelope.channel = env.CHANNEL_GRPC
        reply = await self._conversations.answer(
            envelope, credential=authorization(context), defer=request.defer
        )
        return pb.SendResponse(reply=reply)

    async def Converse(
        self, request_iterator: AsyncIterator[pb.ConverseRequest], context: Context
    ) -> AsyncIterator[pb.ConverseResponse]:
        credential = authorization(context)
        principal = await self._conversations.authenticate(credential)
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        after = 0
        if first.WhichOneof("kind") == "resume":
            conversation = conversation_id(first.resume.conversation)
            after = first.resume.after_sequence
        else:
            conversation = conversation_id(first.envelope.conversation)
        # Following before reading: whatever the client sent has its result delivered.
        follow = await self._conversations.follow(principal, conversation, after_sequence=after)
        stream = _Conversation(self._conversations, credential, conversation)
        try:
            async for response in stream.run(first, request_iterator, follow.results()):
                yield response
        finally:
            await follow.close()


class _Conversation:
    """One Converse stream: reads envelopes, runs them, merges acks and results."""

    def __init__(self, conversations: Conversations, credential: str, conversation: str) -> None:
        self._conversations = conversations
        self._credential = credential
        self._conversation = conversation
        self._out: asyncio.Queue[pb.ConverseResponse | EdgegateError] = asyncio.Queue(
            maxsize=MAX_QUEUED_RESPONSES
        )
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._sending: set[asyncio.Task[None]] = set()
        self._awaiting: set[str] = set()  # acked task ids whose reply has not come yet
        self._delivered: set[str] = set()  # task ids whose reply came (maybe before the ack)
        self._reading_done = False
        self._changed = asyncio.Event()

    async def run(
        self,
        first: pb.ConverseRequest,
        requests: AsyncIterator[pb.ConverseRequest],
        results: AsyncIterator[Result],
    ) -> AsyncIterator[pb.ConverseResponse]:
        reader = asyncio.create_task(self._read(first, requests))
        pump = asyncio.create_task(self._pump(results))
        try:
            while not self._finished():
                getting = asyncio.ensure_future(self._out.get())
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait({getting, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                self._changed.clear()
                if not getting.done():
                    getting.cancel()
                    continue
                item = getting.result()
                if isinstance(item, EdgegateError):
                    raise item
                yield item
        finally:
            for task in (reader, pump, *self._sending):
                task.cancel()
            for task in (reader, pump, *self._sending):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _finished(self) -> bool:
        idle = self._reading_done and not self._sending and not self._awaiting
        return idle and self._out.empty()

    async def _read(
        self, first: pb.ConverseRequest, requests: AsyncIterator[pb.ConverseRequest]
    ) -> None:
        try:
            if first.WhichOneof("kind") == "envelope":
                await self._start(first.envelope)
            async for request in requests:
                if request.WhichOneof("kind") == "envelope":
                    await self._start(request.envelope)
        finally:
            self._reading_done = True
            self._changed.set()

    async def _start(self, envelope: env.Envelope) -> None:
        await self._slots.acquire()
        sending = asyncio.create_task(self._send(envelope))
        self._sending.add(sending)

        def done(task: asyncio.Task[None]) -> None:
            self._sending.discard(task)
            self._changed.set()

        sending.add_done_callback(done)

    async def _send(self, received: env.Envelope) -> None:
        envelope = env.Envelope()
        envelope.CopyFrom(received)
        envelope.channel = env.CHANNEL_GRPC
        envelope.conversation = self._conversation
        try:
            ack = await self._conversations.send(envelope, credential=self._credential)
            if ack.finished is not None and ack.task_id not in self._delivered:
                # A resend whose result went out before: deliver it from here.
                self._delivered.add(ack.task_id)
                await self._out.put(pb.ConverseResponse(reply=_task_reply(ack.finished)))
            elif ack.task_id not in self._delivered:
                self._awaiting.add(ack.task_id)
            response = pb.ConverseResponse(
                ack=pb.Ack(
                    envelope_id=ack.envelope_id,
                    idempotency_key=ack.idempotency_key,
                    task_id=ack.task_id,
                    conversation=self._conversation,
                )
            )
        except EdgegateError as exc:
            response = pb.ConverseResponse(reply=_refused(envelope, exc))
        except Exception:
            log.exception("converse send failed")
            response = pb.ConverseResponse(
                reply=_refused(envelope, Internal("the gateway failed; see its log"))
            )
        finally:
            self._slots.release()
        await self._out.put(response)

    async def _pump(self, results: AsyncIterator[Result]) -> None:
        try:
            async for result in results:
                if result.task.id in self._delivered:
                    continue  # a resend's, delivered from its ack
                await self._out.put(
                    pb.ConverseResponse(sequence=result.sequence, reply=_task_reply(result.task))
                )
                self._delivered.add(result.task.id)
                self._awaiting.discard(result.task.id)
                self._changed.set()
        except EdgegateError as exc:
            await self._out.put(exc)
        except Exception as exc:
            log.warning("converse results stopped", error=repr(exc))
            await self._out.put(Unavailable("the results feed broke; reconnect and resume"))


def _task_reply(task: tpb.Task) -> env.Reply:
    """A finished task as the reply the conversation gets."""
    reply = env.Reply()
    if task.HasField("result"):
        reply.CopyFrom(task.result)
    reply.envelope_id = task.envelope.id
    reply.task_id = task.id
    if task.status == tpb.TASK_STATUS_FAILED:
        reply.error.CopyFrom(task.error)
    elif task.status == tpb.TASK_STATUS_CANCELLED:
        reply.error.code = env.ERROR_CODE_CANCELLED
        reply.error.message = "the task was cancelled"
    return reply


def _refused(envelope: env.Envelope, exc: EdgegateError) -> env.Reply:
    reply = env.Reply(envelope_id=envelope.id)
    reply.error.code = int(exc.code)  # type: ignore[assignment]
    reply.error.message = exc.message
    reply.error.details.update(exc.details)
    return reply
