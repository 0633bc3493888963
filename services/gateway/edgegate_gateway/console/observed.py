"""What the console hears on NATS, kept for an hour, in plain numbers (no I/O here).

Three kinds of publication feed it: inference replicas' metric snapshots
(per model version), gateway replicas' traffic snapshots (per tenant) and
breaker events. Snapshots carry cumulative counters, so the console keeps
each instance's last one and files the difference into a ten-second step.
A counter that went down, or a new `loaded_at`/`started_at`, means the
instance started again: its whole count is new. The first snapshot heard
from an instance counts whole too when the instance started inside the
window, so a console started after its suite still shows what it did.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgegate_common.histograms import histogram_quantile
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb
from edgegate_protos.inference.v1 import inference_pb2 as ipb

WINDOW_S = 3600.0
STEP_S = 10.0
FRESH_S = 30.0  # a replica not heard from for longer is no longer counted as serving
BREAKER_STALE_S = 600.0  # a breaker event older than this no longer speaks for its gateway
_RANK = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(slots=True)
class _Step:
    """One STEP_S of the whole suite's traffic."""

    requests: int = 0
    errors: int = 0
    admitted: int = 0
    throttled: int = 0
    latency: dict[float, int] = field(default_factory=lambda: defaultdict(int))  # bound -> count
    tenants: dict[str, list[int]] = field(default_factory=dict)  # tenant -> [admitted, throttled]


@dataclass(frozen=True, slots=True)
class BreakerSeen:
    state: str
    since_s: float
    reason: str
    instance: str


class Observed:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._began_s = clock()
        self._steps: dict[int, _Step] = {}
        self._metrics: dict[tuple[str, str, str], ipb.MetricsSnapshot] = {}
        self._traffic: dict[str, gpb.TrafficSnapshot] = {}
        self._breakers: dict[tuple[str, str], dict[str, BreakerSeen]] = defaultdict(dict)

    # -- what arrives ----------------------------------------------------

    def metrics(self, snap: ipb.MetricsSnapshot) -> None:
        key = (snap.model, snap.version, snap.instance)
        before = self._metrics.get(key)
        self._metrics[key] = snap
        base = _baseline(before, snap.loaded_at.ToSeconds(), snap.requests, self._window_start())
        if base is None:
            return
        step = self._step(snap.at.ToSeconds())
        step.requests += snap.requests - (base.requests if base else 0)
        step.errors += sum(snap.errors.values()) - (sum(base.errors.values()) if base else 0)
        old = list(base.latency_counts) if base else []
        for i, count in enumerate(snap.latency_counts):
            bound = snap.latency_bounds_s[i] if i < len(snap.latency_bounds_s) else float("inf")
            step.latency[bound] += count - (old[i] if i < len(old) else 0)

    def traffic(self, snap: gpb.TrafficSnapshot) -> None:
        before = self._traffic.get(snap.instance)
        self._traffic[snap.instance] = snap
        total = sum(t.admitted + t.throttled for t in snap.tenants.values())
        base = _baseline(before, snap.started_at.ToSeconds(), total, self._window_start())
        if base is None:
            return
        step = self._step(snap.at.ToSeconds())
        for tenant, counts in snap.tenants.items():
            old = base.tenants[tenant] if base and tenant in base.tenants else None
            admitted = counts.admitted - (old.admitted if old else 0)
            throttled = counts.throttled - (old.throttled if old else 0)
            both = step.tenants.setdefault(tenant, [0, 0])
            both[0] += admitted
            both[1] += throttled
            step.admitted += admitted
            step.throttled += throttled

    def breaker(self, event: gpb.BreakerEvent) -> None:
        self._breakers[(event.model, event.version)][event.instance] = BreakerSeen(
            state=event.state,
            since_s=event.at.ToSeconds(),
            reason=event.reason,
            instance=event.instance,
        )

    # -- what the pages show ---------------------------------------------

    def series(self) -> list[dict[str, Any]]:
        """One point per step since the window (or this console) began, oldest first."""
        now = self._clock()
        first = int(max(self._began_s, now - WINDOW_S) // STEP_S)
        last = int(now // STEP_S)
        points = []
        for index in range(first, last + 1):
            step = self._steps.get(index) or _Step()
            points.append(
                {
                    "t": iso_time(index * STEP_S),
                    "requests_per_s": step.requests / STEP_S,
                    "errors_per_s": step.errors / STEP_S,
                    "throttled_per_s": step.throttled / STEP_S,
                    "p50_ms": _quantile_ms(step.latency, 0.5),
                    "p99_ms": _quantile_ms(step.latency, 0.99),
                }
            )
        return points

    def totals(self) -> dict[str, int]:
        steps = list(self._recent(WINDOW_S))
        return {
            "requests": sum(s.requests for s in steps),
            "errors": sum(s.errors for s in steps),
            "throttled": sum(s.throttled for s in steps),
        }

    def tenant_traffic(self) -> dict[str, dict[str, float]]:
        """Per tenant: accepted and refused requests/s over the last minute, 429s in the hour."""
        minute = max(1.0, min(60.0, self._clock() - self._began_s))
        result: dict[str, dict[str, float]] = {}
        for step in self._recent(WINDOW_S):
            for tenant, (_, throttled) in step.tenants.items():
                row = result.setdefault(tenant, _tenant_row())
                row["throttled"] += throttled
        for step in self._recent(60.0):
            for tenant, (admitted, throttled) in step.tenants.items():
                row = result.setdefault(tenant, _tenant_row())
                row["rate_per_s"] += admitted / minute
                row["throttled_per_s"] += throttled / minute
        return result

    def model_versions(self) -> list[dict[str, Any]]:
        now = self._clock()
        grouped: dict[tuple[str, str], list[ipb.MetricsSnapshot]] = defaultdict(list)
        for (model, version, _), snap in self._metrics.items():
            grouped[(model, version)].append(snap)
        return [_model_row(m, v, snaps, now) for (m, v), snaps in sorted(grouped.items())]

    def breakers(self) -> dict[tuple[str, str], BreakerSeen]:
        """Per model version, the worst state a gateway reported lately (open > half-open)."""
        now = self._clock()
        worst: dict[tuple[str, str], BreakerSeen] = {}
        for key, by_instance in self._breakers.items():
            fresh = [b for b in by_instance.values() if now - b.since_s < BREAKER_STALE_S]
            if fresh:
                worst[key] = max(fresh, key=lambda b: (_RANK.get(b.state, 0), b.since_s))
        return worst

    # -- bookkeeping -----------------------------------------------------

    def _window_start(self) -> float:
        return self._clock() - WINDOW_S

    def _step(self, at_s: float) -> _Step:
        index = int(at_s // STEP_S)
        step = self._steps.get(index)
        if step is None:
            step = self._steps[index] = _Step()
            self._forget_old()
        return step

    def _forget_old(self) -> None:
        """Drop steps, and replicas not heard from, older than the window (pods come and go)."""
        since = self._clock() - WINDOW_S
        oldest = int(since // STEP_S)
        for stale in [i for i in self._steps if i < oldest]:
            del self._steps[stale]
        for key in [k for k, snap in self._metrics.items() if snap.at.ToSeconds() < since]:
            del self._metrics[key]
        for name in [n for n, snap in self._traffic.items() if snap.at.ToSeconds() < since]:
            del self._traffic[name]
        for by_instance in self._breakers.values():
            for name in [n for n, b in by_instance.items() if b.since_s < since]:
                del by_instance[name]

    def _recent(self, span_s: float) -> Iterable[_Step]:
        since = int((self._clock() - span_s) // STEP_S)
        return (step for index, step in self._steps.items() if index > since)


def _baseline(before: Any, began_s: float, total: int, window_start_s: float) -> Any:
    """The snapshot to subtract: `before`; False-y (count all) after a restart or for an
    instance that began inside the window; None (count nothing yet) otherwise."""
    if before is not None:
        restarted = _began(before) != began_s or _total(before) > total
        return False if restarted else before
    return False if began_s >= window_start_s else None


def _began(snap: Any) -> float:
    if isinstance(snap, ipb.MetricsSnapshot):
        return float(snap.loaded_at.ToSeconds())
    return float(snap.started_at.ToSeconds())


def _total(snap: Any) -> int:
    if isinstance(snap, ipb.MetricsSnapshot):
        return int(snap.requests)
    return sum(t.admitted + t.throttled for t in snap.tenants.values())


def _model_row(
    model: str, version: str, snaps: list[ipb.MetricsSnapshot], now_s: float
) -> dict[str, Any]:
    fresh = [s for s in snaps if now_s - s.at.ToSeconds() < FRESH_S]
    requests = sum(s.requests for s in snaps)
    queue_s = sum(s.queue_sum_s for s in snaps)
    latency_s = sum(s.latency_sum_s for s in snaps)
    batch_sizes: dict[str, int] = defaultdict(int)
    latency: dict[float, int] = defaultdict(int)
    for snap in snaps:
        for size, count in snap.batch_sizes.items():
            batch_sizes[str(size)] += count
        for i, count in enumerate(snap.latency_counts):
            bounds = snap.latency_bounds_s
            latency[bounds[i] if i < len(bounds) else float("inf")] += count
    providers = sorted({p for s in fresh or snaps for p in s.execution_providers})
    return {
        "model": model,
        "version": version,
        "ready": any(s.ready for s in fresh),
        "instances": len(fresh),
        "execution_providers": providers,
        "requests": requests,
        "errors": sum(sum(s.errors.values()) for s in snaps),
        "queued": sum(s.queued for s in fresh),
        "batch_sizes": dict(sorted(batch_sizes.items(), key=lambda kv: int(kv[0]))),
        "mean_queue_ms": queue_s / requests * 1000 if requests else None,
        "mean_compute_ms": max(0.0, latency_s - queue_s) / requests * 1000 if requests else None,
        "p99_ms": _quantile_ms(latency, 0.99),
        "updated_at": iso_time(max(s.at.ToSeconds() for s in snaps)),
    }


def _quantile_ms(histogram: Mapping[float, int], q: float) -> float | None:
    """The q-quantile of a merged latency histogram (bound -> count; `inf`: above the
    last bound), in ms: read as the operator reads a canary's p99."""
    bounds = sorted(b for b in histogram if b != float("inf"))
    counts = [histogram[b] for b in bounds] + [histogram.get(float("inf"), 0)]
    found = histogram_quantile(q, bounds, counts)
    return None if found is None else found[0] * 1000


def _tenant_row() -> dict[str, float]:
    return {"rate_per_s": 0.0, "throttled": 0.0, "throttled_per_s": 0.0}


def iso_time(at_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at_s))
