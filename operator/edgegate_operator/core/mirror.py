"""The rollout document: what NATS KV `edgegate-rollouts` holds for one ModelDeployment.

The console and local tools read rollouts from NATS, not from the Kubernetes
API (they hold no cluster credentials), so the document carries everything
`kubectl get md -o yaml` would show them about a rollout: the versions, the
weight, the step and the list of steps, the last analysis with its figures
and verdict, the breakers, the conditions. One document per resource, JSON:

    {
      "namespace": "edgegate", "name": "all-minilm-l6-v2",
      "model": "all-minilm-l6-v2",          # spec.model.name ("" if unreadable)
      "generation": 7,                      # metadata.generation described
      "observedAt": "2025-01-02T03:04:05.678Z",  # when the operator wrote it (UTC)
      "spec": {
        "version": "2",                     # spec.model.version ("" if unreadable)
        "paused": false,
        "steps": ["setWeight 20", "pause 60s", "analysis 30s", "setWeight 100"],
        "analysis": {                       # the thresholds in effect, defaults filled in
          "interval": "30s", "maxErrorRate": 0.01, "maxP99LatencySeconds": 1.0,
          "minRequests": 20, "failureLimit": 2, "inconclusiveLimit": 3,
          "minAgreement": 0.95              # only when the spec sets it
        }
      },
      "status": {...}                       # the resource's status, as the operator writes
    }                                       # it (camelCase, unset fields left out)

`status.step` indexes `spec.steps`. A spec the operator refuses still has a
document: `spec.version`, `spec.paused` and `model` as far as they can be
read, no steps, no analysis, and the status saying why (phase `Degraded`,
a `Degraded` condition with the reason `InvalidSpec`).

`observedAt` is no change of its own: the writer compares documents without
it, so an unchanged rollout is not rewritten on every reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgegate_operator.core.spec import (
    AnalysisPolicy,
    ModelDeploymentSpec,
    SpecError,
    describe_step,
)
from edgegate_operator.core.status import RolloutStatus
from edgegate_operator.core.units import format_time

OBSERVED_AT = "observedAt"


def rollout_document(
    *,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    generation: int,
    status: RolloutStatus,
    observed_at_ms: int,
    parsed: ModelDeploymentSpec | None = None,
) -> dict[str, Any]:
    """The `edgegate-rollouts` document for a resource with this raw `spec` and `status`.

    `parsed` is the spec as the reconcile read it already (None: read it here); a spec
    that cannot be read gives what can be read of the raw one.
    """
    model = spec.get("model")
    model = model if isinstance(model, Mapping) else {}
    try:
        spec_doc = _spec_doc(parsed or ModelDeploymentSpec.from_dict(spec))
    except SpecError:
        spec_doc = {
            "version": _text(model.get("version")),
            "paused": spec.get("paused") is True,
            "steps": [],
            "analysis": {},
        }
    return {
        "namespace": namespace,
        "name": name,
        "model": _text(model.get("name")),
        "generation": generation,
        OBSERVED_AT: format_time(observed_at_ms),
        "spec": spec_doc,
        "status": status.to_dict(),
    }


def _spec_doc(spec: ModelDeploymentSpec) -> dict[str, Any]:
    return {
        "version": spec.model.version,
        "paused": spec.paused,
        "steps": [describe_step(step) for step in spec.canary.steps],
        "analysis": _analysis_doc(spec.canary.analysis),
    }


def _analysis_doc(policy: AnalysisPolicy) -> dict[str, Any]:
    """The analysis thresholds under the spec's own names (as `kubectl get -o yaml` shows)."""
    doc: dict[str, Any] = {
        "interval": f"{policy.interval_ms / 1000:g}s",
        "maxErrorRate": policy.max_error_rate,
        "maxP99LatencySeconds": policy.max_p99_latency_s,
        "minRequests": policy.min_requests,
        "failureLimit": policy.failure_limit,
        "inconclusiveLimit": policy.inconclusive_limit,
    }
    if policy.min_agreement is not None:
        doc["minAgreement"] = policy.min_agreement
    return doc


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
