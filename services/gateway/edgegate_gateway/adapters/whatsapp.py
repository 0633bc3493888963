"""WhatsApp Cloud API: the webhook in, the assistant's answer out through `/messages`.

- **Handshake.** `GET /webhooks/whatsapp` with `hub.mode=subscribe` and the
  configured `hub.verify_token` echoes `hub.challenge`; anything else is 403.
- **Signature.** Every `POST` carries `X-Hub-Signature-256: sha256=<hex
  HMAC-SHA256 of the raw body under the app secret>`; a missing or wrong
  one is 401, checked before anything is parsed.
- **Messages.** Each text message in `entry[].changes[].value.messages[]`
  is handled once per message id (`webhook_events`); status updates are
  acknowledged and ignored.
- **Answer.** It goes to the sender as a reply to their message. A 429 is
  retried after its `Retry-After`, and nothing else is retried.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edgegate_common.errors import (
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.chat_webhook import ChatWebhook, Outcome
from edgegate_gateway.adapters.http_json import parse_object
from edgegate_protos.common.v1 import envelope_pb2 as env

log = get_logger(__name__)
MAX_MESSAGE_CHARS = 4096  # a text message's body is at most this long


@dataclass(frozen=True, slots=True)
class WhatsAppSettings:
    app_secret: str
    verify_token: str
    access_token: str
    credential: str  # the gateway's edgegate token for this business account's tenant
    api_base: str = "https://graph.facebook.com/v21.0"
    send_attempts: int = 3


def signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class _Message:
    id: str
    sender: str
    phone_number_id: str
    text: str

    def reply_to(self) -> dict[str, str]:
        """Where the answer goes; the text stays out (it travels masked, in the parts)."""
        return {"id": self.id, "sender": self.sender, "phone_number_id": self.phone_number_id}


class WhatsAppWebhook(ChatWebhook[WhatsAppSettings]):
    platform = "whatsapp"
    api_name = "WhatsApp /messages"
    channel = env.CHANNEL_WHATSAPP

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/webhooks/whatsapp", self.handshake)
        app.router.add_post("/webhooks/whatsapp", self.notification)

    async def handshake(self, request: web.Request) -> web.Response:
        query = request.query
        token = query.get("hub.verify_token", "")
        if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            token.encode(), self._settings.verify_token.encode()
        ):
            raise PermissionDenied("the verify token does not match")
        return web.Response(text=query.get("hub.challenge", ""))

    async def notification(self, request: web.Request) -> web.Response:
        body = await request.read()
        sent = request.headers.get("X-Hub-Signature-256", "")
        if not hmac.compare_digest(
            sent.encode(), signature(self._settings.app_secret, body).encode()
        ):
            raise Unauthenticated("X-Hub-Signature-256 is missing or does not match")
        payload = parse_object(body)
        answers: Counter[Outcome] = Counter()
        for message in _text_messages(payload):
            async with self._events.once(self.platform, message.id) as first:
                if not first:
                    continue
                answered = await self.answer(message.id, message.text, message.reply_to())
                answers[answered.outcome] += 1
        return web.json_response(
            {
                "ok": True,
                "answered": answers[Outcome.ANSWERED],
                "queued": answers[Outcome.QUEUED],
            }
        )

    async def send(self, text: str, reply_to: Mapping[str, Any]) -> None:
        body = {
            "messaging_product": "whatsapp",
            "to": reply_to["sender"],
            "type": "text",
            "text": {"body": text[:MAX_MESSAGE_CHARS]},
            "context": {"message_id": reply_to["id"]},
        }
        await self._api.post(
            f"{self._settings.api_base.rstrip('/')}/{reply_to['phone_number_id']}/messages",
            body,
            headers={"Authorization": f"Bearer {self._settings.access_token}"},
            error=lambda doc: (doc.get("error") or {}).get("message"),
        )


def _text_messages(payload: object) -> list[_Message]:
    """The text messages a notification carries; malformed structure is a 400."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise InvalidArgument("a notification needs an 'entry' list", details={"param": "entry"})
    found = []
    for entry in payload["entry"]:
        for change in _list(_dict(entry).get("changes")):
            value = _dict(_dict(change).get("value"))
            phone_id = str(_dict(value.get("metadata")).get("phone_number_id", ""))
            for m in map(_dict, _list(value.get("messages"))):
                text = _dict(m.get("text")).get("body")
                sender, message_id = m.get("from"), m.get("id")
                if isinstance(text, str) and text.strip() and message_id and sender:
                    found.append(_Message(str(message_id), str(sender), phone_id, text))
    return found


def _dict(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: missing and malformed read alike."""
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
