"""The operator's Prometheus metrics (served on `--metrics-port`, /metrics).

- `edgegate_operator_rollouts{phase}`: ModelDeployments in each phase now;
- `edgegate_operator_analysis_verdicts_total{verdict}`: judged windows;
- `edgegate_operator_reconcile_errors_total{kind}` and
  `edgegate_operator_reconcile_seconds{kind}`: failed reconciles and how
  long each took, per resource kind.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edgegate_common.metrics import LATENCY_BUCKETS_S
from edgegate_operator.core import Phase


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rollouts = Gauge(
            "edgegate_operator_rollouts",
            "ModelDeployments by rollout phase",
            ["phase"],
            registry=registry,
        )
        self.verdicts = Counter(
            "edgegate_operator_analysis_verdicts_total",
            "Canary analysis windows judged, by verdict",
            ["verdict"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "edgegate_operator_reconcile_errors_total",
            "Reconciles that failed (they are retried)",
            ["kind"],
            registry=registry,
        )
        self.reconcile_seconds = Histogram(
            "edgegate_operator_reconcile_seconds",
            "Time one reconcile took",
            ["kind"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.resync_active = Gauge(
            "edgegate_operator_resync_active",
            "1 while this replica's resync acts, 0 while peering pauses it",
            registry=registry,
        )
        self._phases: dict[tuple[str, str], str] = {}

    def observe_phase(self, namespace: str, name: str, phase: str) -> None:
        self._phases[(namespace, name)] = phase
        self._publish()

    def forget(self, namespace: str, name: str) -> None:
        self._phases.pop((namespace, name), None)
        self._publish()

    def _publish(self) -> None:
        counts = Tally(self._phases.values())
        for phase in Phase:
            self.rollouts.labels(phase.value).set(counts.get(phase.value, 0))
