"""Discord interactions: Ed25519-signed requests in, the assistant's answer in the response.

Discord signs every interaction with the application's Ed25519 key:
`X-Signature-Ed25519` is the hex signature of `X-Signature-Timestamp` followed
by the raw body, checked against the application's public key. A bad or
missing signature is 401 (Discord itself sends such requests to check that
the endpoint refuses them). A `PING` (type 1) gets a `PONG` (type 1). An
application command (type 2) with a text option is answered in the response
itself (type 4, `CHANNEL_MESSAGE_WITH_SOURCE`), so nothing goes out twice.
Each interaction id is handled once (`webhook_events`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgegate_common.errors import InvalidArgument, Unauthenticated
from edgegate_gateway.adapters.webhook_events import EventClaims
from edgegate_gateway.assistant import Assistant

PING, APPLICATION_COMMAND = 1, 2
PONG, CHANNEL_MESSAGE_WITH_SOURCE = 1, 4


@dataclass(frozen=True, slots=True)
class DiscordSettings:
    public_key_hex: str
    credential: str  # the gateway's edgegate token for this application's tenant


def verify(public_key: Ed25519PublicKey, headers: dict[str, str], body: bytes) -> None:
    """Raise Unauthenticated unless Discord signed `timestamp + body`."""
    timestamp = headers.get("X-Signature-Timestamp", "")
    try:
        signature = bytes.fromhex(headers.get("X-Signature-Ed25519", ""))
        public_key.verify(signature, timestamp.encode() + body)
    except (ValueError, InvalidSignature):
        raise Unauthenticated("invalid request signature") from None


class DiscordInteractions:
    def __init__(
        self, settings: DiscordSettings, *, assistant: Assistant, events: EventClaims
    ) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(settings.public_key_hex))
        self._credential = settings.credential
        self._assistant = assistant
        self._events = events

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/webhooks/discord", self.interaction)

    async def close(self) -> None:
        return None

    async def interaction(self, request: web.Request) -> web.Response:
        body = await request.read()
        verify(self._key, dict(request.headers), body)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("the body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise InvalidArgument("the body must be a JSON object")
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
        async with self._events.once("discord", interaction_id) as first:
            if not first:
                content = "This question was answered already."
            else:
                content = (await self._assistant.ask(question, credential=self._credential)).text
        return web.json_response(
            {"type": CHANNEL_MESSAGE_WITH_SOURCE, "data": {"content": content[:2000]}}
        )


def _option_text(data: object) -> str | None:
    """The first string option of the command: `/ask question: ...`."""
    if not isinstance(data, dict):
        return None
    options = data.get("options")
    for option in options if isinstance(options, list) else []:
        if isinstance(option, dict) and isinstance(option.get("value"), str) and option["value"]:
            return str(option["value"])
    return None
