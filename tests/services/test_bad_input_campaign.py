"""A campaign of bad requests against a running suite: no 5xx, nothing dropped, all still serving.

The suite runs as real processes (nats-server, security, inference, a
taskstore, a gateway with the assistant and all four chat webhooks). The
routes come from the gateway itself (the "http serving" record of its log),
so a route added later is attacked too. Every route gets a generated corpus:
malformed and hostile JSON (deep nesting, lone surrogates, special numbers,
every known field with every wrong type), odd query strings and path
parameters, oversized headers; webhook bodies carry a valid signature, so
the attack reaches the parser behind it. WebSocket frames and every gRPC
method of every service get the same treatment. Each answer must be a
client error or a success, never a 5xx or a dropped connection, and each
service must still answer SERVING, and answer right, afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import openai
import pytest
from support.bots_stack import (
    ANSWER,
    DISCORD_KEY,
    SLACK_SECRET,
    TELEGRAM_SECRET,
    WHATSAPP_SECRET,
    BotsStack,
)
from support.suite_stack import (
    TEXT_MODEL,
    Stack,
    first_answer,
)

from edgegate_common.local import health_status
from edgegate_protos.gateway.v1 import gateway_pb2
from edgegate_protos.oip import grpc_service_pb2
from edgegate_protos.security.v1 import security_pb2
from edgegate_protos.taskstore.v1 import taskstore_pb2

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SERVICES = {
    "gateway": gateway_pb2.DESCRIPTOR.services_by_name["Gateway"],
    "taskstore": taskstore_pb2.DESCRIPTOR.services_by_name["TaskStore"],
    "security": security_pb2.DESCRIPTOR.services_by_name["Security"],
    "inference": grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"],
}


@dataclass
class Suite:
    stack: Stack
    base_url: str
    routes: list[tuple[str, str]]  # (method, path) as the gateway logged them
    token: str


@pytest.fixture(scope="module")
def suite(shared_bots_stack: BotsStack) -> Suite:
    stack = shared_bots_stack.stack
    token = stack.token("infer:*", "tasks:read", "tasks:write")
    base_url = f"http://127.0.0.1:{shared_bots_stack.http_port}"
    return Suite(stack, base_url, _logged_routes(shared_bots_stack.gateway.log_file), token)


def _logged_routes(log_file: Path) -> list[tuple[str, str]]:
    for line in log_file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "http serving":
            return [tuple(route.split(" ", 1)) for route in record["routes"]]  # type: ignore[misc]
    raise AssertionError(f"the gateway logged no 'http serving' record in {log_file}")


# ---- the corpus ----------------------------------------------------------------------

_DEEP_ARRAY = "[" * 5000 + "]" * 5000
_DEEP_OBJECT = '{"a":' * 3000 + "1" + "}" * 3000
_SURROGATE = '"\\ud800"'
WRONG_VALUES = [
    "null", "true", "0", "-1", "1.5", "1e400", "NaN", "-Infinity", "9" * 5000, '""', _SURROGATE,
    '"\\u0000"', "[]", "{}", "[1, 2]", '[{"type": "text", "text": 5}]', '{"x": ' + _SURROGATE + "}",
    "[" * 200 + "]" * 200, '"' + "x" * 70_000 + '"',
]  # fmt: skip
FIELDS = [
    "model", "input", "messages", "text", "priority", "idempotency_key", "version", "defer",
    "stream", "encoding_format", "dimensions", "message", "event", "entry", "data", "type",
    "update_id", "options", "role", "content", "id", "token", "challenge",
]  # fmt: skip
VALID = {
    "model": f'"{TEXT_MODEL}"',
    "input": '"hello"',
    "text": '"hello"',
    "messages": '[{"role": "user", "content": "when is support open?"}]',
}
FIXED_BODIES = [
    b"", b"null", b"[]", b"42", b'"text"', b"{", b'{"a": 1,}', b"\xff\xfe\x00", b"\x00" * 64,
    _DEEP_ARRAY.encode(), _DEEP_OBJECT.encode(), b'{"model": ' + _DEEP_ARRAY.encode() + b"}",
    b'{"model": "' + TEXT_MODEL.encode() + b'", "input": ["a", "\\udfff"]}',
    b'{"model": "edgegate-assistant", "messages": [{"role": "user", "content": '
    b'[{"type": "text", "text": null}]}]}',
    b'{"type": 1, "data": {"options": [{"value": ' + _SURROGATE.encode() + b"}]}}",
    b'{"type": "event_callback", "event": {"type": "message", "user": "U1", "text": '
    + _SURROGATE.encode() + b"}}",
    b'{"update_id": 1, "message": {"chat": {"id": 1e400}, "text": "hi"}}',
    b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": '
    b'{"messages": [{"from": "1", "id": "w", "type": "text", "text": {"body": '
    + _SURROGATE.encode() + b"}}]}}]}]}",
]  # fmt: skip


def generated_bodies(rng: random.Random, count: int) -> list[bytes]:
    """Objects with valid fields where they help get further, and wrong values elsewhere."""
    bodies = []
    for _ in range(count):
        fields = dict(VALID) if rng.random() < 0.7 else {}
        for name in rng.sample(FIELDS, rng.randint(1, 3)):
            fields[name] = rng.choice(WRONG_VALUES)
        bodies.append(("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode())
    return bodies


QUERIES = [
    "page_size=abc", "page_size=-1", "page_size=0", "page_size=1001", "page_size=" + "9" * 400,
    "statuses=nonsense", "status=%ff", "page_token=%00%ff", "page_token=" + "A" * 4000,
    "after_revision=-5", "after_revision=1e400", "user=%ED%A0%80", "hub.mode=subscribe",
    "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=" + "9" * 300,
]  # fmt: skip
PATH_VALUES = ["%00", "%ff%fe", "..%2F..%2Fetc", "%ED%A0%80", "a" * 3000, "-", "%20"]


def _signed(path: str, body: bytes) -> dict[str, str]:
    """The headers that make the platform's signature check pass for `body`."""
    now = str(int(time.time()))
    if path.endswith("/telegram"):
        return {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    if path.endswith("/slack"):
        base = b"v0:" + now.encode() + b":" + body
        digest = hmac.new(SLACK_SECRET.encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": f"v0={digest}"}
    if path.endswith("/whatsapp"):
        digest = hmac.new(WHATSAPP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {"X-Hub-Signature-256": f"sha256={digest}"}
    if path.endswith("/discord"):
        signature = DISCORD_KEY.sign(now.encode() + body).hex()
        return {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": now}
    return {}


# ---- the attack ----------------------------------------------------------------------


@dataclass
class Tally:
    answers: dict[int, int]
    server_errors: list[str]

    def record(self, status: int, what: str) -> None:
        self.answers[status] = self.answers.get(status, 0) + 1
        if status >= 500:
            self.server_errors.append(f"{status} {what}")


async def _http_campaign(suite: Suite) -> Tally:
    rng = random.Random(20261203)
    tally = Tally(answers={}, server_errors=[])
    auth = {"Authorization": f"Bearer {suite.token}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def hit(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> None:
            what = f"{method} {path} {(body or b'')[:60]!r}"
            try:
                async with http.request(
                    method, suite.base_url + path, data=body, headers=headers
                ) as answer:
                    await answer.read()
                    tally.record(answer.status, what)
                    if answer.status in (429, 503):
                        assert "Retry-After" in answer.headers, what
            except aiohttp.ClientError as exc:
                tally.server_errors.append(f"dropped: {what}: {exc!r}")

        for method, route in suite.routes:
            paths = (
                [route.replace("{task_id}", v) for v in PATH_VALUES] if "{" in route else [route]
            )
            for path in paths:
                if route == "/ws":
                    await hit(method, path, None, auth)  # no upgrade: a plain GET
                    continue
                if method == "GET":
                    for query in QUERIES:
                        await hit(method, f"{path}?{query}", None, auth)
                    continue
                for body in [*FIXED_BODIES, *generated_bodies(rng, 120)]:
                    headers = {**auth, "Content-Type": "application/json", **_signed(path, body)}
                    await hit(method, path, body, headers)
            for headers in (
                {"Authorization": "Bearer " + "eyJ" + "A" * 9000},
                {"Authorization": "Bearer"},
                {"Authorization": "Basic dXNlcjpwYXNz"},
                {"Authorization": f"Bearer {suite.token}x"},
                {**auth, "Content-Type": "text/plain; charset=utf-16"},
            ):
                await hit(method, route.replace("{task_id}", "t"), b"{}", headers)
    return tally


async def _websocket_campaign(suite: Suite) -> list[str]:
    """Hostile frames on one authenticated connection: an error frame each, the session goes on."""
    problems = []
    frames = [
        *[b.decode("utf-8", "replace") for b in FIXED_BODIES],
        '{"type": "send", "model": "toy_text", "text": "\\ud800"}',
        '{"type": "send", "model": "toy_text", "text": ' + _DEEP_ARRAY + "}",
        '{"type": "send", "model": "toy_text", "text": "hi", "priority": 1e400}',
    ]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(suite.base_url.replace("http", "ws") + "/ws") as ws,
    ):
        await ws.send_json({"type": "authenticate", "token": suite.token})
        ready = await ws.receive_json(timeout=10)
        assert ready["type"] == "ready", ready
        for frame in frames:
            await ws.send_str(frame)
            answer = await ws.receive(timeout=10)
            if answer.type != aiohttp.WSMsgType.TEXT:
                problems.append(f"{frame[:60]!r}: connection ended ({answer.type})")
                return problems
            error = json.loads(answer.data)
            if error.get("type") != "error" or error.get("code") in ("INTERNAL", "UNKNOWN"):
                problems.append(f"{frame[:60]!r}: {error}")
        await ws.send_bytes(b"\xff\x00")
        binary = json.loads((await ws.receive(timeout=10)).data)
        assert binary["code"] == "INVALID_ARGUMENT"
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=10))["type"] == "pong"
    return problems


async def _grpc_campaign(suite: Suite) -> list[str]:
    """Bytes that are no request message, to every method of every service, with a token.

    Truly malformed bytes must be INVALID_ARGUMENT; bytes that happen to parse
    (an unknown field, say) may get any answer but a server error.
    """
    targets = {
        "gateway": suite.stack.gateways[0].target,
        "taskstore": suite.stack.taskstores[0].target,
        "security": suite.stack.security.target,
        "inference": suite.stack.inference.target,  # type: ignore[union-attr]
    }
    metadata = (("authorization", f"Bearer {suite.token}"),)
    problems = []
    malformed = b"\xff\xff\xff\xff"
    for name, service in SERVICES.items():
        async with grpc.aio.insecure_channel(targets[name]) as channel:
            for method, payload in itertools.product(service.methods, GRPC_GARBAGE):
                path = f"/{service.full_name}/{method.name}"
                try:
                    await _call(channel, method, path, payload, metadata)
                    code = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as refused:
                    code = refused.code()
                if code in SERVER_ERRORS or (payload == malformed and code != INVALID):
                    problems.append(f"{path} {payload!r}: {code.name}")
    return problems


GRPC_GARBAGE = [b"\xff\xff\xff\xff", b"\x0a\x02\xc3\x28", b"\x0a\xff\xff\xff\xff\x0f", b""]
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SERVER_ERRORS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


async def _call(
    channel: grpc.aio.Channel,
    method: Any,
    path: str,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    if method.client_streaming:
        call = channel.stream_stream(path, bytes, bytes)(iter([payload]), metadata=metadata)
        async with asyncio.timeout(5):
            async for _ in call:
                break  # Converse may wait for more; one answer or an error is enough
        call.cancel()
    elif method.server_streaming:
        call = channel.unary_stream(path, bytes, bytes)(payload, metadata=metadata)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):  # Watch streams until the client leaves
                async for _ in call:
                    pass
        call.cancel()
    else:
        await channel.unary_unary(path, bytes, bytes)(payload, metadata=metadata, timeout=10)


def test_no_bad_request_gets_a_5xx_and_every_service_still_serves(suite: Suite) -> None:
    routes = {route for _, route in suite.routes}
    assert {"/v1/embeddings", "/v1/chat/completions", "/v1/tasks", "/ws"} <= routes
    assert {f"/webhooks/{p}" for p in ("telegram", "slack", "whatsapp", "discord")} <= routes

    tally = asyncio.run(_http_campaign(suite))
    assert not tally.server_errors, tally.server_errors[:20]
    assert sum(tally.answers.values()) > 1000, tally.answers
    assert tally.answers.get(400, 0) > 500, tally.answers  # the corpus reaches the checks
    assert tally.answers.get(431, 0) >= len(suite.routes)  # the 9 KB token, on every route

    assert not asyncio.run(_websocket_campaign(suite))
    assert not asyncio.run(_grpc_campaign(suite))

    async def all_serving() -> dict[str, str]:
        procs = [suite.stack.security, suite.stack.inference, *suite.stack.taskstores]
        procs += suite.stack.gateways
        return {p.service: await health_status(p.target) for p in procs if p is not None}

    assert set(asyncio.run(all_serving()).values()) == {"SERVING"}
    chat = openai.OpenAI(base_url=f"{suite.base_url}/v1", api_key=suite.token, max_retries=0)
    assert first_answer(chat) == ANSWER  # and still right
    embedded = chat.embeddings.create(model=TEXT_MODEL, input=["still here"])
    assert len(embedded.data[0].embedding) > 0
