"""Forced breaker modes and the operator's breaker document, as pure code."""

from __future__ import annotations

import json

import pytest

from edgegate_gateway.core import breaker_controls
from edgegate_gateway.core.breaker import BreakerPolicy, CircuitBreaker, Mode, State
from edgegate_gateway.core.breaker_controls import FallbackTarget

POLICY = BreakerPolicy(min_calls=2, failure_rate=0.5, open_s=2, max_open_s=8, probes=1)


def _fail(breaker: CircuitBreaker, times: int, *, at: float = 0.0) -> list[State]:
    states = []
    for _ in range(times):
        assert breaker.allow(at)[0]
        change = breaker.record(failed=True, duration_s=0.1, now_s=at)
        states.append(change.state if change else breaker.state)
    return states


def test_forced_open_refuses_every_call_until_handed_back() -> None:
    breaker = CircuitBreaker(POLICY)
    change = breaker.force(Mode.OPEN)
    assert change is not None
    assert (change.previous, change.state, change.reason) == (
        State.CLOSED, State.OPEN, "forced open by the operator",
    )  # fmt: skip
    assert breaker.allow(1000.0) == (False, None)  # no probe ever comes
    assert breaker.retry_after_s(1000.0) == POLICY.open_s
    assert breaker.force(Mode.OPEN) is None  # the same mode again changes nothing
    back = breaker.force(Mode.AUTO)
    assert back is not None and back.state is State.CLOSED and "auto" in back.reason
    assert breaker.allow(1000.0) == (True, None)


def test_forced_closed_never_trips_and_auto_judges_afresh() -> None:
    breaker = CircuitBreaker(POLICY)
    assert breaker.force(Mode.CLOSED) is not None
    assert _fail(breaker, 10) == [State.CLOSED] * 10
    breaker.force(Mode.AUTO)
    assert _fail(breaker, 2, at=1.0) == [State.CLOSED, State.OPEN]  # forced failures forgotten


def test_forcing_a_tripped_breaker_closed_lets_calls_through_at_once() -> None:
    breaker = CircuitBreaker(POLICY)
    _fail(breaker, 2)
    assert breaker.allow(0.5)[0] is False
    change = breaker.force(Mode.CLOSED)
    assert change is not None and (change.previous, change.state) == (State.OPEN, State.CLOSED)
    assert breaker.allow(0.5)[0] is True


def test_a_new_policy_applies_to_the_next_calls() -> None:
    breaker = CircuitBreaker(BreakerPolicy(min_calls=20))
    _fail(breaker, 3)
    assert breaker.state is State.CLOSED
    breaker.reconfigure(POLICY)
    assert _fail(breaker, 1) == [State.OPEN]  # 4 failures kept, 2 needed now


def test_modes_are_read_per_version() -> None:
    doc = {"modes": {"1": "auto", "2": "open", "3": "closed"}}
    assert breaker_controls.modes(doc) == {"1": Mode.AUTO, "2": Mode.OPEN, "3": Mode.CLOSED}
    assert breaker_controls.modes({}) == {}
    for bad in ({"modes": ["2"]}, {"modes": {"2": "half-open"}}, {"modes": {"2": 1}}):
        with pytest.raises(ValueError, match="mode"):
            breaker_controls.modes(bad)


def test_the_policy_maps_the_operators_fields() -> None:
    doc = json.loads(
        '{"breaker": {"windowSeconds": 30, "minCalls": 20, "failureRate": 0.5,'
        ' "slowCallSeconds": 2, "slowCallRate": 0.8, "openSeconds": 10,'
        ' "maxOpenSeconds": 300, "probes": 3}}'
    )
    assert breaker_controls.policy(doc, base=BreakerPolicy()) == BreakerPolicy(
        window_s=30, min_calls=20, failure_rate=0.5, slow_call_s=2, slow_call_rate=0.8,
        open_s=10, max_open_s=300, probes=3,
    )  # fmt: skip
    partial = breaker_controls.policy({"breaker": {"minCalls": 5}}, base=POLICY)
    assert partial == BreakerPolicy(min_calls=5, failure_rate=0.5, open_s=2, max_open_s=8, probes=1)
    assert breaker_controls.policy({}, base=POLICY) is None


@pytest.mark.parametrize(
    "breaker",
    [
        [],
        {"minCals": 5},  # a typo is an error, not a silent default
        {"minCalls": 2.5},
        {"minCalls": 0},
        {"probes": True},
        {"failureRate": 1.5},
        {"windowSeconds": "30"},
        {"openSeconds": 10, "maxOpenSeconds": 5},
    ],
)
def test_a_bad_policy_is_refused_with_a_reason(breaker: object) -> None:
    with pytest.raises(ValueError, match="breaker"):
        breaker_controls.policy({"breaker": breaker}, base=BreakerPolicy())


def test_the_fallback_section() -> None:
    doc = {
        "fallback": {
            "endpoint": "https://cloud.example/v1",
            "protocol": "openai",
            "model": "text-embedding-3-small",
            "apiKeySecretRef": {"name": "s", "key": "k"},
        }
    }
    assert breaker_controls.fallback(doc) == FallbackTarget(
        "https://cloud.example/v1", "openai", "text-embedding-3-small"
    )
    assert breaker_controls.fallback({}) is None
    for bad in ({"endpoint": ""}, {"endpoint": "x", "protocol": "grpc"}, "x"):
        with pytest.raises(ValueError, match="fallback"):
            breaker_controls.fallback({"fallback": bad})
