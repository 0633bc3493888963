"""Canary analysis: per-version metric snapshots in, a verdict out.

Inference replicas publish cumulative counters (`MetricsSnapshot`) every
few seconds; a replica that restarts or reloads its model starts again from
zero, with a new `loaded_at`. A window's figures are the counters' growth
between the last snapshot at or before the window's start and the last one
inside it, per replica, summed over replicas. A reset inside the window
(new `loaded_at`, or a counter that went down) counts the new run from zero,
as Prometheus' `increase()` does, so a crash-looping canary cannot hide its
errors by losing them.

Caller errors (a request the version refused as bad) say nothing about a
version on their own, but a canary that refuses requests the stable
version accepts is broken for them: given the baseline (stable) version,
the canary's caller-error rate above the baseline's counts against
`maxErrorRate` too.

The verdict is three-valued. Fewer requests than `minRequests` is
*Inconclusive*, never a pass or a fail: twenty requests say little, two say
nothing, and a canary that got no traffic has not earned promotion. Only
server-side failures count as errors; a caller's bad request says nothing
about the version that refused it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from edgegate_common.errors import REQUEST_ERRORS, Code
from edgegate_common.histograms import histogram_quantile
from edgegate_operator.core.spec import AnalysisPolicy
from edgegate_operator.core.status import Verdict

# gRPC status names that blame the caller, not the version: not errors for analysis. The
# request errors a breaker ignores too, and a caller that left or repeated itself; a model
# that lacks a method (UNIMPLEMENTED) is the version's fault.
CALLER_ERRORS = frozenset(
    code.name
    for code in (REQUEST_ERRORS - {Code.UNIMPLEMENTED}) | {Code.CANCELLED, Code.ALREADY_EXISTS}
)


# A version refusing a request as bad input: compared with the baseline's refusals.
REFUSALS = frozenset(
    {Code.INVALID_ARGUMENT.name, Code.FAILED_PRECONDITION.name, Code.OUT_OF_RANGE.name}
)


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """`edgegate.inference.v1.MetricsSnapshot`, times as epoch seconds."""

    model: str
    version: str
    instance: str
    at_s: float
    loaded_at_s: float
    ready: bool = True
    execution_providers: tuple[str, ...] = ()
    requests: int = 0
    successes: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    latency_bounds_s: tuple[float, ...] = ()
    latency_counts: tuple[int, ...] = ()  # per bucket; the last one is above the last bound
    latency_sum_s: float = 0.0
    batch_sizes: Mapping[int, int] = field(default_factory=dict)
    executions: int = 0
    inferences: int = 0
    queue_sum_s: float = 0.0
    queued: int = 0


@dataclass(frozen=True, slots=True)
class AgreementSnapshot:
    """A gateway replica's cumulative shadow comparisons for one version."""

    version: str
    instance: str
    at_s: float
    started_at_s: float  # a new value: the counters start again from zero
    compared: int
    agreed: int


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """The figures of one window and what they mean for the canary."""

    verdict: Verdict
    message: str
    window_start_s: float
    window_end_s: float
    requests: int
    error_rate: float | None = None
    p99_s: float | None = None
    agreement: float | None = None


@dataclass(frozen=True, slots=True)
class _Sample:
    source: str  # the replica (inference) or gateway instance that counted
    at_s: float
    epoch_s: float
    counts: Counter[str]


def analyse(
    snapshots: Iterable[MetricsSnapshot],
    *,
    version: str,
    policy: AnalysisPolicy,
    start_s: float,
    end_s: float,
    agreements: Iterable[AgreementSnapshot] = (),
    baseline: str | None = None,
) -> AnalysisResult:
    """Judge `version` over the window (start_s, end_s], against `baseline`'s refusals."""
    snapshots = list(snapshots)
    mine = [s for s in snapshots if s.version == version]
    bounds = {s.latency_bounds_s for s in mine if start_s < s.at_s <= end_s}
    window = {"window_start_s": start_s, "window_end_s": end_s}
    if len(bounds) > 1:
        return AnalysisResult(
            verdict=Verdict.INCONCLUSIVE,
            message="replicas publish different latency buckets; p99 cannot be merged",
            requests=0,
            **window,
        )
    totals = _metrics_growth(mine, start_s=start_s, end_s=end_s)
    shadow = _delta(
        [
            _Sample(
                a.instance, a.at_s, a.started_at_s, Counter(compared=a.compared, agreed=a.agreed)
            )
            for a in agreements
            if a.version == version
        ],
        start_s=start_s,
        end_s=end_s,
    )
    bounds_s = next(iter(bounds), ())
    counts = [totals[f"bucket:{i}"] for i in range(len(bounds_s) + 1)]
    result = _judge(totals, shadow, bounds_s, counts, policy=policy, **window)
    if baseline is None or result.verdict is Verdict.FAIL or not totals["requests"]:
        return result
    theirs = [s for s in snapshots if s.version == baseline]
    base = _metrics_growth(theirs, start_s=start_s, end_s=end_s)
    return _against_baseline(result, totals, base, policy=policy, baseline=baseline)


def _against_baseline(
    result: AnalysisResult,
    mine: Counter[str],
    base: Counter[str],
    *,
    policy: AnalysisPolicy,
    baseline: str,
) -> AnalysisResult:
    """Fail a canary that refuses more of its requests as bad than the baseline does."""
    if result.requests < policy.min_requests:
        return result
    rate = mine["caller_errors"] / mine["requests"]
    base_rate = base["caller_errors"] / base["requests"] if base["requests"] else 0.0
    if rate - base_rate <= policy.max_error_rate:
        return result
    message = (
        f"refuses {rate:.4g} of its requests as bad input, version {baseline} "
        f"{base_rate:.4g}: over maxErrorRate {policy.max_error_rate:g} more"
    )
    return replace(result, verdict=Verdict.FAIL, message=message)


def _metric_counts(s: MetricsSnapshot) -> Counter[str]:
    counts: Counter[str] = Counter(requests=s.requests)
    counts["server_errors"] = sum(n for code, n in s.errors.items() if code not in CALLER_ERRORS)
    counts["caller_errors"] = sum(n for code, n in s.errors.items() if code in REFUSALS)
    counts.update({f"bucket:{i}": n for i, n in enumerate(s.latency_counts)})
    return counts


def _metrics_growth(
    snapshots: Sequence[MetricsSnapshot], *, start_s: float, end_s: float
) -> Counter[str]:
    """One version's request, error and latency-bucket counts over (start_s, end_s]."""
    samples = [_Sample(s.instance, s.at_s, s.loaded_at_s, _metric_counts(s)) for s in snapshots]
    return _delta(samples, start_s=start_s, end_s=end_s)


def _delta(samples: Sequence[_Sample], *, start_s: float, end_s: float) -> Counter[str]:
    """Counter growth over (start_s, end_s], per source, summed."""
    per_source: dict[str, list[_Sample]] = {}
    for sample in samples:
        per_source.setdefault(sample.source, []).append(sample)
    total: Counter[str] = Counter()
    for series in per_source.values():
        series.sort(key=lambda s: s.at_s)
        before = [s for s in series if s.at_s <= start_s]
        previous = before[-1] if before else None
        for sample in (s for s in series if start_s < s.at_s <= end_s):
            if previous is None and sample.epoch_s <= start_s:
                previous = sample  # running before the window, nothing older known: a baseline
                continue
            if previous is None or _reset(previous, sample):
                total.update(sample.counts)  # (re)started inside the window: all of it counts
            else:
                total.update(sample.counts - previous.counts)
            previous = sample
    return total


def _reset(old: _Sample, new: _Sample) -> bool:
    return new.epoch_s != old.epoch_s or any(new.counts[k] < n for k, n in old.counts.items())


def _judge(
    totals: Counter[str],
    shadow: Counter[str],
    bounds_s: Sequence[float],
    counts: Sequence[int],
    *,
    policy: AnalysisPolicy,
    window_start_s: float,
    window_end_s: float,
) -> AnalysisResult:
    requests = totals["requests"]
    error_rate = totals["server_errors"] / requests if requests else None
    quantile = histogram_quantile(0.99, bounds_s, counts)
    p99_s, above = quantile if quantile else (None, False)
    compared = shadow["compared"]
    agreement = shadow["agreed"] / compared if compared else None
    figures = AnalysisResult(
        verdict=Verdict.INCONCLUSIVE,
        message="",
        window_start_s=window_start_s,
        window_end_s=window_end_s,
        requests=requests,
        error_rate=error_rate,
        p99_s=p99_s,
        agreement=agreement,
    )
    verdict, message = _verdict(figures, policy=policy, p99_above=above, compared=compared)
    return replace(figures, verdict=verdict, message=message)


def _verdict(
    r: AnalysisResult, *, policy: AnalysisPolicy, p99_above: bool, compared: int
) -> tuple[Verdict, str]:
    if r.requests < policy.min_requests:
        return Verdict.INCONCLUSIVE, (
            f"{r.requests} requests in the window, fewer than minRequests {policy.min_requests}"
        )
    limit_s = policy.max_p99_latency_s
    failures = []
    if r.error_rate is not None and r.error_rate > policy.max_error_rate:
        failures.append(
            f"error rate {r.error_rate:.4g} over maxErrorRate {policy.max_error_rate:g}"
        )
    if r.p99_s is not None and (r.p99_s > limit_s or (p99_above and r.p99_s >= limit_s)):
        shown = f"above {r.p99_s:g}" if p99_above else f"{r.p99_s:.4g}"
        failures.append(f"p99 {shown} s over maxP99LatencySeconds {limit_s:g}")
    wanted = policy.min_agreement
    enough = compared >= policy.min_requests
    if wanted is not None and r.agreement is not None and enough and r.agreement < wanted:
        failures.append(f"agreement {r.agreement:.4g} under minAgreement {wanted:g}")
    if failures:
        return Verdict.FAIL, "; ".join(failures)
    if p99_above and r.p99_s is not None:
        return Verdict.INCONCLUSIVE, (
            f"p99 is above the largest latency bucket ({r.p99_s:g} s), so it cannot be "
            f"compared with maxP99LatencySeconds {limit_s:g}"
        )
    if wanted is not None and compared < policy.min_requests:
        return Verdict.INCONCLUSIVE, (
            f"{compared} shadow comparisons in the window, fewer than minRequests "
            f"{policy.min_requests}: agreement unknown"
        )
    return Verdict.PASS, _passed(r, policy)


def _passed(r: AnalysisResult, policy: AnalysisPolicy) -> str:
    parts = [f"{r.requests} requests"]
    if r.error_rate is not None:
        parts.append(f"error rate {r.error_rate:.4g} <= {policy.max_error_rate:g}")
    if r.p99_s is not None:
        parts.append(f"p99 {r.p99_s:.4g} s <= {policy.max_p99_latency_s:g} s")
    if r.agreement is not None and policy.min_agreement is not None:
        parts.append(f"agreement {r.agreement:.4g} >= {policy.min_agreement:g}")
    return ", ".join(parts)
