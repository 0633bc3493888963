"""What every chat webhook shares: ask the assistant, send the answer, or keep it for later.

A platform's webhook (Telegram, Slack, WhatsApp, Discord) verifies and reads
its own requests and knows its own send API (`send`). The rest is the same
for all of them and lives here: asking the assistant with the webhook's
credential, keeping a question for later while the assistant cannot answer
(`chat_later`), and treating a platform's refusal of an answer as final.

A question goes to the assistant with the webhook's channel and, in the
envelope's metadata under `REPLY_TO`, the JSON of where its answer goes (the
same `reply_to` that `send` takes). A question nobody could answer becomes
an escalation task carrying both, so that a person's answer to it can be
sent through the platform later (`escalation_replies`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from edgegate_common.errors import FailedPrecondition, Unavailable
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.chat_later import Answerer, ChatLater
from edgegate_gateway.adapters.platform_api import PlatformApi
from edgegate_gateway.adapters.webhook_events import EventClaims
from edgegate_gateway.assistant import Assistant
from edgegate_protos.common.v1 import envelope_pb2 as env

log = get_logger(__name__)

# Envelope metadata: the JSON object `send` takes to answer the question on its platform.
REPLY_TO = "chat.reply_to"


class Outcome(enum.Enum):
    ANSWERED = "answered"
    QUEUED = "queued"  # kept until the assistant can answer
    REFUSED = "refused"  # the platform refused the answer; retrying would not help


@dataclass(frozen=True, slots=True)
class Answered:
    outcome: Outcome
    refusal: str = ""  # why the platform refused it

    def response(self) -> dict[str, Any]:
        """What the webhook tells the platform (always 200: the event is handled)."""
        if self.outcome is Outcome.QUEUED:
            return {"ok": True, "queued": True}
        if self.outcome is Outcome.REFUSED:
            return {"ok": True, "refused": self.refusal}
        return {"ok": True}


class WebhookSettings(Protocol):
    @property
    def credential(self) -> str:  # the gateway's edgegate token for the platform's tenant
        ...

    @property
    def send_attempts(self) -> int: ...


Settings = TypeVar("Settings", bound=WebhookSettings)


class ChatWebhook(Generic[Settings]):
    platform: ClassVar[str]  # the name in event claims and kept questions
    api_name: ClassVar[str]  # the send API, for errors and logs
    channel: ClassVar[env.Channel.ValueType]  # the envelopes' channel

    def __init__(
        self,
        settings: Settings,
        *,
        assistant: Assistant,
        events: EventClaims,
        later: ChatLater,
    ) -> None:
        self._settings = settings
        self._credential = settings.credential
        self._assistant = assistant
        self._events = events
        self._later = later
        self._api = PlatformApi(self.api_name, attempts=settings.send_attempts)

    async def close(self) -> None:
        await self._api.close()

    def answerer(self) -> Answerer:
        """How a kept question (`chat_later`) is answered: asked again, then sent."""
        return Answerer(ask=self.ask, send=self.send)

    async def ask(self, question: str, reply_to: Mapping[str, Any] | None) -> str:
        """The assistant's answer; `reply_to` goes with the question (see `REPLY_TO`)."""
        metadata = {REPLY_TO: json.dumps(dict(reply_to))} if reply_to else {}
        asked = await self._assistant.ask(
            question, credential=self._credential, channel=self.channel, metadata=metadata
        )
        return asked.text

    async def send(self, text: str, reply_to: Mapping[str, Any]) -> None:
        """Send `text` through the platform's API, as a reply to what `reply_to` names."""
        raise NotImplementedError

    async def answer(self, event_id: str, question: str, reply_to: Mapping[str, Any]) -> Answered:
        """Ask and send; keep the question for later while the assistant cannot answer."""
        try:
            text = await self.ask(question, reply_to)
        except Unavailable:
            await self._later.keep(self.platform, event_id, question, reply_to)
            return Answered(Outcome.QUEUED)
        try:
            await self.send(text, reply_to)
        except FailedPrecondition as refused:  # the platform would refuse its retries too
            log.warning("the platform refused the answer", api=self.api_name, why=refused.message)
            return Answered(Outcome.REFUSED, refused.message)
        return Answered(Outcome.ANSWERED)
