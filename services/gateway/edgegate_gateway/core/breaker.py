"""A circuit breaker per model version: closed, open, half-open.

Closed, it lets every call through and keeps the outcomes of the last
`window_s`. Once the window holds at least `min_calls`, a failure rate or a
slow-call rate at or over its threshold opens it: calls go elsewhere (the
cloud fallback) for `open_s`, doubled each time it opens again without
having closed, up to `max_open_s`. Then it is half-open: `probes` calls go
through. If all of them succeed it closes; one failure opens it again.

Only what says the version is unhealthy counts: the caller records
failures (unavailable, timed out, internal) and successes. Client errors
(bad input, unknown model) and a full queue (overload spills over, it does
not trip) are not recorded at all; a half-open probe that ends that way is
`forgotten`, so that its slot goes to another probe.

A slow call is one whose *service* took `slow_call_s` or more: the time its
model call took (`service_s`, which inference reports with each answer), or,
where the answer does not say, the whole call. The rest of a call's time is
waiting: in the model's queue, in the event loops and the bus of busy
processes. Waiting grows with load, not with a fault: a breaker that counted
it would open on a busy, healthy model and send everyone to the fallback, or
to a 503, at exactly the moment capacity matters.

An operator may force a breaker (`force`): OPEN sends every call elsewhere
until told otherwise, CLOSED lets every call through and never trips (its
outcomes are not even kept), AUTO hands it back to its own judgement,
closed and with an empty window.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Mode(enum.Enum):
    """Who decides the breaker's state: its own counts (AUTO) or the operator."""

    AUTO = "auto"
    OPEN = "open"
    CLOSED = "closed"


FORCED_REASONS = {
    Mode.OPEN: "forced open by the operator",
    Mode.CLOSED: "forced closed by the operator",
    Mode.AUTO: "back to auto by the operator",
}


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    window_s: float = 30.0
    min_calls: int = 20
    failure_rate: float = 0.5
    slow_call_s: float = 5.0
    slow_call_rate: float = 0.8
    open_s: float = 5.0
    max_open_s: float = 60.0
    probes: int = 3


@dataclass(frozen=True, slots=True)
class Transition:
    previous: State
    state: State
    reason: str


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy) -> None:
        self._policy = policy
        self.state = State.CLOSED
        self.mode = Mode.AUTO
        self._calls: deque[tuple[float, bool, bool]] = deque()  # (at, failed, slow)
        self._open_until = 0.0
        self._open_for = policy.open_s
        self._probes_sent = 0
        self._probes_passed = 0

    def allow(self, now_s: float) -> tuple[bool, Transition | None]:
        """May a call go to the model version now? (and the state change that caused, if any)"""
        if self.mode is not Mode.AUTO:
            return self.mode is Mode.CLOSED, None
        change = None
        if self.state is State.OPEN and now_s >= self._open_until:
            change = self._move(State.HALF_OPEN, "open time over: probing")
            self._probes_sent = self._probes_passed = 0
        if self.state is State.CLOSED:
            return True, change
        if self.state is State.HALF_OPEN and self._probes_sent < self._policy.probes:
            self._probes_sent += 1
            return True, change
        return False, change

    def record(
        self, *, failed: bool, duration_s: float, now_s: float, service_s: float | None = None
    ) -> Transition | None:
        """One call's outcome (`service_s` of its `duration_s` spent in the model, when
        known: slowness is judged on it); the state change it causes, if any."""
        p = self._policy
        if self.mode is not Mode.AUTO:
            return None
        if self.state is State.HALF_OPEN:
            if failed:
                return self._open(now_s, "a probe failed", backoff=True)
            self._probes_passed += 1
            if self._probes_passed >= p.probes:
                self._calls.clear()
                self._open_for = p.open_s
                return self._move(State.CLOSED, "every probe succeeded")
            return None
        if self.state is State.OPEN:
            return None  # a call let through before it opened
        served_s = duration_s if service_s is None else service_s
        self._calls.append((now_s, failed, served_s >= p.slow_call_s))
        while self._calls and self._calls[0][0] < now_s - p.window_s:
            self._calls.popleft()
        calls, failures, slow = self.figures(now_s)
        if calls < p.min_calls or failures is None or slow is None:
            return None
        if failures >= p.failure_rate:
            return self._open(now_s, f"failure rate {failures:.0%} over {calls} calls")
        if slow >= p.slow_call_rate:
            return self._open(now_s, f"slow-call rate {slow:.0%} over {calls} calls")
        return None

    def figures(self, now_s: float) -> tuple[int, float | None, float | None]:
        """(calls, failure rate, slow-call rate) over the window as of `now_s`; rates None
        when no call is in it."""
        recent = [c for c in self._calls if c[0] >= now_s - self._policy.window_s]
        if not recent:
            return 0, None, None
        failures = sum(1 for _, f, _ in recent if f) / len(recent)
        return len(recent), failures, sum(1 for _, _, s in recent if s) / len(recent)

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    def reconfigure(self, policy: BreakerPolicy) -> None:
        """Judge by `policy` from now on; the state and the outcomes kept stay."""
        self._policy = policy
        self._open_for = min(max(self._open_for, policy.open_s), policy.max_open_s)

    def force(self, mode: Mode) -> Transition | None:
        """The operator decides (OPEN, CLOSED) or hands back (AUTO); the change, if any."""
        if mode is self.mode:
            return None
        self.mode = mode
        self._calls.clear()
        self._open_for = self._policy.open_s
        self._probes_sent = self._probes_passed = 0
        state = State.OPEN if mode is Mode.OPEN else State.CLOSED
        return self._move(state, FORCED_REASONS[mode])

    def retry_after_s(self, now_s: float) -> float:
        """How long until an open breaker lets a probe through (0 when it is not open).

        Forced open, no probe comes: the open time is a hint to try again."""
        if self.state is not State.OPEN:
            return 0.0
        if self.mode is Mode.OPEN:
            return self._policy.open_s
        return max(0.0, self._open_until - now_s)

    def forget(self) -> None:
        """A call let through ended without a verdict on the version (the caller's own
        error, overload, the caller gone): a half-open probe slot it took is free again."""
        if self.state is State.HALF_OPEN and self._probes_sent > self._probes_passed:
            self._probes_sent -= 1

    def _open(self, now_s: float, reason: str, *, backoff: bool = False) -> Transition:
        if backoff:
            self._open_for = min(self._policy.max_open_s, self._open_for * 2)
        self._open_until = now_s + self._open_for
        self._calls.clear()
        return self._move(State.OPEN, reason)

    def _move(self, state: State, reason: str) -> Transition:
        change = Transition(previous=self.state, state=state, reason=reason)
        self.state = state
        return change
