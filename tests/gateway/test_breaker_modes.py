"""The operator's breaker controls end to end: NATS KV `edgegate-breakers` read by a real
gateway in front of real inference, with cloud stand-ins speaking OpenAI's wire format.

Forced open, a version is never called and callers get the cloud fallback, as
with a tripped breaker; forced closed, failures never trip it; back to auto,
the breaker judges again, by the policy the document gives. Every forced
change is published as a BreakerEvent. A model's own fallback endpoint gets
the gateway's API key only on the gateway's own fallback origin.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import tritonclient.grpc.aio as triton
from aiohttp import web
from nats.js.api import KeyValueConfig, StorageType
from support import model_factory as mf
from support.inference_support import TEXT_CONFIG, minilm_tokenizer
from support.standins import HttpStandIn
from support.suite_stack import Stack, eventually, start_stack

from edgegate_common import subjects
from edgegate_common.bus import ensure_key_value
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

API_KEY = "gateway-cloud-key"
INFERENCE_TIMEOUT_S = 0.5


class Cloud(HttpStandIn):
    """An OpenAI-compatible `/v1/embeddings` answering `[marker] * 3`, recording each call."""

    def __init__(self, marker: float) -> None:
        super().__init__({"/v1/embeddings": self._embeddings})
        self.marker = marker
        self.calls: list[dict[str, Any]] = []

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append({"model": body["model"], "auth": request.headers.get("Authorization")})
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"index": i, "embedding": [self.marker] * 3} for i in range(len(texts))]
        return web.json_response({"object": "list", "data": data, "model": body["model"]})


@dataclass
class Suite:
    stack: Stack
    base_url: str  # the gateway's /v1
    own: Cloud  # the gateway's own fallback (fallback_url)
    other: Cloud  # another origin, named only in a model's document


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    folder = tmp_path_factory.mktemp("gateway-breaker-modes")
    own, other = Cloud(0.25), Cloud(0.75)
    own.start()
    other.start()
    running = start_stack(folder, inference=False, taskstores=0)
    try:
        config = TEXT_CONFIG + "version_policy: {all: true}\n"
        for model, versions in (("opened", (1, 2)), ("held", (1,)), ("elsewhere", (1,))):
            text = mf.write_model(
                folder / "models", model, versions=versions,
                onnx_bytes=mf.toy_encoder(vocab=30522), config=config,
            )  # fmt: skip
            for version in versions:
                shutil.copy(minilm_tokenizer(), text / str(version) / "tokenizer.json")
        running.start_inference()
        route = json.dumps({"weights": {"1": 0, "2": 100}}).encode()
        asyncio.run(_put(running, subjects.KV_ROUTES, "opened", route))
        _, port = running.start_gateway(
            "--fallback-url", f"{own.url}/v1",
            "--fallback-api-key", API_KEY,
            "--inference-timeout-s", str(INFERENCE_TIMEOUT_S),
        )  # fmt: skip
        yield Suite(running, f"http://127.0.0.1:{port}/v1", own, other)
    finally:
        running.stop()
        own.stop()
        other.stop()


async def _put(stack: Stack, bucket: str, model: str, document: bytes) -> None:
    async with stack.bus() as bus:
        kv = await ensure_key_value(bus.js, KeyValueConfig(bucket=bucket, storage=StorageType.FILE))
        await kv.put(subjects.ident(model), document)


async def _control(stack: Stack, model: str, document: dict[str, Any]) -> None:
    await _put(stack, subjects.KV_BREAKERS, model, json.dumps(document).encode())


@dataclass
class Answer:
    backend: str
    version: str
    first: float  # the first number of the first embedding
    took_s: float


async def _embed(suite: Suite, model: str) -> Answer:
    token = suite.stack.token("infer:*")
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{suite.base_url}/embeddings",
            json={"model": model, "input": "hello"},
            headers={"Authorization": f"Bearer {token}"},
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
        body = await answer.json()
        return Answer(
            backend=answer.headers["Edgegate-Backend"],
            version=answer.headers["Edgegate-Model-Version"],
            first=body["data"][0]["embedding"][0],
            took_s=time.monotonic() - started,
        )


class Events:
    """The BreakerEvents published, in order."""

    def __init__(self) -> None:
        self.seen: list[gpb.BreakerEvent] = []

    async def wait(self, model: str, version: str, state: str, reason: str) -> gpb.BreakerEvent:
        async def check() -> gpb.BreakerEvent | None:
            return next(
                (
                    e
                    for e in self.seen
                    if (e.model, e.version, e.state) == (model, version, state)
                    and reason in e.reason
                ),
                None,
            )

        return await eventually(check, timeout_s=10, what=f"{model} {version} {state} {reason}")

    def of(self, model: str) -> list[tuple[str, str, str]]:
        return [(e.version, e.state, e.reason) for e in self.seen if e.model == model]


@asynccontextmanager
async def events(stack: Stack) -> AsyncIterator[Events]:
    seen = Events()
    async with stack.bus() as bus:

        async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
            seen.seen.append(gpb.BreakerEvent.FromString(msg.data))

        await bus.subscribe(subjects.GATEWAY_BREAKER_EVENTS, cb=on_event)
        await bus.flush()
        yield seen


async def _served(stack: Stack, model: str, version: str) -> int:
    """How many requests inference has run on `model` `version` (its OIP statistics)."""
    assert stack.inference is not None
    client = triton.InferenceServerClient(stack.inference.target)
    try:
        stats = await client.get_inference_statistics(model, version)
    finally:
        await client.close()
    return int(stats.model_stats[0].inference_count)


async def test_forced_open_is_never_called_and_auto_brings_it_back(suite: Suite) -> None:
    stack = suite.stack
    async with events(stack) as seen:
        local = await _embed(suite, "opened")
        assert (local.backend, local.version) == ("local", "2")
        served = await _served(stack, "opened", "2")
        await _control(stack, "opened", {"modes": {"2": "open"}})
        forced = await seen.wait("opened", "2", "open", "forced open by the operator")
        assert forced.previous == "closed" and forced.instance
        answers = [await _embed(suite, "opened") for _ in range(3)]
        assert {(a.backend, a.first) for a in answers} == {("fallback", suite.own.marker)}
        assert await _served(stack, "opened", "2") == served  # not one local call
        # Back to auto; forcing version 1 open leaves version 2, which gets the traffic, alone.
        await _control(stack, "opened", {"modes": {"2": "auto", "1": "open"}})
        await seen.wait("opened", "2", "closed", "back to auto by the operator")
        await seen.wait("opened", "1", "open", "forced open by the operator")
        again = await _embed(suite, "opened")
        assert (again.backend, again.version) == ("local", "2")
        assert await _served(stack, "opened", "2") == served + 1
        await _control(stack, "opened", {})
        await seen.wait("opened", "1", "closed", "back to auto by the operator")
    assert seen.of("opened") == [
        ("2", "open", "forced open by the operator"),
        ("2", "closed", "back to auto by the operator"),
        ("1", "open", "forced open by the operator"),
        ("1", "closed", "back to auto by the operator"),
    ]


async def test_forced_closed_never_trips_and_auto_trips_by_the_operators_policy(
    suite: Suite,
) -> None:
    stack = suite.stack
    assert stack.inference is not None and stack.inference.pid is not None
    policy = {"minCalls": 2, "failureRate": 0.5, "openSeconds": 60, "maxOpenSeconds": 60}
    async with events(stack) as seen:
        assert (await _embed(suite, "held")).backend == "local"
        await _control(stack, "held", {"modes": {"1": "closed"}, "breaker": policy})
        await seen.wait("held", "1", "closed", "forced closed by the operator")
        os.kill(stack.inference.pid, signal.SIGSTOP)  # inference stops answering: timeouts
        try:
            held = [await _embed(suite, "held") for _ in range(3)]
            # Each was tried locally (and timed out) before the cloud answered: never tripped.
            assert all(a.backend == "fallback" for a in held)
            assert all(a.took_s >= INFERENCE_TIMEOUT_S for a in held)
            # Back to auto; the document's bad policy is ignored, the one before it kept.
            bad = {"modes": {"1": "auto"}, "breaker": {"minCalls": "two"}}
            await _control(stack, "held", bad)
            await seen.wait("held", "1", "closed", "back to auto by the operator")
            for _ in range(2):  # two failures open it: minCalls 2 (the gateway's own is 20)
                await _embed(suite, "held")
            await seen.wait("held", "1", "open", "failure rate")
            quick = await _embed(suite, "held")
            assert quick.backend == "fallback" and quick.took_s < INFERENCE_TIMEOUT_S
        finally:
            os.kill(stack.inference.pid, signal.SIGCONT)
    log = (stack.folder / "gateway-0.log").read_text()
    assert "breaker settings section ignored" in log and "minCalls" in log
    assert [state for _, state, _ in seen.of("held")] == ["closed", "closed", "open"]


async def test_a_models_own_fallback_gets_the_key_only_on_the_gateways_origin(
    suite: Suite,
) -> None:
    stack = suite.stack
    other = {"endpoint": f"{suite.other.url}/v1", "protocol": "openai", "model": "far-model"}
    other_doc = {"modes": {"1": "open"}, "fallback": {**other, "apiKeySecretRef": {"name": "s"}}}
    async with events(stack) as seen:
        await _control(stack, "elsewhere", other_doc)
        await seen.wait("elsewhere", "1", "open", "forced open by the operator")
    own_calls = len(suite.own.calls)
    answer = await _embed(suite, "elsewhere")
    assert (answer.backend, answer.first) == ("fallback", suite.other.marker)
    assert suite.other.calls == [{"model": "far-model", "auth": None}]
    assert len(suite.own.calls) == own_calls
    near = {"endpoint": f"{suite.own.url}/v1/", "model": "near-model"}
    await _control(stack, "elsewhere", {"modes": {"1": "open"}, "fallback": near})

    async def from_own() -> Answer | None:
        answer = await _embed(suite, "elsewhere")
        return answer if answer.first == suite.own.marker else None

    await eventually(from_own, timeout_s=10, what="the new endpoint answering")
    assert suite.own.calls[-1] == {"model": "near-model", "auth": f"Bearer {API_KEY}"}
