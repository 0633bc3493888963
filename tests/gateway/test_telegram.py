"""Telegram end to end: the webhook (secret, de-duplication) in, the assistant's answer out
through a Bot API stand-in that speaks Telegram's wire format (and asks once to slow down).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from support.standins import HttpStandIn
from support.suite_stack import Stack, chat_gateway, chat_stack
from support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
BOT = "123456:bot-token"
SECRET = "webhook-secret"
ANSWER = "Support answers on weekdays from nine to five."
UNKNOWN_CHAT = 404


class BotApi(HttpStandIn):
    def __init__(self) -> None:
        super().__init__({f"/bot{BOT}/sendMessage": self._send})
        self.sent: list[dict[str, Any]] = []
        self.refusals = 0

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["chat_id"] == UNKNOWN_CHAT:
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                status=400,
            )
        if self.refusals == 0:  # the first call is told to wait, as Telegram does under load
            self.refusals += 1
            return web.json_response(
                {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                 "parameters": {"retry_after": 1}},
                status=429,
            )  # fmt: skip
        self.sent.append(body)
        return web.json_response({"ok": True, "result": {"message_id": len(self.sent)}})


@pytest.fixture(scope="module")
def bot_api() -> Iterator[BotApi]:
    api = BotApi()
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def webhook(
    tmp_path_factory: pytest.TempPathFactory, chat_base: Stack, bot_api: BotApi
) -> Iterator[str]:
    webhook_args = (
        "--telegram-secret-token", SECRET,
        "--telegram-bot-token", BOT,
        "--telegram-api-base", bot_api.url,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("telegram")
    with chat_gateway(
        chat_base, folder, answer=ANSWER, bot="telegram-bot", webhook_args=webhook_args
    ) as port:
        yield f"http://127.0.0.1:{port}/webhooks/telegram"


def _update(
    update_id: int, text: str = "When is support open?", *, chat: int = 42
) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 7,
            "date": 1_700_000_000,
            "chat": {"id": chat, "type": "private"},
            "from": {"id": 42, "is_bot": False, "first_name": "Li"},
            "text": text,
        },
    }


def _post(url: str, body: object, secret: str | None = SECRET) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:  # it holds the connection
            return refused.code, json.loads(refused.read())


def test_a_message_is_answered_once_through_the_bot_api(webhook: str, bot_api: BotApi) -> None:
    _post(webhook, _update(1))  # chat_stack waited until the assistant answers
    assert [m["text"] for m in bot_api.sent] == [ANSWER]  # after one 429 and a wait
    assert bot_api.sent[0]["chat_id"] == 42
    assert bot_api.sent[0]["reply_parameters"] == {"message_id": 7}
    status, answer = _post(webhook, _update(1))  # Telegram delivers the same update again
    assert (status, answer.get("duplicate")) == (200, True)
    assert len(bot_api.sent) == 1


def test_an_answer_telegram_refuses_is_not_tried_again(webhook: str, bot_api: BotApi) -> None:
    status, answer = _post(webhook, _update(77, chat=UNKNOWN_CHAT))
    assert status == 200 and "chat not found" in answer["refused"]
    # Telegram's retry of the same update is a duplicate: the refused answer is not re-sent.
    assert _post(webhook, _update(77, chat=UNKNOWN_CHAT)) == (200, {"ok": True, "duplicate": True})


def test_a_wrong_secret_is_401_and_nothing_is_sent(webhook: str, bot_api: BotApi) -> None:
    before = len(bot_api.sent)
    assert _post(webhook, _update(2), secret="guess")[0] == 401
    assert _post(webhook, _update(3), secret=None)[0] == 401
    assert len(bot_api.sent) == before


@pytest.mark.parametrize(
    ("body", "status"),
    [({"message": {}}, 400), ({"update_id": "x"}, 400), ([1, 2], 400)],
    ids=["no-update-id", "string-update-id", "not-an-object"],
)
def test_malformed_updates_are_400(webhook: str, body: object, status: int) -> None:
    assert _post(webhook, body)[0] == status


def test_updates_without_text_are_acknowledged_and_ignored(webhook: str, bot_api: BotApi) -> None:
    before = len(bot_api.sent)
    status, answer = _post(webhook, {"update_id": 9, "message": {"chat": {"id": 1}, "sticker": {}}})
    assert status == 200 and answer["ignored"]
    assert len(bot_api.sent) == before


def test_a_question_while_the_model_is_offline_is_answered_once_it_is_back(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    api = BotApi()
    api.refusals = 1  # no slow-down this time
    api.start()
    webhook_args = (
        "--telegram-secret-token", SECRET,
        "--telegram-bot-token", BOT,
        "--telegram-api-base", api.url,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("telegram-offline")
    try:
        with chat_stack(
            folder, answer=ANSWER, bot="telegram-bot", webhook_args=webhook_args, inference=False
        ) as (stack, port):
            url = f"http://127.0.0.1:{port}/webhooks/telegram"
            status, body = _post(url, _update(9001))
            again = _post(url, _update(9001))  # Telegram's retry of the same update
            assert (status, body) == (200, {"ok": True, "queued": True})
            assert again == (200, {"ok": True, "duplicate": True})
            time.sleep(1.0)  # the behaviour: for a while, no answer (nor an error) is sent
            assert api.sent == []  # nothing can answer yet
            stack.start_inference()
            wait_until(lambda: api.sent, timeout_s=40, interval_s=0.2, what="the answer")
            time.sleep(2.0)  # the behaviour: no second answer comes in this room
    finally:
        api.stop()
    assert [(m["chat_id"], m["text"]) for m in api.sent] == [(42, ANSWER)]
    assert api.sent[0]["reply_parameters"] == {"message_id": 7}
