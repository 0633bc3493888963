"""Pipelined JetStream publishes for the audit writer, and what each ack says.

`log.AuditLog` publishes a burst of records before awaiting any ack; `Acks`
matches the acks to the publishes and reads each as the stored sequence or
the reason it was refused (`Refusal`).
"""

from __future__ import annotations

import asyncio
import enum
import json

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from edgegate_common.bus import Bus
from edgegate_common.logging import get_logger

log = get_logger(__name__)

# JetStream's refusals when the stream moved on: wrong last sequence, wrong last message id.
_CONFLICT_CODES = frozenset({10071, 10070})


class Refusal(enum.Enum):
    """Why a record of a burst, and with it every later one, was not stored."""

    CONFLICT = "another writer appended first"
    OTHER = "refused"  # a 503 while JetStream restarts, or any other API error
    NO_ACK = "no ack"  # timed out: stored or not, nobody knows yet


class Acks:
    """Acks of pipelined JetStream publishes, on a wildcard inbox of our own.

    nats-py's `publish_async` would do, but in nats-py 2.16 a refused publish
    never resolves its future (the error is raised inside the reply callback),
    and a refusal is exactly what the writer has to see.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._prefix = ""
        self._subscription: Subscription | None = None
        self._waiting: dict[str, asyncio.Future[int | Refusal]] = {}
        self._count = 0

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str]
    ) -> asyncio.Future[int | Refusal]:
        """Publish; the future gives the stored stream sequence, or why it was refused."""
        if self._subscription is None:
            self._prefix = self._bus.new_inbox()
            self._subscription = await self._bus.subscribe(f"{self._prefix}.*", cb=self._on_ack)
        self._count += 1
        reply = f"{self._prefix}.{self._count}"
        future: asyncio.Future[int | Refusal] = asyncio.get_running_loop().create_future()
        self._waiting[reply] = future
        await self._bus.publish(subject, data, reply=reply, headers=headers)
        return future

    async def _on_ack(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject, None)
        if future is not None and not future.done():
            future.set_result(stored_seq(msg))

    def forget(self) -> None:
        """Stop waiting for the acks still out; a late one is then ignored."""
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def close(self) -> None:
        self.forget()
        if self._subscription is not None:
            await self._bus.unsubscribe(self._subscription, drain=False)


def stored_seq(msg: Msg) -> int | Refusal:
    """The stream sequence a JetStream ack reports, or why the publish was refused."""
    try:
        body = json.loads(msg.data)
    except ValueError:  # a 503 status message: no stream (yet) to take it
        return Refusal.OTHER
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        if body["error"].get("err_code") in _CONFLICT_CODES:
            return Refusal.CONFLICT
        log.info("audit publish refused", error=str(body["error"]))
        return Refusal.OTHER
    seq = body.get("seq") if isinstance(body, dict) else None
    return seq if isinstance(seq, int) and seq > 0 else Refusal.OTHER
