"""Telegram: the bot webhook in, the assistant's answer out through the Bot API.

Telegram calls `POST /webhooks/telegram` with each update and the secret set
at `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`; a wrong or missing
secret is 401. An update is handled once (`webhook_events`): Telegram's
retries and a second replica do nothing twice. A text
message goes through the pipeline (with the gateway's webhook credential,
whose tenant owns the bot) to the default assistant, and the answer is sent
with `sendMessage`. A 429 is retried after the `retry_after` Telegram asks
for; anything else is not retried, because Telegram has no idempotency key
and a message that may have been sent must not go out twice. If handling
fails before the answer is sent, the claim is released and the webhook
answers 500, so that Telegram's own retry tries again.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edgegate_common.errors import (
    InvalidArgument,
    Unauthenticated,
)
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.chat_webhook import ChatWebhook
from edgegate_gateway.adapters.http_json import json_object
from edgegate_protos.common.v1 import envelope_pb2 as env

log = get_logger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
MAX_MESSAGE_CHARS = 4096  # sendMessage refuses longer texts


@dataclass(frozen=True, slots=True)
class TelegramSettings:
    secret_token: str
    bot_token: str
    credential: str  # the gateway's edgegate token for this bot's tenant
    api_base: str = "https://api.telegram.org"
    send_attempts: int = 3


class TelegramWebhook(ChatWebhook[TelegramSettings]):
    platform = "telegram"
    api_name = "Telegram sendMessage"
    channel = env.CHANNEL_TELEGRAM

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/webhooks/telegram", self.update)

    async def update(self, request: web.Request) -> web.Response:
        sent = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(sent.encode(), self._settings.secret_token.encode()):
            raise Unauthenticated("the Telegram secret token is missing or wrong")
        update = await json_object(request)
        update_id = update.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise InvalidArgument(
                "an update needs an integer update_id", details={"param": "update_id"}
            )
        message = update.get("message") or update.get("edited_message")
        text, chat_id = _text_and_chat(message)
        if text is None:
            return web.json_response({"ok": True, "ignored": "not a text message"})
        async with self._events.once(self.platform, str(update_id)) as first:
            if not first:
                return web.json_response({"ok": True, "duplicate": True})
            reply_to = {"chat_id": chat_id, "message_id": message.get("message_id")}  # type: ignore[union-attr]
            answered = await self.answer(str(update_id), text, reply_to)
        return web.json_response(answered.response())

    async def send(self, text: str, reply_to: Mapping[str, Any]) -> None:
        body: dict[str, Any] = {"chat_id": reply_to["chat_id"], "text": text[:MAX_MESSAGE_CHARS]}
        message_id = reply_to.get("message_id")
        if isinstance(message_id, int):
            body["reply_parameters"] = {"message_id": message_id}
        await self._api.post(
            f"{self._settings.api_base.rstrip('/')}/bot{self._settings.bot_token}/sendMessage",
            body,
            accepted=lambda status, doc: status == 200 and bool(doc.get("ok")),
            wait_hint=lambda doc: (doc.get("parameters") or {}).get("retry_after"),
            error=lambda doc: doc.get("description"),
        )


def _text_and_chat(message: object) -> tuple[str | None, int | str]:
    if not isinstance(message, dict):
        return None, 0
    text, chat = message.get("text"), message.get("chat")
    if not isinstance(text, str) or not text.strip() or not isinstance(chat, dict):
        return None, 0
    chat_id = chat.get("id")
    if not isinstance(chat_id, int | str) or isinstance(chat_id, bool):
        raise InvalidArgument("message.chat.id is missing", details={"param": "message.chat.id"})
    return text, chat_id
