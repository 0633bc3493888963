"""Shadow traffic end to end: real nats-server, security, inference and gateway processes.

Every model here has a stable version 1 (weight 100) and a version 2 (weight
0) that shadows it for 100% of the requests, so each count is exact. The
callers must get version 1's answers only, whatever version 2 does; the
agreement snapshots the gateway publishes say how version 2 compared.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import pytest
from nats.js.api import KeyValueConfig, StorageType
from support import model_factory as mf
from support.inference_support import TEXT_CONFIG, minilm_tokenizer
from support.suite_stack import Stack, bearer, eventually, start_stack

from edgegate_common import subjects
from edgegate_common.bus import ensure_key_value
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb
from edgegate_protos.gateway.v1 import gateway_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BOTH = "max_batch_size: 8\ndynamic_batching: {}\nversion_policy: {all: true}\n"
SHADOWED = {"weights": {"1": 100, "2": 0}, "shadow": {"version": "2", "percent": 100}}


def _write_models(repo: Path) -> None:
    mf.write_model(repo, "twin", versions=(1, 2), onnx_bytes=mf.scale(), config=BOTH)
    mf.write_model(repo, "steady", versions=(1, 2), onnx_bytes=mf.scale(), config=BOTH)
    # A canary that runs fine and answers wrong: the opposite direction.
    mf.write_model(repo, "drift", versions=(1,), onnx_bytes=mf.scale(), config=BOTH)
    mf.write_model(repo, "drift", versions=(2,), onnx_bytes=mf.scale(factor=-2.0))
    # A canary that refuses what the stable version takes (its input is another tensor).
    mf.write_model(repo, "broken", versions=(1,), onnx_bytes=mf.scale(), config=BOTH)
    mf.write_model(repo, "broken", versions=(2,), onnx_bytes=mf.identity(["FP32"]))
    text = mf.write_model(
        repo, "twin_text", versions=(1, 2), onnx_bytes=mf.toy_encoder(vocab=30522),
        config=TEXT_CONFIG + "version_policy: {all: true}\n",
    )  # fmt: skip
    for version in ("1", "2"):
        shutil.copy(minilm_tokenizer(), text / version / "tokenizer.json")


@dataclass
class Suite:
    stack: Stack
    http_port: int  # the gateway's


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    folder = tmp_path_factory.mktemp("gateway-shadow")
    running = start_stack(folder, inference=False, taskstores=0)
    try:
        _write_models(folder / "models")
        running.start_inference()
        for model in ("twin", "steady", "drift", "broken", "twin_text"):
            asyncio.run(_put_route(running, model, json.dumps(SHADOWED).encode()))
        _, port = running.start_gateway("--agreement-snapshot-s", "0.2")
        yield Suite(running, port)
    finally:
        running.stop()


@pytest.fixture
def stack(suite: Suite) -> Stack:
    return suite.stack


async def _put_route(stack: Stack, model: str, document: bytes) -> None:
    async with stack.bus() as bus:
        config = KeyValueConfig(bucket=subjects.KV_ROUTES, storage=StorageType.FILE)
        kv = await ensure_key_value(bus.js, config)  # as the gateway makes it
        await kv.put(subjects.ident(model), document)


def _tensor_envelope(model: str, row: list[float]) -> env.Envelope:
    envelope = env.Envelope(route=env.RouteHint(model=model))
    data = np.array([row], dtype="<f4")
    tensor = env.Tensor(name="X", datatype="FP32", shape=[1, len(row)], raw_data=data.tobytes())
    envelope.parts.add(tensor=tensor)
    return envelope


async def _send(stack: Stack, model: str, n: int) -> list[env.Reply]:
    """`n` gRPC `Send`s of [[i+1, 1, 2]] to `model`, naming no version: the replies."""
    token = stack.token("infer:*")
    async with grpc.aio.insecure_channel(stack.gateways[0].target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        return [
            (
                await stub.Send(
                    gpb.SendRequest(envelope=_tensor_envelope(model, [i + 1.0, 1.0, 2.0])),
                    metadata=bearer(token),
                )
            ).reply
            for i in range(n)
        ]


def _values(reply: env.Reply) -> list[float]:
    return np.frombuffer(reply.parts[0].tensor.raw_data, "<f4").tolist()


class Snapshots:
    """The latest AgreementSnapshot per (model, version), as the gateway publishes them."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], gpb.AgreementSnapshot] = {}

    async def reach(self, model: str, compared: int) -> gpb.AgreementSnapshot:
        """The first snapshot of `model` version 2 that counts `compared` comparisons."""

        async def check() -> gpb.AgreementSnapshot | None:
            seen = self.latest.get((model, "2"))
            return seen if seen is not None and seen.compared >= compared else None

        return await eventually(check, timeout_s=10, what=f"{compared} comparisons of {model}")


@asynccontextmanager
async def snapshots(stack: Stack) -> AsyncIterator[Snapshots]:
    seen = Snapshots()
    async with stack.bus() as bus:

        async def on_snapshot(msg) -> None:  # type: ignore[no-untyped-def]
            snapshot = gpb.AgreementSnapshot.FromString(msg.data)
            assert msg.subject == subjects.gateway_agreement(snapshot.model, snapshot.version)
            seen.latest[(snapshot.model, snapshot.version)] = snapshot

        await bus.subscribe(subjects.GATEWAY_AGREEMENT_ALL, cb=on_snapshot)
        yield seen


async def test_callers_get_the_stable_answer_while_an_identical_canary_agrees(
    suite: Suite,
) -> None:
    stack = suite.stack
    async with snapshots(stack) as seen:
        replies = await _send(stack, "twin", 10)
        assert {r.version for r in replies} == {"1"}
        assert [_values(r)[0] for r in replies] == [2.0 * (i + 1) for i in range(10)]
        async with aiohttp.ClientSession() as http:
            for i in range(5):
                async with http.post(
                    f"http://127.0.0.1:{suite.http_port}/v1/embeddings",
                    json={"model": "twin_text", "input": [f"sentence {i}", "another"]},
                    headers={"Authorization": f"Bearer {stack.token('infer:*')}"},
                ) as answer:
                    assert answer.status == 200
                    assert answer.headers["Edgegate-Model-Version"] == "1"
        twin = await seen.reach("twin", 10)
        text = await seen.reach("twin_text", 5)
    assert (twin.compared, twin.agreed) == (10, 10)
    assert (text.compared, text.agreed) == (5, 5)
    assert twin.instance and twin.started_at.ToSeconds() <= twin.at.ToSeconds() <= time.time()


async def test_a_canary_that_answers_differently_disagrees(stack: Stack) -> None:
    async with snapshots(stack) as seen:
        replies = await _send(stack, "drift", 10)
        assert {r.version for r in replies} == {"1"}
        assert all(_values(r) == [2.0 * (i + 1), 2.0, 4.0] for i, r in enumerate(replies))
        drift = await seen.reach("drift", 10)
    assert (drift.compared, drift.agreed) == (10, 0)


async def test_a_failing_canary_never_fails_a_caller(stack: Stack) -> None:
    async with snapshots(stack) as seen:
        replies = await _send(stack, "broken", 10)  # version 2 refuses every one of them
        assert {(r.version, r.backend) for r in replies} == {("1", env.BACKEND_LOCAL)}
        broken = await seen.reach("broken", 10)
    assert (broken.compared, broken.agreed) == (10, 0)


async def test_a_bad_shadow_is_logged_and_the_route_before_it_stays(stack: Stack) -> None:
    bad = {"weights": {"1": 0, "2": 100}, "shadow": {"version": "2", "percent": 150}}
    await _put_route(stack, "steady", json.dumps(bad).encode())
    log_file = stack.folder / "gateway-0.log"

    async def logged() -> str | None:
        lines = log_file.read_text().splitlines()
        return next((line for line in lines if "route ignored" in line), None)

    line = await eventually(logged, timeout_s=10, what="the route's error in the log")
    assert '"level": "error"' in line and "steady" in line and "percent" in line
    async with snapshots(stack) as seen:
        replies = await _send(stack, "steady", 4)
        assert {r.version for r in replies} == {"1"}  # the weights before the bad document
        steady = await seen.reach("steady", 4)
    assert (steady.compared, steady.agreed) == (4, 4)
