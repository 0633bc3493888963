"""WhatsApp Cloud: the hub.challenge handshake, X-Hub-Signature-256, and a text message answered
once through a Graph API stand-in that speaks WhatsApp's wire format (and asks once to wait).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from support.standins import HttpStandIn
from support.suite_stack import Stack, chat_gateway

from edgegate_gateway.adapters.whatsapp import signature

pytestmark = pytest.mark.slow
APP_SECRET, VERIFY = "app-secret", "verify-me"
ANSWER = "Support answers on weekdays from nine to five."


class GraphApi(HttpStandIn):
    def __init__(self) -> None:
        super().__init__({"/v21.0/PNID/messages": self._messages})
        self.sent: list[dict[str, Any]] = []
        self.throttled = False

    async def _messages(self, request: web.Request) -> web.Response:
        if not self.throttled:
            self.throttled = True
            error = {"message": "(#130429) Rate limit hit", "code": 130429}
            return web.json_response({"error": error}, status=429, headers={"Retry-After": "1"})
        self.sent.append(await request.json())
        return web.json_response(
            {"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT"}]}
        )


@pytest.fixture(scope="module")
def graph() -> Iterator[GraphApi]:
    api = GraphApi()
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def url(
    tmp_path_factory: pytest.TempPathFactory, chat_base: Stack, graph: GraphApi
) -> Iterator[str]:
    args = (
        "--whatsapp-app-secret", APP_SECRET,
        "--whatsapp-verify-token", VERIFY,
        "--whatsapp-access-token", "EAAG-test",
        "--whatsapp-api-base", f"{graph.url}/v21.0",
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("whatsapp")
    with chat_gateway(
        chat_base, folder, answer=ANSWER, bot="whatsapp-number", webhook_args=args
    ) as port:
        yield f"http://127.0.0.1:{port}/webhooks/whatsapp"


def _notification(message_id: str, text: str = "When is support open?") -> dict[str, Any]:
    message = {"from": "8613800000000", "id": message_id, "timestamp": "1700000000",
               "type": "text", "text": {"body": text}}  # fmt: skip
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "PNID"},
             "messages": [message]}  # fmt: skip
    change = {"field": "messages", "value": value}
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [change]}]}


def _post(url: str, payload: object, *, secret: str | None = APP_SECRET) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(secret, body)
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=body, headers=headers), timeout=30
        ) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:  # it holds the connection
            return refused.code, json.loads(refused.read())


def test_the_handshake_echoes_the_challenge_for_the_right_token(url: str) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(query)}", timeout=10) as answer:
        assert answer.read() == b"1158201444"
    query["hub.verify_token"] = "wrong"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(query)}", timeout=10)
    with refused.value:  # it holds the connection
        assert refused.value.code == 403


def test_a_text_message_is_answered_once(url: str, graph: GraphApi) -> None:
    answer = _post(url, _notification("wamid.IN1"))  # chat_stack waited for the assistant
    assert answer == (200, {"ok": True, "answered": 1, "queued": 0})
    assert graph.sent == [
        {
            "messaging_product": "whatsapp",
            "to": "8613800000000",
            "type": "text",
            "text": {"body": ANSWER},
            "context": {"message_id": "wamid.IN1"},
        }
    ]
    assert _post(url, _notification("wamid.IN1")) == (200, {"ok": True, "answered": 0, "queued": 0})
    assert len(graph.sent) == 1


def test_a_bad_signature_is_401_and_bad_bodies_are_400(url: str, graph: GraphApi) -> None:
    before = len(graph.sent)
    assert _post(url, _notification("wamid.IN2"), secret="guess")[0] == 401
    assert _post(url, _notification("wamid.IN3"), secret=None)[0] == 401
    assert _post(url, {"object": "whatsapp_business_account"})[0] == 400
    assert len(graph.sent) == before
