"""Chat questions the assistant cannot answer yet, kept in JetStream until it can.

When a chat webhook's question meets an assistant that is not ready (its
model offline, its knowledge base still being embedded), the webhook keeps
the question here and tells the platform it has it (200). A worker shared by
every gateway replica (one durable consumer on the work-queue stream
`EDGEGATE_CHAT_LATER`) tries each question again every few seconds. Once
the assistant answers, the answer goes out through the platform's send API
and the question leaves the stream.

The answer is sent at most once. The assistant is asked first; only then
is the send claimed (`<platform>-sent` in `edgegate-webhook-events`), and the
claim is kept whatever happens to the send. A worker that dies after sending
and before acknowledging therefore does not send it again, and neither does
another replica; a send that fails (or dies) after its claim loses that one
answer rather than risk a second copy.

A question meets the assistant again while the failure is one that passes:
UNAVAILABLE, RESOURCE_EXHAUSTED (the webhook tenant's rate limit), or
DEADLINE_EXCEEDED. Any other refusal drops it with a log line, and so does
a day without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from edgegate_common import subjects
from edgegate_common.bus import ensure_stream
from edgegate_common.errors import (
    DeadlineExceeded,
    EdgegateError,
    ResourceExhausted,
    Unavailable,
)
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.webhook_events import EventClaims

log = get_logger(__name__)

DURABLE = "edgegate-chat-later"
RETRY_S = 5.0  # how soon a question the assistant still cannot answer is tried again
ACK_WAIT_S = 300  # longer than one question can take (asking, then the platform's 429 waits)
# Failures that pass: the question meets the assistant again later.
PASSING = (Unavailable, ResourceExhausted, DeadlineExceeded)
KEEP_S = 24 * 3600  # a question unanswered this long is dropped (and logged)


@dataclass(frozen=True, slots=True)
class Answerer:
    """How one platform answers a kept question: ask the assistant, then send the answer."""

    ask: Callable[[str, Mapping[str, Any]], Awaitable[str]]  # (question, reply_to)
    send: Callable[[str, Mapping[str, Any]], Awaitable[None]]


class ChatLater:
    def __init__(self, js: JetStreamContext, events: EventClaims) -> None:
        self._js = js
        self._events = events
        self._worker: asyncio.Task[None] | None = None
        self._subscription: Any = None

    @classmethod
    async def open(
        cls, js: JetStreamContext, events: EventClaims, *, replicas: int = 1
    ) -> ChatLater:
        await ensure_stream(
            js,
            StreamConfig(
                name=subjects.STREAM_CHAT_LATER,
                subjects=[subjects.GATEWAY_CHAT_LATER_ALL],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=replicas,
                max_age=KEEP_S,
                duplicate_window=KEEP_S,
            ),
        )
        return cls(js, events)

    async def keep(
        self, platform: str, event_id: str, question: str, reply_to: Mapping[str, Any]
    ) -> None:
        """Keep a question for later (once per platform event, however often it is kept)."""
        body = {
            "platform": platform,
            "event_id": event_id,
            "question": question,
            "reply_to": dict(reply_to),
        }
        try:
            await self._js.publish(
                subjects.gateway_chat_later(platform),
                json.dumps(body).encode(),
                headers={"Nats-Msg-Id": f"{platform}/{event_id}"},
            )
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot keep the question for later: {exc!r}") from exc
        log.info("chat question kept until the assistant can answer", platform=platform)

    def start(self, answerers: Mapping[str, Answerer]) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(dict(answerers)))

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._subscription is not None:
            # A pull subscription left open keeps the connection's drain waiting.
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    async def _work(self, answerers: dict[str, Answerer]) -> None:
        while True:
            try:
                if self._subscription is not None:
                    with contextlib.suppress(Exception):
                        await self._subscription.unsubscribe()
                self._subscription = await self._js.pull_subscribe(
                    subjects.GATEWAY_CHAT_LATER_ALL,
                    durable=DURABLE,
                    stream=subjects.STREAM_CHAT_LATER,
                    config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S),
                )
                await self._drain(self._subscription, answerers)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("chat-later worker stopped; starting again")
                await asyncio.sleep(RETRY_S)

    async def _drain(self, subscription: Any, answerers: dict[str, Answerer]) -> None:
        while True:
            try:
                # One at a time: a question may take a while (an inference timeout, a
                # platform's 429), and the others must not sit past their ack wait meanwhile.
                messages = await subscription.fetch(1, timeout=5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for message in messages:
                try:
                    await self._answer(message, answerers)
                except Exception:
                    log.exception("kept chat question failed; it comes back later")
                    with contextlib.suppress(Exception):
                        await message.nak(delay=RETRY_S)

    async def _answer(self, message: Any, answerers: dict[str, Answerer]) -> None:
        try:
            kept = json.loads(message.data)
            platform, event_id = str(kept["platform"]), str(kept["event_id"])
            question, reply_to = str(kept["question"]), dict(kept["reply_to"])
        except (ValueError, KeyError, TypeError):
            log.error("a kept chat question does not parse; dropped")
            await message.term()
            return
        answer = answerers.get(platform)
        if answer is None:  # another replica (or a newer version) has this platform
            await message.nak(delay=RETRY_S)
            return
        try:
            text = await answer.ask(question, reply_to)
        except PASSING as exc:
            log.info("kept chat question waits", platform=platform, why=exc.message)
            await message.nak(delay=RETRY_S)
            return
        except EdgegateError as exc:
            log.error("kept chat question refused; dropped", platform=platform, why=exc.message)
            await message.term()
            return
        if not await self._events.claim(f"{platform}-sent", event_id):
            await message.ack()  # another worker took it and sends it
            return
        try:
            await answer.send(text, reply_to)
        except Exception as exc:
            log.error("kept chat answer not sent; dropped", platform=platform, why=repr(exc))
            await message.term()
            return
        await message.ack()
