"""A whole suite with the web console, for the console's API and browser tests.

Real processes on a real nats-server: security, inference (the small test
models, publishing metric snapshots every second), one taskstore, and one
gateway whose assistant answers from a tiny knowledge base with `toy_text`
at a threshold nothing reaches, so every question escalates. Tenant `acme`
is the console's operator tenant; `globex` an ordinary one; `initech` has
a quota of one request, so that its second request is a 429.

What a cluster's operator would write is written by the tests themselves,
as the operator writes it: a rollout document in `edgegate-rollouts`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from nats.js.api import KeyValueConfig

from edgegate_common import subjects
from edgegate_common.bus import ensure_key_value
from support.suite_stack import (
    TENANT,
    TEXT_MODEL,
    Stack,
    assistant_args,
    start_stack,
)
from support.waiting import eventually

T = TypeVar("T")
ADMIN_SCOPES = ("admin",)
KNOWN_Q = "How do I reset the device?"
KNOWN_A = "Hold the power button for ten seconds."
ROLLOUT_KEY = "ml.toy-text"
THROTTLED_TENANT = "initech"
THROTTLED_QUOTA = {"rate_per_s": 0.01, "burst": 1}


@dataclass
class ConsoleSuite:
    stack: Stack
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def admin(self, *, tenant: str = TENANT, sub: str = "sre-alice") -> str:
        return self.stack.token(*ADMIN_SCOPES, tenant=tenant, sub=sub)

    def user(self, *, tenant: str = TENANT, sub: str = "bob") -> str:
        return self.stack.token("infer:*", "tasks:read", "tasks:write", tenant=tenant, sub=sub)


def start_console_suite(folder: Path) -> ConsoleSuite:
    stack = start_stack(folder, inference=False)
    try:
        stack.start_inference(metrics_snapshot_s="1")
        knowledge = folder / "knowledge"
        knowledge.mkdir(parents=True, exist_ok=True)
        (knowledge / "faq.md").write_text(f"## {KNOWN_Q}\n\n{KNOWN_A}\n", encoding="utf-8")
        _, port = stack.start_gateway(
            *assistant_args(knowledge, "0.999"),
            "--console-operator-tenants", TENANT,
            "--traffic-snapshot-s", "1",
        )  # fmt: skip
        asyncio.run(_prepare(stack))
    except BaseException:
        stack.stop()
        raise
    return ConsoleSuite(stack=stack, port=port)


async def _prepare(stack: Stack) -> None:
    """initech's quota, as a TenantQuota would write it."""
    async with stack.bus() as bus:
        quotas = await ensure_key_value(bus.js, KeyValueConfig(bucket=subjects.KV_QUOTAS))
        await quotas.put(THROTTLED_TENANT, json.dumps(THROTTLED_QUOTA).encode())


async def write_rollout(stack: Stack, **status: Any) -> dict[str, Any]:
    """A rollout of toy_text as the operator mirrors it into `edgegate-rollouts`."""
    doc = {
        "namespace": "ml",
        "name": "toy-text",
        "model": TEXT_MODEL,
        "generation": 3,
        "observedAt": "2026-12-04T02:00:00Z",
        "spec": {
            "version": "2",
            "paused": False,
            "steps": ["setWeight 20", "pause 30s", "analysis", "setWeight 50"],
            "analysis": {"maxErrorRate": 0.01, "maxP99LatencySeconds": 0.5, "minRequests": 50},
        },
        "status": {
            "phase": "Progressing",
            "stableVersion": "1",
            "canaryVersion": "2",
            "weight": 20,
            "step": 2,
            "failedChecks": 0,
            "lastAnalysis": {
                "at": "2026-12-04T01:59:30Z",
                "requests": 120,
                "verdict": "Pass",
                "message": "error rate 0.00 <= 0.01, p99 0.012 s <= 0.5 s",
                "errorRate": 0.0,
                "p99Seconds": 0.012,
            },
            "breakers": [{"version": "2", "state": "closed", "mode": "auto", "reason": ""}],
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "StepRunning",
                    "message": "step 2 of 4: analysis",
                },
            ],
            **status,
        },
    }
    async with stack.bus() as bus:
        kv = await ensure_key_value(bus.js, KeyValueConfig(bucket=subjects.KV_ROLLOUTS))
        await kv.put(ROLLOUT_KEY, json.dumps(doc).encode())
    return doc


async def escalate(suite: ConsoleSuite, question: str, *, token: str) -> str:
    """Ask the assistant something it cannot answer: the escalation task's id."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{suite.base}/v1/chat/completions",
            json={
                "model": "edgegate-assistant",
                "messages": [{"role": "user", "content": question}],
            },
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        body = await response.json()
        assert response.status == 200, body
    escalation = body["edgegate"]["escalation_task"]
    assert escalation, body
    return str(escalation)


async def make_429s(suite: ConsoleSuite, *, calls: int = 3) -> list[int]:
    """Embeddings calls of the throttled tenant, past its quota: their statuses."""
    token = suite.user(tenant=THROTTLED_TENANT, sub="gina")
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(calls):
            async with http.post(
                f"{suite.base}/v1/embeddings",
                json={"model": TEXT_MODEL, "input": "hello"},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                statuses.append(response.status)
    return statuses


@asynccontextmanager
async def signed_in(
    suite: ConsoleSuite, token: str
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """An HTTP session signed in to the console with `token`, and its CSRF token."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            f"{suite.base}/console/login", data={"token": token}, allow_redirects=False
        ) as response:
            assert response.status == 303, await response.text()
        async with http.get(f"{suite.base}/console/api/me") as response:
            me = await response.json()
        yield http, me["csrf"]


class WsClient:
    """A WebSocket client of the gateway: every frame it received, in order."""

    def __init__(self, suite: ConsoleSuite, token: str) -> None:
        self._suite = suite
        self._token = token
        self.frames: list[dict[str, Any]] = []
        self._exit = AsyncExitStack()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WsClient:
        http = await self._exit.enter_async_context(aiohttp.ClientSession())
        self._ws = await self._exit.enter_async_context(http.ws_connect(self._suite.ws_url))
        await self._ws.send_json({"type": "authenticate", "token": self._token})
        ready = await self._ws.receive_json(timeout=20)
        assert ready["type"] == "ready", ready
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._exit.aclose()

    async def ask(self, text: str, *, model: str = "edgegate-assistant") -> None:
        assert self._ws is not None
        await self._ws.send_json({"type": "send", "id": "q1", "model": model, "text": text})

    def results(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == "result"]

    async def escalation_id(self) -> str:
        """The id of the escalation task the assistant filed for the question asked."""

        async def found() -> str | None:
            for frame in self.results():
                metadata = (frame["task"].get("result") or {}).get("metadata") or {}
                if metadata.get("escalation_task"):
                    return str(metadata["escalation_task"])
            return None

        return await eventually(found, timeout_s=60, what="the assistant's escalation")

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(message.data))


class BackgroundLoop:
    """An event loop in a thread of its own, for async clients beside sync Playwright.

    Playwright's sync API runs a loop in the test's thread, so `asyncio.run` cannot be
    called there while a browser is open; coroutines go to this loop instead.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout_s: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
