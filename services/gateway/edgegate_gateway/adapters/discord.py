"""Discord interactions: Ed25519-signed requests in, the assistant's answer in the response.

Discord signs every interaction with the application's Ed25519 key:
`X-Signature-Ed25519` is the hex signature of `X-Signature-Timestamp` followed
by the raw body, checked against the application's public key. A bad or
missing signature is 401 (Discord itself sends such requests to check that
the endpoint refuses them). A `PING` (type 1) gets a `PONG` (type 1). An
application command (type 2) with a text option is answered in the response
itself (type 4, `CHANNEL_MESSAGE_WITH_SOURCE`), so nothing goes out twice.
Each interaction id is handled once (`webhook_events`). While the assistant
cannot answer, the response defers (type 5, Discord shows "thinking…"), the
question is kept (`chat_later`), and the answer later replaces the deferred
message through the interaction's webhook, within the 15 minutes Discord
keeps the interaction's token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgegate_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from edgegate_gateway.adapters.chat_later import ChatLater
from edgegate_gateway.adapters.chat_webhook import ChatWebhook
from edgegate_gateway.adapters.http_json import parse_object
from edgegate_gateway.adapters.webhook_events import EventClaims
from edgegate_gateway.assistant import Assistant
from edgegate_protos.common.v1 import envelope_pb2 as env

PING, APPLICATION_COMMAND = 1, 2
PONG, CHANNEL_MESSAGE_WITH_SOURCE, DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 1, 4, 5
TOKEN_LIFETIME_S = 14 * 60  # Discord keeps an interaction token 15 minutes
ANSWER_WITHIN_S = 2.5  # Discord waits 3 s for the response


@dataclass(frozen=True, slots=True)
class DiscordSettings:
    public_key_hex: str
    credential: str  # the gateway's edgegate token for this application's tenant
    api_base: str = "https://discord.com/api/v10"
    send_attempts: int = 3


def verify(public_key: Ed25519PublicKey, headers: dict[str, str], body: bytes) -> None:
    """Raise Unauthenticated unless Discord signed `timestamp + body`."""
    timestamp = headers.get("X-Signature-Timestamp", "")
    try:
        signature = bytes.fromhex(headers.get("X-Signature-Ed25519", ""))
        public_key.verify(signature, timestamp.encode() + body)
    except (ValueError, InvalidSignature):
        raise Unauthenticated("invalid request signature") from None


class DiscordInteractions(ChatWebhook[DiscordSettings]):
    platform = "discord"
    api_name = "Discord interaction webhook"
    channel = env.CHANNEL_DISCORD

    def __init__(
        self,
        settings: DiscordSettings,
        *,
        assistant: Assistant,
        events: EventClaims,
        later: ChatLater,
    ) -> None:
        super().__init__(settings, assistant=assistant, events=events, later=later)
        self._key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(settings.public_key_hex))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/webhooks/discord", self.interaction)

    async def interaction(self, request: web.Request) -> web.Response:
        body = await request.read()
        verify(self._key, dict(request.headers), body)
        payload = parse_object(body)
        kind = payload.get("type")
        if kind == PING:
            return web.json_response({"type": PONG})
        if kind != APPLICATION_COMMAND:
            raise InvalidArgument(f"interaction type {kind!r} is not handled")
        interaction_id = payload.get("id")
        if not isinstance(interaction_id, str) or not interaction_id:
            raise InvalidArgument("an interaction needs an id", details={"param": "id"})
        question = _option_text(payload.get("data"))
        if question is None:
            raise InvalidArgument("the command needs a text option (the question)")
        follow_up = _follow_up(payload)
        async with self._events.once(self.platform, interaction_id) as first:
            if not first:
                content = "This question was answered already."
            else:
                try:
                    # Discord waits 3 s for the response: a slower answer comes later.
                    asked = self.ask(question, follow_up)
                    content = await asyncio.wait_for(asked, ANSWER_WITHIN_S)
                except (Unavailable, TimeoutError):
                    if follow_up is None:
                        raise Unavailable("the assistant cannot answer right now") from None
                    await self._later.keep(self.platform, interaction_id, question, follow_up)
                    return web.json_response({"type": DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE})
        return web.json_response(
            {"type": CHANNEL_MESSAGE_WITH_SOURCE, "data": {"content": content[:2000]}}
        )

    async def send(self, text: str, reply_to: Mapping[str, Any]) -> None:
        """A kept question's answer replaces the deferred message."""
        if time.time() > float(reply_to["expires_at"]):
            raise FailedPrecondition("the interaction's token expired before an answer came")
        await self._api.post(
            f"{self._settings.api_base.rstrip('/')}/webhooks/{reply_to['application_id']}/"
            f"{reply_to['token']}/messages/@original",
            {"content": text[:2000]},
            method="PATCH",
            error=lambda doc: doc.get("message"),
        )


def _follow_up(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Where a deferred answer goes: the interaction's webhook (None if the payload lacks it)."""
    application_id, token = payload.get("application_id"), payload.get("token")
    if not isinstance(application_id, str) or not isinstance(token, str) or not token:
        return None
    expires_at = time.time() + TOKEN_LIFETIME_S
    return {"application_id": application_id, "token": token, "expires_at": expires_at}


def _option_text(data: object) -> str | None:
    """The first string option of the command: `/ask question: ...`."""
    if not isinstance(data, dict):
        return None
    options = data.get("options")
    for option in options if isinstance(options, list) else []:
        if isinstance(option, dict) and isinstance(option.get("value"), str) and option["value"]:
            return str(option["value"])
    return None
