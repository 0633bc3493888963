"""Slack: the v0 request signature (Slack's own documented example), and the Events API end to
end with a Web API stand-in that speaks Slack's wire format (and asks once to slow down).
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
from support.suite_stack import Stack, chat_gateway

from edgegate_common.errors import Unauthenticated
from edgegate_gateway.adapters.slack import signature, verify

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ANSWER = "Support answers on weekdays from nine to five."


def test_the_signature_matches_slacks_documented_example() -> None:
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
        b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
        b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d1"
        b"0d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert signature(SECRET, "1531420618", body) == expected


def _headers(body: bytes, ts: int, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(secret, str(ts), body),
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    ("headers", "body", "says"),
    [
        (_headers(b"{}", 1000), b'{"x": 1}', "does not match"),  # body changed after signing
        (_headers(b"{}", 1000, secret="other"), b"{}", "does not match"),
        (_headers(b"{}", 1000 - 301), b"{}", "five minutes"),  # a replay
        ({"X-Slack-Signature": "v0=00"}, b"{}", "Timestamp"),
    ],
    ids=["tampered", "wrong-secret", "replayed", "no-timestamp"],
)
def test_unsigned_tampered_or_replayed_requests_are_refused(
    headers: dict[str, str], body: bytes, says: str
) -> None:
    with pytest.raises(Unauthenticated, match=says):
        verify(SECRET, headers, body, now_s=1000)
    verify(SECRET, _headers(body, 1000), body, now_s=1000)  # the same body, signed: fine


class WebApi(HttpStandIn):
    def __init__(self) -> None:
        super().__init__({"/api/chat.postMessage": self._post})
        self.posted: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.throttled = False

    async def _post(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        if not self.throttled:
            self.throttled = True
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        self.posted.append(await request.json())
        return web.json_response({"ok": True, "channel": "C1", "ts": "1700000000.000200"})


@pytest.fixture(scope="module")
def web_api() -> Iterator[WebApi]:
    api = WebApi()
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def events_url(
    tmp_path_factory: pytest.TempPathFactory, chat_base: Stack, web_api: WebApi
) -> Iterator[str]:
    webhook_args = (
        "--slack-signing-secret", SECRET,
        "--slack-bot-token", "xoxb-test",
        "--slack-api-base", web_api.url,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("slack")
    with chat_gateway(
        chat_base, folder, answer=ANSWER, bot="slack-app", webhook_args=webhook_args
    ) as port:
        yield f"http://127.0.0.1:{port}/webhooks/slack"


def _send(url: str, payload: object, *, sign: bool = True) -> tuple[int, dict[str, Any]]:
    body = json.dumps(payload).encode()
    headers = _headers(body, int(time.time())) if sign else {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:  # it holds the connection
            return refused.code, json.loads(refused.read())


def _message(event_id: str, **event: Any) -> dict[str, Any]:
    base = {"type": "message", "channel": "C1", "user": "U1", "text": "When?", "ts": "1.000100"}
    return {"type": "event_callback", "event_id": event_id, "event": {**base, **event}}


@pytest.mark.slow
def test_url_verification_answers_the_challenge(events_url: str) -> None:
    assert _send(events_url, {"type": "url_verification", "challenge": "3eZbrw1a"}) == (
        200,
        {"challenge": "3eZbrw1a"},
    )


@pytest.mark.slow
def test_a_message_is_answered_once_in_its_thread(events_url: str, web_api: WebApi) -> None:
    status = _send(events_url, _message("Ev1"))[0]  # chat_stack waited for the assistant
    assert status == 200
    assert web_api.posted == [{"channel": "C1", "text": ANSWER, "thread_ts": "1.000100"}]
    assert set(web_api.auth) == {"Bearer xoxb-test"}  # the retry after the 429 too
    assert _send(events_url, _message("Ev1"))[1].get("duplicate") is True  # Slack's retry
    assert _send(events_url, _message("Ev2", bot_id="B1"))[1].get("ignored")  # our own answer
    assert len(web_api.posted) == 1


@pytest.mark.slow
def test_an_unsigned_event_is_401_and_nothing_is_posted(events_url: str, web_api: WebApi) -> None:
    before = len(web_api.posted)
    assert _send(events_url, _message("Ev3"), sign=False)[0] == 401
    assert len(web_api.posted) == before
