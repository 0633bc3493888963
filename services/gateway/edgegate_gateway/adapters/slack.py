"""Slack: the Events API in, the assistant's answer out through `chat.postMessage`.

Slack signs every request. `X-Slack-Signature` is `v0=` plus the hex
HMAC-SHA256, keyed by the app's signing secret, of `v0:<timestamp>:<raw
body>`, where `<timestamp>` is `X-Slack-Request-Timestamp`. A missing or
wrong signature, or a timestamp more than five minutes away (a replay), is
401. The check runs on the raw body, before anything is parsed.

- `url_verification` (set-up) answers the challenge.
- `event_callback` with a user's message or mention is handled once per
  `event_id` (`webhook_events`). Slack's retries do nothing twice, and
  bot messages (our own answers included) are ignored, so nothing loops.
- The answer goes to the same channel, in the message's thread. A 429 is
  retried after its `Retry-After`. Nothing else is retried: a message that
  may have been posted must not go out twice.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edgegate_common.errors import InvalidArgument, Unauthenticated
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.chat_later import ChatLater
from edgegate_gateway.adapters.chat_webhook import ChatWebhook
from edgegate_gateway.adapters.http_json import parse_object
from edgegate_gateway.adapters.webhook_events import EventClaims
from edgegate_gateway.assistant import Assistant
from edgegate_protos.common.v1 import envelope_pb2 as env

log = get_logger(__name__)

MAX_SKEW_S = 300


@dataclass(frozen=True, slots=True)
class SlackSettings:
    signing_secret: str
    bot_token: str
    credential: str  # the gateway's edgegate token for this workspace's tenant
    api_base: str = "https://slack.com"
    send_attempts: int = 3


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's `v0` request signature."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, headers: dict[str, str], body: bytes, *, now_s: float) -> None:
    """Raise Unauthenticated unless the request is signed by Slack, recently."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    sent = headers.get("X-Slack-Signature", "")
    # Whole seconds since 1970: ten digits until 2286. Compared as integers, so
    # no value a client sends can overflow a float.
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise Unauthenticated("X-Slack-Request-Timestamp is missing or not a Unix time in seconds")
    if abs(int(now_s) - int(timestamp)) > MAX_SKEW_S:
        raise Unauthenticated("the Slack request is more than five minutes old (or new)")
    if not hmac.compare_digest(sent.encode(), signature(secret, timestamp, body).encode()):
        raise Unauthenticated("the Slack signature does not match")


class SlackEvents(ChatWebhook[SlackSettings]):
    platform = "slack"
    api_name = "Slack chat.postMessage"
    channel = env.CHANNEL_SLACK

    def __init__(
        self,
        settings: SlackSettings,
        *,
        assistant: Assistant,
        events: EventClaims,
        later: ChatLater,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings, assistant=assistant, events=events, later=later)
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/webhooks/slack", self.event)

    async def event(self, request: web.Request) -> web.Response:
        body = await request.read()
        verify(self._settings.signing_secret, dict(request.headers), body, now_s=self._clock())
        payload = parse_object(body)
        if payload.get("type") == "url_verification":
            return web.json_response({"challenge": payload.get("challenge", "")})
        if payload.get("type") != "event_callback":
            return web.json_response({"ok": True, "ignored": payload.get("type")})
        event_id = payload.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise InvalidArgument(
                "an event_callback needs an event_id", details={"param": "event_id"}
            )
        event = payload.get("event")
        text = _user_text(event)
        if text is None:
            return web.json_response({"ok": True, "ignored": "not a user's message"})
        async with self._events.once(self.platform, event_id) as first:
            if not first:
                return web.json_response({"ok": True, "duplicate": True})
            assert isinstance(event, dict)  # _user_text found a message in it
            reply_to = {
                "channel": event["channel"],
                "ts": event.get("thread_ts") or event.get("ts"),
            }
            answered = await self.answer(event_id, text, reply_to)
        return web.json_response(answered.response())

    async def send(self, text: str, reply_to: Mapping[str, Any]) -> None:
        body = {"channel": reply_to["channel"], "text": text, "thread_ts": reply_to["ts"]}
        await self._api.post(
            f"{self._settings.api_base.rstrip('/')}/api/chat.postMessage",
            body,
            headers={"Authorization": f"Bearer {self._settings.bot_token}"},
            accepted=lambda status, doc: status == 200 and bool(doc.get("ok")),
            error=lambda doc: doc.get("error"),
        )


def _user_text(event: object) -> str | None:
    """The text of a person's message or mention; None for bots, edits and the like."""
    if not isinstance(event, dict) or event.get("type") not in ("message", "app_mention"):
        return None
    if event.get("bot_id") or event.get("subtype"):
        return None
    text = event.get("text")
    if not isinstance(text, str) or not text.strip() or not isinstance(event.get("channel"), str):
        return None
    return text
