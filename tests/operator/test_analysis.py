"""Canary analysis from inference replicas' metric snapshots.

What an SRE relies on: the figures of a window are the canary's traffic in that window
(across replicas, across restarts); p99 is Prometheus' histogram_quantile; too few requests
is never a pass or a fail; and the message names the figure and the threshold it broke.
"""

from __future__ import annotations

import bisect
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgegate_operator.core import (
    AgreementSnapshot,
    AnalysisPolicy,
    AnalysisResult,
    MetricsSnapshot,
    Verdict,
    analyse,
    histogram_quantile,
)

BOUNDS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5)
POLICY = AnalysisPolicy(min_requests=20, max_error_rate=0.01, max_p99_latency_s=1.0)


def snap(
    at_s: float,
    *,
    requests: int,
    instance: str = "a",
    loaded_at_s: float = 0.0,
    errors: dict[str, int] | None = None,
    latency_s: float = 0.02,
    version: str = "2",
    bounds_s: tuple[float, ...] = BOUNDS_S,
) -> MetricsSnapshot:
    """A cumulative snapshot whose `requests` all took `latency_s`."""
    counts = [0] * (len(bounds_s) + 1)
    counts[bisect.bisect_left(bounds_s, latency_s)] = requests
    failed = sum((errors or {}).values())
    return MetricsSnapshot(
        model="m",
        version=version,
        instance=instance,
        at_s=at_s,
        loaded_at_s=loaded_at_s,
        requests=requests,
        successes=requests - failed,
        errors=errors or {},
        latency_bounds_s=bounds_s,
        latency_counts=tuple(counts),
        latency_sum_s=requests * latency_s,
    )


def test_p99_interpolates_inside_its_bucket_as_prometheus_does() -> None:
    # 50 under 0.1 s, 40 in (0.1, 0.5], 10 in (0.5, 1]: rank 99 is 9/10 into the third bucket.
    assert histogram_quantile(0.99, (0.1, 0.5, 1.0), (50, 40, 10, 0)) == (
        pytest.approx(0.95),
        False,
    )
    assert histogram_quantile(0.5, (0.1, 0.5, 1.0), (50, 40, 10, 0)) == (
        pytest.approx(0.1),
        False,
    )
    # The first bucket starts at 0.
    assert histogram_quantile(0.99, (0.2, 1.0), (100, 0, 0)) == (pytest.approx(0.198), False)


def test_p99_past_the_largest_bucket_is_that_bound_and_says_so() -> None:
    assert histogram_quantile(0.99, (0.1, 0.5), (10, 0, 90)) == (0.5, True)
    assert histogram_quantile(0.99, (0.1, 0.5), (0, 0, 0)) is None


@given(
    samples=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=300),
    q=st.floats(min_value=0.01, max_value=1.0),
)
def test_the_estimate_lies_in_the_bucket_of_the_true_quantile(
    samples: list[float], q: float
) -> None:
    counts = [0] * (len(BOUNDS_S) + 1)
    for value in samples:
        counts[bisect.bisect_left(BOUNDS_S, value)] += 1
    found = histogram_quantile(q, BOUNDS_S, counts)
    assert found is not None
    value, above = found
    true = sorted(samples)[max(0, math.ceil(q * len(samples)) - 1)]
    bucket = bisect.bisect_left(BOUNDS_S, true)
    if bucket == len(BOUNDS_S):
        assert above and value == BOUNDS_S[-1]
    else:
        lower = 0.0 if bucket == 0 else BOUNDS_S[bucket - 1]
        assert not above
        assert lower - 1e-12 <= value <= BOUNDS_S[bucket] + 1e-12


def test_a_window_counts_growth_across_replicas_not_what_came_before() -> None:
    result = analyse(
        [
            snap(95, requests=1000, errors={"INTERNAL": 500}),  # before the window: baseline
            snap(110, requests=1020, errors={"INTERNAL": 500}),
            snap(130, requests=1050, errors={"INTERNAL": 500}),
            snap(100, requests=10, instance="b"),
            snap(130, requests=60, instance="b"),
            snap(140, requests=9000, instance="b", errors={"INTERNAL": 9000}),  # after it
            snap(120, requests=5000, version="1", errors={"INTERNAL": 5000}),  # stable's
        ],
        version="2",
        policy=POLICY,
        start_s=100,
        end_s=130,
    )
    assert result.requests == 100
    assert result.error_rate == 0
    assert result.verdict is Verdict.PASS
    assert result.message == "100 requests, error rate 0 <= 0.01, p99 0.0496 s <= 1 s"


def test_a_replica_that_restarts_inside_the_window_counts_its_new_run_from_zero() -> None:
    result = analyse(
        [
            snap(95, requests=1000),
            snap(110, requests=1010),
            # crashed and came back: a new loaded_at, counters from zero, mostly errors
            snap(125, requests=30, loaded_at_s=115, errors={"UNAVAILABLE": 20}),
            # the same run, but its counters went down: a reset too
            snap(126, requests=200, instance="b", loaded_at_s=50),
            snap(127, requests=5, instance="b", loaded_at_s=50),
        ],
        version="2",
        policy=POLICY,
        start_s=100,
        end_s=130,
    )
    assert result.requests == 10 + 30 + 5
    assert result.error_rate == pytest.approx(20 / 45)
    assert result.verdict is Verdict.FAIL


def test_a_replica_without_a_baseline_counts_from_zero_or_from_its_first_snapshot() -> None:
    # Loaded inside the window: all its counts are the window's. Loaded before, with no
    # snapshot before the window (the operator restarted): its first snapshot is the baseline.
    result = analyse(
        [
            snap(110, requests=40, loaded_at_s=105),  # loaded in the window: all of it
            snap(110, requests=7000, instance="b", loaded_at_s=10),  # no baseline: its first
            snap(120, requests=7010, instance="b", loaded_at_s=10),
        ],
        version="2",
        policy=POLICY,
        start_s=100,
        end_s=130,
    )
    assert result.requests == 50


def test_too_few_requests_is_inconclusive_even_when_all_of_them_failed() -> None:
    result = analyse(
        [snap(95, requests=0), snap(120, requests=19, errors={"INTERNAL": 19}, latency_s=2.0)],
        version="2",
        policy=POLICY,
        start_s=100,
        end_s=130,
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.message == "19 requests in the window, fewer than minRequests 20"
    assert result.error_rate == 1.0


def test_server_errors_over_the_limit_fail_and_caller_errors_do_not_count() -> None:
    base = snap(95, requests=0)
    callers = analyse(
        [base, snap(120, requests=100, errors={"INVALID_ARGUMENT": 60, "NOT_FOUND": 10})],
        version="2",
        policy=POLICY,
        start_s=100,
        end_s=130,
    )
    assert callers.verdict is Verdict.PASS
    assert callers.error_rate == 0
    server = analyse(
        [base, snap(120, requests=100, errors={"DEADLINE_EXCEEDED": 3, "INTERNAL": 2})],
        version="2",
        policy=POLICY,
        start_s=100,
        end_s=130,
    )
    assert server.verdict is Verdict.FAIL
    assert server.message == "error rate 0.05 over maxErrorRate 0.01"


def test_a_slow_canary_fails_on_p99_with_the_figure_and_the_threshold() -> None:
    result = analyse(
        [snap(95, requests=0), snap(120, requests=100, latency_s=2.0)],
        version="2",
        policy=POLICY,
        start_s=100,
        end_s=130,
    )
    assert result.verdict is Verdict.FAIL
    assert result.p99_s == pytest.approx(2.485)
    assert result.message == "p99 2.485 s over maxP99LatencySeconds 1"


def test_p99_past_the_largest_bucket_fails_only_when_that_bucket_is_over_the_limit() -> None:
    slow = [snap(95, requests=0), snap(120, requests=100, latency_s=9.0)]
    over = analyse(slow, version="2", policy=POLICY, start_s=100, end_s=130)
    assert over.verdict is Verdict.FAIL
    assert over.message == "p99 above 2.5 s over maxP99LatencySeconds 1"
    lenient = AnalysisPolicy(max_p99_latency_s=5.0)
    unknown = analyse(slow, version="2", policy=lenient, start_s=100, end_s=130)
    assert unknown.verdict is Verdict.INCONCLUSIVE
    assert "above the largest latency bucket (2.5 s)" in unknown.message


def test_replicas_with_different_buckets_are_inconclusive() -> None:
    result = analyse(
        [
            snap(120, requests=50, loaded_at_s=110),
            snap(120, requests=50, loaded_at_s=110, instance="b", bounds_s=(0.1, 1.0)),
        ],
        version="2",
        policy=POLICY,
        start_s=100,
        end_s=130,
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "different latency buckets" in result.message


SHADOW = AnalysisPolicy(min_requests=20, min_agreement=0.95)


def agreement(
    at_s: float, compared: int, agreed: int, *, started_at_s: float = 0
) -> AgreementSnapshot:
    return AgreementSnapshot(
        version="2",
        instance="gw-1",
        at_s=at_s,
        started_at_s=started_at_s,
        compared=compared,
        agreed=agreed,
    )


def test_a_fast_error_free_canary_that_answers_wrongly_fails_on_agreement() -> None:
    result = analyse(
        [snap(95, requests=0), snap(120, requests=100)],
        version="2",
        policy=SHADOW,
        start_s=100,
        end_s=130,
        agreements=[agreement(90, 500, 500), agreement(125, 600, 560)],
    )
    assert result.error_rate == 0
    assert result.agreement == pytest.approx(0.6)
    assert result.verdict is Verdict.FAIL
    assert result.message == "agreement 0.6 under minAgreement 0.95"


def test_agreement_on_too_few_comparisons_is_inconclusive_and_enough_passes() -> None:
    calls = [snap(95, requests=0), snap(120, requests=100)]
    few = analyse(
        calls,
        version="2",
        policy=SHADOW,
        start_s=100,
        end_s=130,
        agreements=[agreement(90, 0, 0), agreement(125, 5, 5)],
    )
    assert few.verdict is Verdict.INCONCLUSIVE
    assert few.message == (
        "5 shadow comparisons in the window, fewer than minRequests 20: agreement unknown"
    )
    enough = analyse(
        calls,
        version="2",
        policy=SHADOW,
        start_s=100,
        end_s=130,
        agreements=[agreement(90, 0, 0), agreement(125, 100, 99)],
    )
    assert enough.verdict is Verdict.PASS
    assert enough.message.endswith("agreement 0.99 >= 0.95")


def test_a_canary_that_refuses_what_stable_accepts_fails_against_the_baseline() -> None:
    def window(canary_refused: int, stable_refused: int) -> AnalysisResult:
        return analyse(
            [
                snap(95, requests=0),
                snap(120, requests=100, errors={"INVALID_ARGUMENT": canary_refused}),
                snap(95, requests=0, version="1"),
                snap(120, requests=200, version="1", errors={"INVALID_ARGUMENT": stable_refused}),
            ],
            version="2",
            policy=POLICY,
            start_s=100,
            end_s=130,
            baseline="1",
        )

    worse = window(canary_refused=30, stable_refused=2)
    assert worse.verdict is Verdict.FAIL
    assert worse.message == (
        "refuses 0.3 of its requests as bad input, version 1 0.01: over maxErrorRate 0.01 more"
    )
    # The same share of bad requests reaches both: the callers', not the canary's, fault.
    assert window(canary_refused=10, stable_refused=20).verdict is Verdict.PASS
