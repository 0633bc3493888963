"""The circuit breaker's states and transitions (pure, with a clock the test moves)."""

from __future__ import annotations

from edgegate_gateway.core.breaker import BreakerPolicy, CircuitBreaker, State

POLICY = BreakerPolicy(
    window_s=10, min_calls=4, failure_rate=0.5, slow_call_s=1.0, slow_call_rate=0.75,
    open_s=2, max_open_s=5, probes=2,
)  # fmt: skip


def _calls(breaker: CircuitBreaker, outcomes: list[bool], *, at: float, duration_s: float = 0.1):  # type: ignore[no-untyped-def]
    changes = []
    for failed in outcomes:
        assert breaker.allow(at)[0]
        change = breaker.record(failed=failed, duration_s=duration_s, now_s=at)
        if change:
            changes.append(change)
    return changes


def test_it_opens_at_the_failure_rate_once_the_window_holds_enough_calls() -> None:
    breaker = CircuitBreaker(POLICY)
    assert _calls(breaker, [True, True, True], at=0) == []  # 3 < min_calls
    (change,) = _calls(breaker, [False], at=0)  # 3 of 4 failed
    assert (change.previous, change.state) == (State.CLOSED, State.OPEN)
    assert "failure rate 75%" in change.reason
    assert breaker.allow(1.0) == (False, None)


def test_old_outcomes_leave_the_window() -> None:
    breaker = CircuitBreaker(POLICY)
    _calls(breaker, [True, True, True], at=0)
    assert _calls(breaker, [False, False, False, False], at=20) == []  # the failures expired
    assert breaker.state is State.CLOSED


def test_slow_calls_open_it_too() -> None:
    breaker = CircuitBreaker(POLICY)
    (change,) = _calls(breaker, [False] * 4, at=0, duration_s=2.0)
    assert change.state is State.OPEN and "slow-call rate" in change.reason


def test_half_open_probes_close_it_or_open_it_for_longer() -> None:
    breaker = CircuitBreaker(POLICY)
    _calls(breaker, [True] * 4, at=0)
    allowed, change = breaker.allow(2.0)  # open time over
    assert allowed and change is not None and change.state is State.HALF_OPEN
    assert breaker.record(failed=True, duration_s=0.1, now_s=2.0).state is State.OPEN  # type: ignore[union-attr]
    assert breaker.allow(5.9)[0] is False  # open for 4 s now (doubled)
    assert breaker.allow(6.0)[0] is True
    assert breaker.allow(6.0)[0] is True
    assert breaker.allow(6.0)[0] is False  # only `probes` calls while half-open
    assert breaker.record(failed=False, duration_s=0.1, now_s=6.0) is None
    closed = breaker.record(failed=False, duration_s=0.1, now_s=6.0)
    assert closed is not None and closed.state is State.CLOSED
    _calls(breaker, [True] * 4, at=7)
    assert breaker.allow(8.9)[0] is False and breaker.allow(9.0)[0] is True  # back to 2 s


def test_long_queue_waits_with_fast_service_keep_it_closed() -> None:
    """A busy model answers late because callers queue, not because it is slow."""
    breaker = CircuitBreaker(POLICY)
    for at in range(20):
        assert breaker.allow(at * 0.1)[0]
        # 3 s per call, 0.1 s of it in the model call: the rest was waiting.
        assert breaker.record(failed=False, duration_s=3.0, service_s=0.1, now_s=at * 0.1) is None
    assert breaker.state is State.CLOSED


def test_slow_service_after_a_queue_wait_still_counts_as_slow() -> None:
    breaker = CircuitBreaker(POLICY)
    changes = [
        breaker.record(failed=False, duration_s=3.0, service_s=1.5, now_s=0.0) for _ in range(4)
    ]
    assert changes[-1] is not None and "slow-call rate" in changes[-1].reason


def test_a_probe_without_a_verdict_frees_its_slot() -> None:
    """A half-open probe that ends in overload or a client error says nothing about the
    version; were its slot kept, the breaker would refuse everything for ever."""
    breaker = CircuitBreaker(POLICY)
    _calls(breaker, [True] * 4, at=0)
    assert breaker.allow(2.0)[0] and breaker.allow(2.0)[0]  # both probes out
    assert breaker.allow(2.0)[0] is False
    breaker.forget()  # one came back RESOURCE_EXHAUSTED
    assert breaker.allow(2.1)[0] is True  # another probe may go
    assert breaker.record(failed=False, duration_s=0.1, now_s=2.1) is None
    closed = breaker.record(failed=False, duration_s=0.1, now_s=2.1)
    assert closed is not None and closed.state is State.CLOSED
