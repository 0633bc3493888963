"""gRPC `edgegate.gateway.v1.Gateway`: the credential from metadata, the pipeline does the rest.

`Send` runs one envelope, routed by the rules: the assistant, inference
when a replica serves its model, else (or when `defer` asks for it) the
taskstore, whose task id the reply carries.

`Converse` is a conversation (`conversations.py`): envelopes in; an ack per
accepted envelope and a reply per finished task out. A client that
reconnects sends `Resume` first with the last sequence it saw. The stream
ends when the client has closed its side and every acked message has had
its reply. What WebSocket and MQTT share comes from the session
(`sessions.py`): at most 32 envelopes run at once (reading pauses past
that), an envelope's reply never comes before its ack, each task's reply
comes once per stream, and a resend of a task that finished before is acked,
then answered with its reply (sequence 0).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from edgegate_common.errors import EdgegateError
from edgegate_common.rpc import authorization
from edgegate_gateway.conversations import Ack, Conversations, conversation_id
from edgegate_gateway.sessions import Session
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2 as pb
from edgegate_protos.gateway.v1 import gateway_pb2_grpc
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext

MAX_QUEUED_RESPONSES = 256  # past it, the session waits (and its results feed fills)


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
        responses = _Responses(conversation)
        session = Session(self._conversations, responses, credential=credential)
        # Following before reading: whatever the client sent has its result delivered.
        await session.follow(principal, conversation, after_sequence=after)
        session.start()
        reading = asyncio.create_task(_read(session, conversation, first, request_iterator))
        try:
            async with contextlib.aclosing(responses.until(reading)) as stream:
                async for response in stream:
                    yield response
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading
            responses.close()
            await session.close()


class _Responses:
    """A Converse stream's side of its session: acks, replies and refusals, in one queue."""

    def __init__(self, conversation: str) -> None:
        self._conversation = conversation
        self._queue: asyncio.Queue[pb.ConverseResponse | EdgegateError] = asyncio.Queue(
            maxsize=MAX_QUEUED_RESPONSES
        )
        self._closed = False

    async def ack(self, ref: env.Envelope, ack: Ack) -> None:
        response = pb.Ack(
            envelope_id=ack.envelope_id,
            idempotency_key=ack.idempotency_key,
            task_id=ack.task_id,
            conversation=self._conversation,
        )
        await self._put(pb.ConverseResponse(ack=response))

    async def result(self, sequence: int, task: tpb.Task) -> None:
        await self._put(pb.ConverseResponse(sequence=sequence, reply=_task_reply(task)))

    async def error(self, ref: env.Envelope, exc: EdgegateError) -> None:
        await self._put(pb.ConverseResponse(reply=_refused(ref, exc)))

    async def fail(self, exc: EdgegateError) -> None:
        await self._put(exc)

    async def until(self, reading: asyncio.Task[None]) -> AsyncGenerator[pb.ConverseResponse]:
        """The responses as they come, until `reading` is done and every one before it went."""
        getting: asyncio.Future[pb.ConverseResponse | EdgegateError] | None = None
        try:
            while True:
                getting = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({getting, reading}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    break
                yield _response(getting.result())
            while not self._queue.empty():
                yield _response(self._queue.get_nowait())
        finally:
            if getting is not None:
                getting.cancel()

    def close(self) -> None:
        """Sends that finish after the stream ended write nowhere, and none waits."""
        self._closed = True
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _put(self, item: pb.ConverseResponse | EdgegateError) -> None:
        if not self._closed:
            await self._queue.put(item)


async def _read(
    session: Session[env.Envelope],
    conversation: str,
    first: pb.ConverseRequest,
    requests: AsyncIterator[pb.ConverseRequest],
) -> None:
    """Submit the client's envelopes; done once it closed its side and all were answered."""
    if first.WhichOneof("kind") == "envelope":
        await _submit(session, first.envelope, conversation)
    async for request in requests:
        if request.WhichOneof("kind") == "envelope":
            await _submit(session, request.envelope, conversation)
    await session.drained()


async def _submit(
    session: Session[env.Envelope], received: env.Envelope, conversation: str
) -> None:
    envelope = env.Envelope()
    envelope.CopyFrom(received)
    envelope.channel = env.CHANNEL_GRPC
    envelope.conversation = conversation
    # The envelope is its own reference: a refusal names the id the pipeline gave it.
    await session.submit(envelope, defer=False, ref=envelope)


def _response(item: pb.ConverseResponse | EdgegateError) -> pb.ConverseResponse:
    if isinstance(item, EdgegateError):
        raise item
    return item


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
