"""A person's answer to an escalated chat question, sent through the platform it was asked on.

A question the assistant could not answer becomes an escalation task (see
`assistant.py`); one asked through a chat webhook carries its channel and
where an answer goes (`chat_webhook.REPLY_TO`). When a person answers it,
the taskstore stores the task completed and publishes its finish on the task
events stream, as for any task. WebSocket, MQTT and the task API deliver
those themselves; a chat platform has no connection to deliver on, so this
worker sends the answer through the platform's send API.

One durable consumer on `EDGEGATE_TASK_EVENTS` (`DURABLE`), shared by every
gateway replica, reads each finish once; events of other tasks are
acknowledged and skipped. The send is at most once, as for `chat_later`: it
is claimed first (`<platform>-sent` / `escalation-<task id>` in
`edgegate-webhook-events`) and the claim is kept whatever happens to the
send, so neither a redelivered event nor another replica sends it again. A
send the platform refuses or that fails after its claim is logged; the
answer stays in the task for the task API and the console. A Discord answer
can only replace the interaction's message while Discord keeps its token
(15 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from edgegate_common import subjects
from edgegate_common.errors import EdgegateError
from edgegate_common.logging import get_logger
from edgegate_common.tasks import ESCALATION_MODEL
from edgegate_gateway.adapters.chat_webhook import REPLY_TO, ChatWebhook
from edgegate_gateway.adapters.webhook_events import EventClaims
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)

DURABLE = "edgegate-escalation-replies"
RETRY_S = 5.0  # how soon the worker starts again after it stopped (no events stream yet, say)
ACK_WAIT_S = 300  # longer than one batch's sends can take (the platforms' 429 waits included)
BATCH = 32
# A chat answer for a platform this replica has no webhook for is left to another replica,
# this many deliveries at most (every replica normally has the same webhooks).
MAX_DELIVERIES = 10

CHAT_CHANNELS = frozenset(
    {env.CHANNEL_TELEGRAM, env.CHANNEL_SLACK, env.CHANNEL_WHATSAPP, env.CHANNEL_DISCORD}
)

Sender = ChatWebhook[Any]


class EscalationReplies:
    def __init__(self, js: JetStreamContext, events: EventClaims) -> None:
        self._js = js
        self._events = events
        self._worker: asyncio.Task[None] | None = None
        self._subscription: Any = None

    def start(self, senders: Mapping[env.Channel.ValueType, Sender]) -> None:
        """Send escalation answers of the channels in `senders` through them."""
        self._worker = asyncio.get_running_loop().create_task(self._work(dict(senders)))

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        if self._subscription is not None:
            # A pull subscription left open keeps the connection's drain waiting.
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _work(self, senders: dict[env.Channel.ValueType, Sender]) -> None:
        while True:
            try:
                await self._unsubscribe()
                self._subscription = await self._js.pull_subscribe(
                    subjects.TASKSTORE_EVENTS_ALL,
                    durable=DURABLE,
                    stream=subjects.STREAM_TASK_EVENTS,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.EXPLICIT,
                        ack_wait=ACK_WAIT_S,
                        # Created once for every replica: finishes from then on.
                        deliver_policy=DeliverPolicy.NEW,
                    ),
                )
                await self._drain(self._subscription, senders)
            except asyncio.CancelledError:
                raise
            except nats.js.errors.NotFoundError:
                log.info("escalation replies wait for the taskstore's events stream")
                await asyncio.sleep(RETRY_S)
            except Exception:
                log.exception("escalation replies stopped; starting again")
                await asyncio.sleep(RETRY_S)

    async def _drain(self, subscription: Any, senders: dict[env.Channel.ValueType, Sender]) -> None:
        while True:
            try:
                messages = await subscription.fetch(BATCH, timeout=5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for message in messages:
                try:
                    await self._handle(message, senders)
                except Exception:
                    log.exception("escalation answer not handled; it comes back later")
                    with contextlib.suppress(Exception):
                        await message.nak(delay=RETRY_S)

    async def _handle(self, message: Any, senders: dict[env.Channel.ValueType, Sender]) -> None:
        task = _chat_escalation(message.data)
        if task is None:
            await message.ack()
            return
        sender = senders.get(task.envelope.channel)
        if sender is None:
            if message.metadata.num_delivered < MAX_DELIVERIES:
                await message.nak(delay=RETRY_S)  # perhaps another replica has the webhook
                return
            log.error(
                "escalation answer not sent: no webhook for its channel",
                task=task.id,
                channel=env.Channel.Name(task.envelope.channel),
            )
            await message.term()
            return
        await message.in_progress()  # the batch's earlier sends took part of the ack wait
        await self._send(sender, task)
        await message.ack()

    async def _send(self, sender: Sender, task: tpb.Task) -> None:
        """Send the task's answer once (claimed first); a failure is logged, not retried."""
        texts = [p.text for p in task.result.parts if p.WhichOneof("content") == "text"]
        reply_to = _reply_to(task.envelope)
        if not texts or reply_to is None:
            log.error("escalation answer not sent: no text or no reply address", task=task.id)
            return
        if not await self._events.claim(f"{sender.platform}-sent", f"escalation-{task.id}"):
            return  # sent (or being sent) already
        try:
            await sender.send("\n\n".join(texts), reply_to)
        except EdgegateError as exc:
            log.error(
                "escalation answer not sent",
                platform=sender.platform,
                task=task.id,
                why=exc.message,
            )
            return
        log.info("escalation answer sent", platform=sender.platform, task=task.id)


def _chat_escalation(data: bytes) -> tpb.Task | None:
    """The finished task an event carries if it is an answered chat escalation, else None."""
    task = tpb.Task()
    try:
        task.ParseFromString(data)
    except DecodeError:
        return None
    answered = task.status == tpb.TASK_STATUS_COMPLETED
    escalated = task.envelope.route.model == ESCALATION_MODEL
    chat = task.envelope.channel in CHAT_CHANNELS and REPLY_TO in task.envelope.metadata
    return task if answered and escalated and chat else None


def _reply_to(envelope: env.Envelope) -> dict[str, Any] | None:
    try:
        reply_to = json.loads(envelope.metadata[REPLY_TO])
    except ValueError:
        return None
    return reply_to if isinstance(reply_to, dict) else None
