"""Weighted version routing: the document, the choice, and a live change through two replicas."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from support import model_factory as mf
from support.inference_support import build_test_repository
from support.suite_stack import Stack, start_stack
from support.waiting import wait_until

from edgegate_common import subjects
from edgegate_gateway.core.routing import Weights
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc


def test_weights_are_read_and_checked() -> None:
    assert Weights.from_json(b'{"weights": {"1": 90, "2": 10}}').by_version == {"1": 90, "2": 10}
    for bad in (
        b"[]",
        b"{}",
        b'{"weights": {}}',
        b'{"weights": {"1": -1}}',
        b'{"weights": {"1": "x"}}',
    ):
        with pytest.raises(ValueError, match=r"weight|route"):
            Weights.from_json(bad)


def test_choice_follows_the_weights_among_served_versions() -> None:
    weights = Weights(by_version={"1": 75, "2": 25, "3": 0})
    rng = random.Random(1)
    picks = Counter(weights.choose(["1", "2", "3"], rng=rng) for _ in range(4000))
    assert picks["3"] == 0
    assert 0.70 < picks["1"] / 4000 < 0.80
    assert weights.choose(["2"], rng=rng) == "2"  # 1 is not served: all to 2
    assert weights.choose(["3"], rng=rng) is None  # only a weight-0 version is served
    assert weights.choose([], rng=rng) is None


MODEL = "duo"  # two versions, both served: a stable and a canary
DUO_CONFIG = "max_batch_size: 4\ndynamic_batching: {}\nversion_policy: {all: true}\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("gateway-routes")
    repo = build_test_repository(folder / "models")
    mf.write_model(repo, MODEL, versions=(1, 2), onnx_bytes=mf.scale(), config=DUO_CONFIG)
    running = start_stack(folder, taskstores=0)
    yield running
    running.stop()


def _route(stack: Stack, weights: dict[str, float]) -> None:
    async def put() -> None:
        async with stack.bus() as bus:
            kv = await bus.js.key_value(subjects.KV_ROUTES)
            await kv.put(MODEL, json.dumps({"weights": weights}).encode())

    asyncio.run(put())


def _versions(targets: list[str], token: str, n: int) -> Counter[str]:
    envelope = env.Envelope(route=env.RouteHint(model=MODEL))
    data = np.ones((1, 4), dtype="<f4")
    envelope.parts.add(
        tensor=env.Tensor(name="X", datatype="FP32", shape=[1, 4], raw_data=data.tobytes())
    )

    async def send_all() -> Counter[str]:
        seen: Counter[str] = Counter()
        for i in range(n):
            async with grpc.aio.insecure_channel(targets[i % len(targets)]) as channel:
                response = await gateway_pb2_grpc.GatewayStub(channel).Send(
                    gateway_pb2.SendRequest(envelope=envelope),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
            seen[response.reply.version] += 1
        return seen

    return asyncio.run(send_all())


@pytest.mark.slow
def test_a_weight_change_applies_within_a_second_without_restart(stack: Stack) -> None:
    targets = [stack.start_gateway()[0].target for _ in range(2)]
    token = stack.token("infer:*")
    assert _versions(targets, token, 10) == {"2": 10}  # no route: the highest version
    _route(stack, {"1": 100, "2": 0})
    wait_until(
        lambda: _versions(targets, token, 2) == {"1": 2}, timeout_s=1.0, what="all to version 1"
    )
    assert _versions(targets, token, 10) == {"1": 10}
    _route(stack, {"1": 50, "2": 50})
    wait_until(
        lambda: set(_versions(targets, token, 10)) == {"1", "2"},
        timeout_s=1.0,
        what="both versions answering",
    )
    split = _versions(targets, token, 60)
    assert split["1"] >= 15 and split["2"] >= 15
