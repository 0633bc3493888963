"""Shadow traffic's pure parts: the route's `shadow`, output agreement, the bound on copies."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest

from edgegate_common.errors import InvalidArgument, ResourceExhausted
from edgegate_gateway.core.agreement import agree
from edgegate_gateway.core.routing import Shadow, Weights
from edgegate_gateway.shadow import ShadowTraffic
from edgegate_protos.common.v1 import envelope_pb2 as env


def test_a_route_may_carry_a_shadow() -> None:
    weights = Weights.from_json(
        b'{"weights": {"1": 95, "2": 5}, "shadow": {"version": "2", "percent": 10}}'
    )
    assert weights.shadow == Shadow(version="2", percent=10.0)
    assert Weights.from_json(b'{"weights": {"1": 1}}').shadow is None
    assert Weights.from_json(b'{"weights": {"1": 1}, "shadow": null}').shadow is None


@pytest.mark.parametrize(
    "shadow",
    [
        "[]",
        '"2"',
        "{}",
        '{"version": "2"}',
        '{"version": "", "percent": 10}',
        '{"version": 2, "percent": 10}',
        '{"version": "2", "percent": 101}',
        '{"version": "2", "percent": -1}',
        '{"version": "2", "percent": "10"}',
        '{"version": "2", "percent": true}',
        '{"version": "2", "percent": 10, "extra": 1}',
    ],
)
def test_a_bad_shadow_is_refused_with_a_reason(shadow: str) -> None:
    with pytest.raises(ValueError, match="shadow"):
        Weights.from_json(f'{{"weights": {{"1": 1}}, "shadow": {shadow}}}'.encode())


def test_the_share_copied_follows_the_percent() -> None:
    rng = random.Random(7)
    assert not any(Shadow("2", 0).sampled(rng=rng) for _ in range(1000))
    assert all(Shadow("2", 100).sampled(rng=rng) for _ in range(1000))
    share = sum(Shadow("2", 10).sampled(rng=rng) for _ in range(10_000)) / 10_000
    assert 0.08 < share < 0.12


def _floats(rows: list[list[float]], datatype: str = "FP32", name: str = "Y") -> env.Part:
    dtype = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}[datatype]
    data = np.array(rows, dtype=dtype)
    return env.Part(
        tensor=env.Tensor(
            name=name, datatype=datatype, shape=list(data.shape), raw_data=data.tobytes()
        )
    )


def test_float_outputs_agree_by_cosine_per_row() -> None:
    stable = [_floats([[1, 0, 0], [0, 1, 0]])]
    close = [_floats([[1, 0.01, 0], [0, 2, 0.01]], name="renamed")]  # scale does not matter
    assert agree(stable, close, min_cosine=0.99)
    one_row_off = [_floats([[1, 0, 0], [1, 1, 0]])]  # row 2: cosine 0.71
    assert not agree(stable, one_row_off, min_cosine=0.99)
    assert agree(stable, one_row_off, min_cosine=0.7)
    assert not agree(stable, [_floats([[-1, 0, 0], [0, -1, 0]])], min_cosine=0.99)
    assert agree([_floats([[0, 0]])], [_floats([[0, 0]])], min_cosine=0.99)
    assert not agree([_floats([[0, 0]])], [_floats([[1, 0]])], min_cosine=0.5)
    assert not agree([_floats([[float("nan"), 1]])], [_floats([[1, 1]])], min_cosine=-1)
    half = [_floats([[1, 0, 0], [0, 1, 0]], "FP16")]
    assert agree(half, [_floats([[1, 0.001, 0], [0, 1, 0]], "FP16")], min_cosine=0.99)


def test_everything_else_must_match_exactly() -> None:
    assert not agree(stable := [_floats([[1, 0]])], [_floats([[1, 0]], "FP64")], min_cosine=0)
    assert not agree(stable, [_floats([[1, 0, 0]])], min_cosine=0)  # another shape
    assert not agree(stable, [], min_cosine=0)
    ints = env.Part(tensor=env.Tensor(datatype="INT32", shape=[1], raw_data=b"\1\0\0\0"))
    other = env.Part(tensor=env.Tensor(datatype="INT32", shape=[1], raw_data=b"\2\0\0\0"))
    assert agree([ints], [ints], min_cosine=0) and not agree([ints], [other], min_cosine=0)
    assert agree([env.Part(text="yes")], [env.Part(text="yes")], min_cosine=0)
    assert not agree([env.Part(text="yes")], [env.Part(text="Yes")], min_cosine=0)
    assert not agree([env.Part(text="1")], [_floats([[1]])], min_cosine=0)
    torn = env.Part(tensor=env.Tensor(datatype="FP32", shape=[1, 2], raw_data=b"\0" * 4))
    assert not agree([torn], [torn], min_cosine=0)  # bytes that do not fit the shape


class _Readiness:
    def served_versions(self, model: str) -> list[str]:
        return ["1", "2"]


class _Local:
    """Shadow calls that wait until released, then answer `answer` or raise it."""

    def __init__(self, answer: env.Reply | Exception) -> None:
        self.answer = answer
        self.release = asyncio.Event()
        self.calls = 0

    def may_call(self, model: str, version: str) -> bool:
        return True

    async def infer_unguarded(self, envelope: env.Envelope, **_: Any) -> env.Reply:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _traffic(local: _Local, **options: Any) -> ShadowTraffic:
    return ShadowTraffic(
        bus=None,  # type: ignore[arg-type]  # nothing published here
        readiness=_Readiness(),  # type: ignore[arg-type]
        local=local,  # type: ignore[arg-type]
        instance="test",
        min_cosine=0.99,
        **options,
    )


def _message() -> tuple[env.Envelope, env.Reply]:
    envelope = env.Envelope(route=env.RouteHint(model="m"))
    reply = env.Reply(version="1")
    reply.parts.append(_floats([[1, 2]]))
    return envelope, reply


async def test_copies_past_the_bound_are_dropped_and_counted() -> None:
    local = _Local(env.Reply(parts=[_floats([[1, 2]])]))
    traffic = _traffic(local, max_in_flight=2)
    envelope, reply = _message()
    for _ in range(5):
        traffic.copy(envelope, reply, chosen="1", shadow=Shadow("2", 100))
    await asyncio.sleep(0)
    assert (local.calls, traffic.dropped) == (2, 3)
    local.release.set()
    await _settle()
    (snap,) = traffic.snapshots()
    assert (snap.model, snap.version, snap.instance, snap.compared, snap.agreed) == (
        "m", "2", "test", 2, 2,
    )  # fmt: skip
    await traffic.stop()


async def _settle() -> None:
    """Let the copies started so far run to their end (they wait on nothing real)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_failed_copy_counts_as_disagreement_and_an_overload_not_at_all() -> None:
    envelope, reply = _message()
    for answer, counted in ((InvalidArgument("no input X"), 1), (ResourceExhausted("full"), 0)):
        local = _Local(answer)
        local.release.set()
        traffic = _traffic(local)
        traffic.copy(envelope, reply, chosen="1", shadow=Shadow("2", 100))
        await _settle()
        counts = [(s.compared, s.agreed) for s in traffic.snapshots()]
        assert counts == ([(1, 0)] if counted else [])


async def test_nothing_is_copied_to_the_version_that_answered_or_outside_the_share() -> None:
    local = _Local(env.Reply())
    traffic = _traffic(local)
    envelope, reply = _message()
    traffic.copy(envelope, reply, chosen="2", shadow=Shadow("2", 100))
    traffic.copy(envelope, reply, chosen="1", shadow=Shadow("2", 0))
    traffic.copy(envelope, reply, chosen="1", shadow=Shadow("3", 100))  # 3 is not served
    await asyncio.sleep(0)
    assert local.calls == 0
    await traffic.stop()
