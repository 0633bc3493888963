"""The `make demo` scenario: what edgegate does, tried step by step against the running suite.

Each step talks to the gateway the way a user's client would (the openai
SDK, a WebSocket, plain HTTP) and prints what happened. The suite runs with
a local stand-in for the cloud fallback (an OpenAI-compatible embeddings
endpoint in this process) so that the breaker step can show where requests
go while local inference is frozen.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
import numpy as np
import openai
from aiohttp import web

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.local import ServiceProcess, free_port
from edgegate_protos.gateway.v1 import gateway_pb2

DEFAULT_MODEL = "all-MiniLM-L6-v2"
ASSISTANT = "edgegate-assistant"
QUESTION = "What happens to my message when the model is offline?"
DEMO_TEXTS = (
    "The gateway keeps every accepted message safe while the model is offline.",
    "No accepted message is lost when inference is down.",
    "Spring in Paris is mild and often rainy.",
)
# The gateway settings the demo runs with: a breaker that trips within seconds.
DEMO_GATEWAY_ARGS = (
    "--inference-timeout-s", "1",
    "--breaker-window-s", "10",
    "--breaker-min-calls", "3",
    "--breaker-open-s", "2",
    "--breaker-probes", "1",
)  # fmt: skip


class CloudStandIn:
    """An OpenAI-compatible `/v1/embeddings` on a local port: the demo's cloud fallback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.calls += 1
        data = [
            {"object": "embedding", "index": i, "embedding": _pseudo_embedding(text)}
            for i, text in enumerate(texts)
        ]
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": {}}
        )


def _pseudo_embedding(text: str, dims: int = 384) -> list[float]:
    """A stand-in vector: the same text, the same unit vector."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dims)
    return [float(x) for x in vector / np.linalg.norm(vector)]


@dataclass
class Demo:
    http_url: str  # http://host:port/v1
    token: str
    nats_url: str
    inference: ServiceProcess
    cloud: CloudStandIn
    out: TextIO
    console_token: str = ""  # an admin token of the same tenant, for the web console
    client: openai.AsyncOpenAI = field(init=False)

    def __post_init__(self) -> None:
        self.client = openai.AsyncOpenAI(base_url=self.http_url, api_key=self.token, max_retries=0)

    @property
    def ws_url(self) -> str:
        return self.http_url.replace("http://", "ws://").removesuffix("/v1") + "/ws"

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)


async def run_scenario(demo: Demo) -> bool:
    """Every step in order; True when all of them did what they should."""
    steps: list[tuple[str, Callable[[Demo], Awaitable[bool]]]] = [
        ("chat over HTTP (the openai SDK)", chat_http),
        ("the same question over WebSocket", chat_websocket),
        ("embeddings (the openai SDK)", embeddings),
        ("a message with personal data is masked before it is stored", pii_masked),
        ("a burst over the tenant's rate limit", rate_limited_burst),
        ("the circuit breaker trips and the cloud stand-in answers", breaker_trip),
        ("an offline task: inference stopped, task queued, restarted, delivered", offline_task),
        ("the web console saw it all", console_view),
    ]
    passed = True
    for number, (title, step) in enumerate(steps, start=1):
        demo.say(f"\n[{number}/{len(steps)}] {title}")
        try:
            ok = await step(demo)
        except Exception as exc:
            demo.say(f"  FAILED: {exc!r}")
            ok = False
        passed &= ok
    demo.say("\nscenario " + ("passed" if passed else "FAILED"))
    return passed


async def chat_http(demo: Demo) -> bool:
    give_up_at = time.monotonic() + 90
    while True:  # the gateway embeds the knowledge base once the model is served
        try:
            raw = await demo.client.chat.completions.with_raw_response.create(
                model=ASSISTANT, messages=[{"role": "user", "content": QUESTION}]
            )
            break
        except openai.APIStatusError as exc:
            if exc.status_code != 503 or time.monotonic() > give_up_at:
                raise
            await asyncio.sleep(0.5)
    completion = raw.parse()
    demo.say(f"  Q: {QUESTION}")
    demo.say(f"  A: {completion.choices[0].message.content}")
    source, score = raw.headers.get("Edgegate-Source"), raw.headers.get("Edgegate-Score")
    demo.say(f"  (source {source}, score {score}, backend {raw.headers.get('Edgegate-Backend')})")
    return bool(source)


async def chat_websocket(demo: Demo) -> bool:
    async with aiohttp.ClientSession() as session, session.ws_connect(demo.ws_url) as ws:
        await ws.send_json({"type": "authenticate", "token": demo.token})
        ready = await _frame(ws, "ready")
        await ws.send_json({"type": "send", "id": "q1", "model": ASSISTANT, "text": QUESTION})
        ack = await _frame(ws, "ack")
        result = await _frame(ws, "result")
    task = result["task"]
    demo.say(f"  conversation {ready['conversation']}: ack for q1 -> task {ack['task_id']}")
    demo.say(f"  result #{result['sequence']}: {task['result']['outputs'][0]['text']}")
    demo.say("  (a client that reconnects with after_sequence gets what it missed)")
    return bool(task["status"] == "completed")


async def embeddings(demo: Demo) -> bool:
    texts = list(DEMO_TEXTS)
    answer = await demo.client.embeddings.create(model=DEFAULT_MODEL, input=texts)
    vectors = np.array([d.embedding for d in answer.data])
    demo.say(f"  {len(texts)} texts -> {vectors.shape[1]}-d vectors; cosine to the first:")
    for text, row in zip(texts, vectors @ vectors[0], strict=True):
        demo.say(f"    {row:.2f}  {text}")
    return vectors.shape == (3, 384)


async def pii_masked(demo: Demo) -> bool:
    text = "Please call me at +1 415 555 0132 or write to jane.doe@example.com"
    task = await _http(demo, "POST", "/tasks", {"model": DEFAULT_MODEL, "input": text})
    demo.say(f"  sent:   {text}")
    demo.say(f"  stored: {task['input'][0]}  (task {task['id']})")
    return "jane.doe@example.com" not in task["input"][0]


async def rate_limited_burst(demo: Demo) -> bool:
    quota = {"rate_per_s": 2, "burst": 5}
    bus = await Bus.connect(servers=[demo.nats_url], name="edgegate-demo", connect_timeout_s=5)
    statuses: list[int] = []
    retry_after = ""
    try:
        quotas = await bus.js.key_value(subjects.KV_QUOTAS)
        await quotas.put("dev", json.dumps(quota).encode())
        try:
            demo.say(f"  quota for tenant dev in KV {subjects.KV_QUOTAS}: {quota}")
            await asyncio.sleep(1.0)  # every gateway replica follows the bucket
            for _ in range(12):
                try:
                    await demo.client.embeddings.create(model=DEFAULT_MODEL, input="burst")
                    statuses.append(200)
                except openai.RateLimitError as exc:
                    statuses.append(429)
                    retry_after = exc.response.headers.get("Retry-After", "")
            demo.say(
                f"  12 requests at once: {statuses.count(200)} x 200, {statuses.count(429)} x 429"
            )
            demo.say(f"  429 says Retry-After: {retry_after} s")
        finally:
            await quotas.delete("dev")
            await asyncio.sleep(1.0)  # the gateways see it gone before the next step
            demo.say("  quota removed")
    finally:
        await bus.close()
    return statuses.count(200) > 0 and statuses.count(429) > 0 and bool(retry_after)


async def breaker_trip(demo: Demo) -> bool:
    pid = demo.inference.pid
    assert pid is not None
    bus = await Bus.connect(servers=[demo.nats_url], name="edgegate-demo", connect_timeout_s=5)
    events: list[gateway_pb2.BreakerEvent] = []

    async def on_event(message: Any) -> None:
        events.append(gateway_pb2.BreakerEvent.FromString(message.data))

    await bus.subscribe(subjects.GATEWAY_BREAKER_EVENTS, cb=on_event)
    try:
        os.kill(pid, signal.SIGSTOP)
        demo.say("  inference frozen (SIGSTOP); each call waits at most 1 s for it")
        for n in range(1, 13):
            started = time.perf_counter()
            raw = await demo.client.embeddings.with_raw_response.create(
                model=DEFAULT_MODEL, input=f"request {n}"
            )
            backend = raw.headers.get("Edgegate-Backend", "?")
            took_ms = (time.perf_counter() - started) * 1000
            demo.say(f"    call {n:>2}: {backend:<8} {took_ms:6.0f} ms")
            if any(e.state == "open" for e in events) and took_ms < 500:
                break
        os.kill(pid, signal.SIGCONT)
        demo.say("  inference resumed (SIGCONT); the breaker lets a probe through after 2 s")
        for _ in range(40):
            await asyncio.sleep(0.25)
            raw = await demo.client.embeddings.with_raw_response.create(
                model=DEFAULT_MODEL, input="probe"
            )
            if (
                raw.headers.get("Edgegate-Backend") == "local"
                and events[-1:]
                and (events[-1].state == "closed")
            ):
                break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        await bus.close()
    for event in events:
        demo.say(f"  breaker {event.model}/{event.version}: {event.previous} -> {event.state}")
    demo.say(f"  the cloud stand-in answered {demo.cloud.calls} calls")
    states = [e.state for e in events]
    return "open" in states and states[-1:] == ["closed"] and demo.cloud.calls > 0


async def offline_task(demo: Demo) -> bool:
    demo.inference.stop()
    demo.say("  inference stopped")
    task = await _http(
        demo, "POST", "/tasks", {"model": DEFAULT_MODEL, "input": "summarise my week"}
    )
    await asyncio.sleep(1.0)
    task = await _http(demo, "GET", f"/tasks/{task['id']}")
    demo.say(f"  task {task['id']}: {task['status']} (nothing serves the model)")
    demo.inference.start()
    await demo.inference.wait_serving(timeout_s=120)
    demo.say("  inference restarted")
    give_up_at = time.monotonic() + 60
    while not (task["status"] == "completed" and task["notified"]):
        if time.monotonic() > give_up_at:
            break
        await asyncio.sleep(0.3)
        task = await _http(demo, "GET", f"/tasks/{task['id']}")
    output = task["result"]["outputs"][0] if task["result"] else {}
    demo.say(
        f"  task {task['id']}: {task['status']} after {task['attempts']} attempt(s), "
        f"result {output.get('datatype')} {output.get('shape')}, event published: "
        f"{task['notified']}"
    )
    return bool(task["status"] == "completed")


async def console_view(demo: Demo) -> bool:
    """Sign in to /console as the browser does (a form post, then the session cookie) and
    read back what the steps above did: the 429s and the breaker trip."""
    base = demo.http_url.removesuffix("/v1") + "/console"
    jar = aiohttp.CookieJar(unsafe=True)  # the cookie of 127.0.0.1, an IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.post(
            f"{base}/login", data={"token": demo.console_token}, allow_redirects=False
        ) as signed:
            if signed.status != 303:
                raise RuntimeError(f"sign-in refused: HTTP {signed.status}")
        demo.say(f"  signed in to {base} (session cookie: HttpOnly, SameSite=Strict)")
        views = {}
        for page in ("overview", "tenants", "breakers"):
            async with session.get(f"{base}/api/{page}") as answer:
                views[page] = await answer.json()
    serving = [s["service"] for s in views["overview"]["services"] if s["serving"]]
    dev: dict[str, Any] = next((t for t in views["tenants"]["tenants"] if t["tenant"] == "dev"), {})
    tripped = [b for b in views["breakers"]["breakers"] if b["reason"]]
    demo.say(f"  services serving: {', '.join(serving)}")
    demo.say(f"  tenant dev: {dev.get('throttled', 0)} x 429 in the last hour")
    for breaker in tripped:
        demo.say(
            f"  breaker {breaker['model']} v{breaker['version']}: {breaker['state']} "
            f"({breaker['reason']})"
        )
    return len(serving) == 4 and dev.get("throttled", 0) > 0 and bool(tripped)


async def _frame(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"the WebSocket closed: {message.type.name} {message.extra}")
            frame = json.loads(message.data)
            if frame["type"] == kind:
                return frame  # type: ignore[no-any-return]
            if frame["type"] == "error":
                raise RuntimeError(f"the gateway refused: {frame['message']}")


async def _http(demo: Demo, method: str, path: str, body: Any = None) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            demo.http_url + path,
            json=body,
            headers={"Authorization": f"Bearer {demo.token}"},
        ) as answer,
    ):
        doc = await answer.json()
        if answer.status >= 400:
            raise RuntimeError(f"HTTP {answer.status}: {doc}")
        return doc  # type: ignore[no-any-return]
