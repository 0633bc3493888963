"""WebSocket `/ws`: JSON frames in both directions, resumable after a disconnect.

Client → gateway, each a JSON object with a `type`:

- `authenticate` (first, within 10 s): `token`, and optionally
  `conversation` (to continue one) and `after_sequence` (the last result
  sequence the client has). Answered by `ready` with the conversation id.
- `send`: `text` for `model` (a model the gateway serves, or
  `edgegate-assistant`), with optional `id` (echoed back),
  `idempotency_key` (a resend with the same key is the same message),
  `version`, `priority` (`high`/`normal`/`low`) and `defer` (queue it even
  if it could run now). Answered by `ack` once the message is stored for
  good, or by `error`.
- `ping`: answered by `pong`.

Gateway → client: `ready`, `ack`, `pong`, `error` (`code` as gRPC names it,
`message`, and the `id` of the frame it answers), and `result`: a
`sequence` and the finished `task` as `/v1/tasks` shows it; a message's
result never comes before its ack. A resend of a message that finished
before gets its result right after the ack, with sequence 0. Results come
from the taskstore (`conversations.py`), so none is lost while the client is
away and none comes twice after a resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from edgegate_common.errors import (
    Code,
    EdgegateError,
    Internal,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.http_json import text_field
from edgegate_gateway.adapters.json_messages import error_frame, frame_object, message_envelope
from edgegate_gateway.adapters.tasks_http import task_json
from edgegate_gateway.conversations import Conversations, Follow, conversation_id
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)

AUTHENTICATE_WITHIN_S = 10.0
MAX_IN_FLIGHT = 32  # sends one connection may have running; past it, reading pauses
HEARTBEAT_S = 30.0  # WebSocket-level pings; a client that never answers is dropped


class WebSocketAdapter:
    def __init__(self, conversations: Conversations, *, max_frame_bytes: int) -> None:
        self._conversations = conversations
        self._max_frame_bytes = max_frame_bytes

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self.connect)

    async def connect(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=self._max_frame_bytes)
        await ws.prepare(request)
        session = _Session(ws, self._conversations)
        try:
            await session.run()
        finally:
            await session.close()
        return ws


class _Session:
    """One connection: authenticate, then sends and results until either side leaves."""

    def __init__(self, ws: web.WebSocketResponse, conversations: Conversations) -> None:
        self._ws = ws
        self._conversations = conversations
        self._writing = asyncio.Lock()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._running: set[asyncio.Task[None]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._follow: Follow | None = None
        self._delivered: set[str] = set()  # task ids whose result this session sent
        # Sends not acked yet, by idempotency key: their results wait for the ack.
        self._acking: dict[str, asyncio.Event] = {}

    async def run(self) -> None:
        try:
            hello = await asyncio.wait_for(self._ws.receive(), AUTHENTICATE_WITHIN_S)
        except TimeoutError:
            await self._fail(Unauthenticated("no authenticate frame within 10 s"))
            return
        try:
            credential, principal, conversation, after = await self._authenticate(hello)
            # Following before `ready`: whatever the client sends next has its result delivered.
            self._follow = await self._conversations.follow(
                principal, conversation, after_sequence=after
            )
        except EdgegateError as exc:
            await self._fail(exc)
            return
        self._pump = asyncio.create_task(self._push_results(self._follow))
        await self._write({"type": "ready", "conversation": conversation, "after_sequence": after})
        async for message in self._ws:
            if message.type != WSMsgType.TEXT:
                await self._error(InvalidArgument("frames are JSON text"), None)
                continue
            await self._frame(message.data, credential, conversation)

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        for running in [*self._running, *([self._pump] if self._pump else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running
        if self._follow is not None:
            await self._follow.close()
        await self._ws.close()

    async def _authenticate(self, hello: Any) -> tuple[str, principal_pb2.Principal, str, int]:
        if hello.type != WSMsgType.TEXT:
            raise Unauthenticated("the first frame must be a JSON 'authenticate' frame")
        frame = frame_object(hello.data)
        if frame.get("type") != "authenticate":
            raise Unauthenticated("the first frame must be of type 'authenticate'")
        token = frame.get("token")
        if not isinstance(token, str) or not token:
            raise Unauthenticated("'authenticate' needs a 'token'")
        after = frame.get("after_sequence", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise InvalidArgument("'after_sequence' must be a non-negative integer")
        conversation = conversation_id(text_field(frame, "conversation", required=False))
        credential = f"Bearer {token}"
        principal = await self._conversations.authenticate(credential)
        return credential, principal, conversation, after

    async def _frame(self, data: str, credential: str, conversation: str) -> None:
        try:
            frame = frame_object(data)
        except EdgegateError as exc:
            await self._error(exc, None)
            return
        frame_id = frame.get("id") if isinstance(frame.get("id"), str) else None
        kind = frame.get("type")
        if kind == "ping":
            await self._write({"type": "pong", "id": frame_id})
        elif kind == "send":
            await self._slots.acquire()
            running = asyncio.create_task(self._send(frame, frame_id, credential, conversation))
            self._running.add(running)
            running.add_done_callback(self._running.discard)
        else:
            await self._error(
                InvalidArgument(f"unknown frame type {kind!r}; expected send or ping"), frame_id
            )

    async def _send(
        self, frame: dict[str, Any], frame_id: str | None, credential: str, conversation: str
    ) -> None:
        acked = asyncio.Event()
        key = ""
        try:
            envelope, defer = message_envelope(frame, env.CHANNEL_WEBSOCKET, conversation)
            if not envelope.idempotency_key:
                envelope.idempotency_key = uuid.uuid4().hex
            key = envelope.idempotency_key
            self._acking.setdefault(key, acked)
            ack = await self._conversations.send(envelope, credential=credential, defer=defer)
            await self._write(
                {
                    "type": "ack",
                    "id": frame_id,
                    "task_id": ack.task_id,
                    "envelope_id": ack.envelope_id,
                    "idempotency_key": ack.idempotency_key,
                }
            )
            if ack.finished is not None:  # a resend: its result went out long ago
                await self._result(0, ack.finished)
        except EdgegateError as exc:
            await self._error(exc, frame_id)
        except Exception:
            log.exception("websocket send failed")
            await self._error(Internal("the gateway failed; see its log"), frame_id)
        finally:
            if self._acking.get(key) is acked:
                del self._acking[key]
            acked.set()
            self._slots.release()

    async def _push_results(self, follow: Follow) -> None:
        try:
            async for result in follow.results():
                acking = self._acking.get(result.task.envelope.idempotency_key)
                if acking is not None:  # an answer given inline beats its own ack here
                    await acking.wait()
                await self._result(result.sequence, result.task)
        except EdgegateError as exc:
            # Too far behind: the client resumes from the last sequence it has.
            await self._fail(exc)
        except Exception as exc:
            log.warning("websocket results stopped", error=repr(exc))
            await self._fail(Unavailable("the results feed broke; reconnect and resume"))

    async def _result(self, sequence: int, task: tpb.Task) -> None:
        """A task's result, once per session (a resend's may come from its ack or the feed)."""
        if task.id in self._delivered:
            return
        self._delivered.add(task.id)
        await self._write({"type": "result", "sequence": sequence, "task": task_json(task)})

    async def _write(self, frame: dict[str, Any]) -> None:
        async with self._writing:
            if not self._ws.closed:
                await self._ws.send_str(json.dumps(frame))

    async def _error(self, exc: EdgegateError, frame_id: str | None) -> None:
        await self._write(error_frame(exc, frame_id))

    async def _fail(self, exc: EdgegateError) -> None:
        """An error frame, then close: the session cannot go on (1013: resume later)."""
        with contextlib.suppress(Exception):
            await self._error(exc, None)
        later = exc.code in (Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED)
        code = WSCloseCode.TRY_AGAIN_LATER if later else WSCloseCode.POLICY_VIOLATION
        await self._ws.close(code=code, message=exc.code.name.encode())
