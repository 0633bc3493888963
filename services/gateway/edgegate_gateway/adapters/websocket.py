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
`sequence` and the finished `task` as `/v1/tasks` shows it. Results come
from the taskstore (`conversations.py`), so none is lost while the client is
away and none comes twice after a resume.

What gRPC `Converse` and MQTT share comes from the session (`sessions.py`):
at most 32 sends run at once (past that the gateway stops reading frames), a
message's result never comes before its ack, each task's result comes once
per connection, and a resend of a message that finished before gets its
result right after the ack, with sequence 0 (unless this connection had it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from edgegate_common.errors import Code, EdgegateError, InvalidArgument, Unauthenticated
from edgegate_gateway.adapters.http_json import text_field
from edgegate_gateway.adapters.json_messages import error_frame, frame_object, message_envelope
from edgegate_gateway.adapters.tasks_http import task_json
from edgegate_gateway.conversations import Ack, Conversations, conversation_id
from edgegate_gateway.sessions import Session
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

AUTHENTICATE_WITHIN_S = 10.0
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
        connection = _Connection(ws, self._conversations)
        try:
            await connection.run()
        finally:
            await connection.close()
        return ws


class _Connection:
    """One connection: authenticate, then frames in and out until either side leaves."""

    def __init__(self, ws: web.WebSocketResponse, conversations: Conversations) -> None:
        self._ws = ws
        self._frames = _Frames(ws)
        self._conversations = conversations
        self._session: Session[str | None] | None = None

    async def run(self) -> None:
        try:
            hello = await asyncio.wait_for(self._ws.receive(), AUTHENTICATE_WITHIN_S)
        except TimeoutError:
            await self._frames.fail(Unauthenticated("no authenticate frame within 10 s"))
            return
        try:
            credential, principal, conversation, after = await self._authenticate(hello)
            session = Session(self._conversations, self._frames, credential=credential)
            self._session = session
            # Following before `ready`: whatever the client sends next has its result delivered.
            await session.follow(principal, conversation, after_sequence=after)
        except EdgegateError as exc:
            await self._frames.fail(exc)
            return
        await self._frames.write(
            {"type": "ready", "conversation": conversation, "after_sequence": after}
        )
        session.start()
        async for message in self._ws:
            if message.type != WSMsgType.TEXT:
                await self._frames.error(None, InvalidArgument("frames are JSON text"))
                continue
            await self._frame(session, message.data, conversation)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
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

    async def _frame(self, session: Session[str | None], data: str, conversation: str) -> None:
        try:
            frame = frame_object(data)
        except EdgegateError as exc:
            await self._frames.error(None, exc)
            return
        frame_id = frame.get("id") if isinstance(frame.get("id"), str) else None
        kind = frame.get("type")
        if kind == "ping":
            await self._frames.write({"type": "pong", "id": frame_id})
        elif kind == "send":
            try:
                envelope, defer = message_envelope(frame, env.CHANNEL_WEBSOCKET, conversation)
            except EdgegateError as exc:
                await self._frames.error(frame_id, exc)
                return
            await session.submit(envelope, defer=defer, ref=frame_id)
        else:
            unknown = InvalidArgument(f"unknown frame type {kind!r}; expected send or ping")
            await self._frames.error(frame_id, unknown)


class _Frames:
    """A connection's side of its session: JSON frames, one written at a time.

    A reference is the `id` of the client's frame (None when it gave none)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self._writing = asyncio.Lock()

    async def ack(self, ref: str | None, ack: Ack) -> None:
        await self.write(
            {
                "type": "ack",
                "id": ref,
                "task_id": ack.task_id,
                "envelope_id": ack.envelope_id,
                "idempotency_key": ack.idempotency_key,
            }
        )

    async def result(self, sequence: int, task: tpb.Task) -> None:
        await self.write({"type": "result", "sequence": sequence, "task": task_json(task)})

    async def error(self, ref: str | None, exc: EdgegateError) -> None:
        await self.write(error_frame(exc, ref))

    async def fail(self, exc: EdgegateError) -> None:
        """An error frame, then close: the session cannot go on (1013: resume later)."""
        with contextlib.suppress(Exception):
            await self.error(None, exc)
        later = exc.code in (Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED)
        code = WSCloseCode.TRY_AGAIN_LATER if later else WSCloseCode.POLICY_VIOLATION
        await self._ws.close(code=code, message=exc.code.name.encode())

    async def write(self, frame: dict[str, Any]) -> None:
        async with self._writing:
            if not self._ws.closed:
                await self._ws.send_str(json.dumps(frame))
