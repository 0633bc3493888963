"""Discord interactions: Ed25519 signatures (PING -> PONG, 401 when unsigned), a slash command
answered in the response, each interaction once.
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from support.standins import HttpStandIn
from support.suite_stack import Stack, chat_gateway, chat_stack
from support.waiting import wait_until

pytestmark = pytest.mark.slow
ANSWER = "Support answers on weekdays from nine to five."
KEY = Ed25519PrivateKey.generate()
PUBLIC_HEX = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, chat_base: Stack) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("discord")
    args = ("--discord-public-key", PUBLIC_HEX)
    with chat_gateway(
        chat_base, folder, answer=ANSWER, bot="discord-app", webhook_args=args
    ) as port:
        yield f"http://127.0.0.1:{port}/webhooks/discord"


def _post(url: str, payload: object, *, key: Ed25519PrivateKey | None = KEY) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Signature-Timestamp": timestamp}
    if key is not None:
        headers["X-Signature-Ed25519"] = key.sign(timestamp.encode() + body).hex()
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:  # it holds the connection
            return refused.code, json.loads(refused.read())


def _command(interaction_id: str, question: str = "When is support open?") -> dict[str, Any]:
    return {
        "id": interaction_id,
        "type": 2,
        "application_id": "998877",
        "token": "interaction-token",
        "data": {"name": "ask", "options": [{"name": "question", "type": 3, "value": question}]},
    }


def test_ping_gets_pong_and_bad_signatures_get_401(url: str) -> None:
    assert _post(url, {"type": 1}) == (200, {"type": 1})
    assert _post(url, {"type": 1}, key=None)[0] == 401
    assert _post(url, {"type": 1}, key=Ed25519PrivateKey.generate())[0] == 401


def test_a_slash_command_is_answered_in_the_response_once(url: str) -> None:
    answer = _post(url, _command("111"))  # chat_stack waited until the assistant answers
    assert answer == (200, {"type": 4, "data": {"content": ANSWER}})
    again = _post(url, _command("111"))
    assert again[0] == 200 and "answered already" in again[1]["data"]["content"]


@pytest.mark.parametrize(
    ("payload", "says"),
    [({"type": 2, "id": "9", "data": {}}, "text option"), ({"type": 9, "id": "9"}, "not handled")],
    ids=["no-question", "unknown-type"],
)
def test_malformed_interactions_are_400(url: str, payload: dict[str, Any], says: str) -> None:
    status, answer = _post(url, payload)
    assert status == 400 and says in answer["error"]["message"]


class InteractionWebhooks(HttpStandIn):
    """Discord's interaction webhook: the deferred answer edits the original response."""

    def __init__(self) -> None:
        route = "PATCH /webhooks/998877/interaction-token/messages/@original"
        super().__init__({route: self._edit})
        self.edits: list[dict[str, Any]] = []

    async def _edit(self, request: web.Request) -> web.Response:
        self.edits.append(await request.json())
        return web.json_response({"id": "1", "content": self.edits[-1]["content"]})


@pytest.mark.timeout(120)
def test_a_command_while_the_model_is_offline_is_deferred_then_answered(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    discord_api = InteractionWebhooks()
    discord_api.start()
    args = ("--discord-public-key", PUBLIC_HEX, "--discord-api-base", discord_api.url)
    folder = tmp_path_factory.mktemp("discord-offline")
    try:
        with chat_stack(
            folder, answer=ANSWER, bot="discord-app", webhook_args=args, inference=False
        ) as (stack, port):
            url = f"http://127.0.0.1:{port}/webhooks/discord"
            assert _post(url, _command("555")) == (200, {"type": 5})  # "thinking..."
            stack.start_inference()
            wait_until(lambda: discord_api.edits, timeout_s=40, interval_s=0.2, what="the edit")
            time.sleep(1.0)  # the behaviour: no second edit comes in this room
    finally:
        discord_api.stop()
    assert discord_api.edits == [{"content": ANSWER}]
