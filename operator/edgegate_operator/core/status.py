"""A ModelDeployment's `status`: the whole memory of a rollout.

The operator keeps no rollout state anywhere else. An operator killed
mid-rollout and started again reads this back with `from_dict` and decides
exactly as the one before it would have: same step, same counters, same
clocks (times are whole milliseconds, so they survive the text form intact).

Field names and shapes follow the ModelDeployment contract (camelCase);
`to_dict(nulls=True)` writes unset optional fields as null, which a JSON
merge patch of the /status subresource needs to remove them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar, cast

from edgegate_operator.core.units import format_time, parse_time

MAX_TEXT = 1024  # the CRD's maxLength for abortReason, lastAnalysis.message, breaker reasons
ConditionType: TypeAlias = Literal["Available", "Progressing", "Degraded", "Paused"]
_T = TypeVar("_T")


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    HEALTHY = "Healthy"
    ABORTED = "Aborted"
    DEGRADED = "Degraded"


class Verdict(enum.StrEnum):
    PASS = "Pass"  # noqa: S105  (a verdict, not a password)
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


def clip(text: str, *, limit: int = MAX_TEXT) -> str:
    """`text` within the CRD's length limit (the API server would refuse the whole status)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class LastAnalysis:
    at_ms: int
    requests: int
    verdict: Verdict
    message: str
    error_rate: float | None = None
    p99_s: float | None = None
    agreement: float | None = None


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    version: str
    state: Literal["closed", "open", "half_open"]
    mode: Literal["auto", "open", "closed"]
    since_ms: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Condition:
    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_ms: int
    observed_generation: int = 0


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    phase: Phase = Phase.PENDING
    stable_version: str = ""
    # Where the stable version's model is: the spec names only the newest version's, and a
    # stable Deployment deleted mid-rollout must come back running the same file.
    stable_uri: str = ""
    stable_sha256: str = ""
    canary_version: str = ""  # empty: no rollout
    weight: int = 0  # the canary's share of traffic, percent
    step: int = 0
    step_started_at_ms: int | None = None
    rollout_started_at_ms: int | None = None
    last_analysis: LastAnalysis | None = None
    failed_checks: int = 0
    inconclusive_checks: int = 0
    breakers: tuple[BreakerStatus, ...] = ()
    breaker_summary: str = ""
    canary_ready_replicas: int = 0
    stable_ready_replicas: int = 0
    last_command_id: str = ""
    abort_reason: str = ""  # set: the rollout is aborted
    conditions: tuple[Condition, ...] = ()
    observed_generation: int = 0
    message: str = ""

    @property
    def rolling(self) -> bool:
        """A canary is being rolled out (not aborted, not finished)."""
        return bool(self.canary_version) and not self.abort_reason

    @property
    def aborted(self) -> bool:
        return bool(self.canary_version) and bool(self.abort_reason)

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> RolloutStatus:
        """Read a status back; ValueError names the field that cannot be read."""
        doc = doc or {}
        analysis = doc.get("lastAnalysis")
        return cls(
            phase=_enum(Phase, doc.get("phase", "Pending"), "phase"),
            stable_version=_get(doc, "stableVersion", str, ""),
            stable_uri=_get(doc, "stableUri", str, ""),
            stable_sha256=_get(doc, "stableSha256", str, ""),
            canary_version=_get(doc, "canaryVersion", str, ""),
            weight=_get(doc, "weight", int, 0),
            step=_get(doc, "step", int, 0),
            step_started_at_ms=_time(doc, "stepStartedAt"),
            rollout_started_at_ms=_time(doc, "rolloutStartedAt"),
            last_analysis=None if analysis is None else _analysis_from(analysis),
            failed_checks=_get(doc, "failedChecks", int, 0),
            inconclusive_checks=_get(doc, "inconclusiveChecks", int, 0),
            breakers=tuple(_breaker_from(b) for b in _get(doc, "breakers", list, [])),
            breaker_summary=_get(doc, "breakerSummary", str, ""),
            canary_ready_replicas=_get(doc, "canaryReadyReplicas", int, 0),
            stable_ready_replicas=_get(doc, "stableReadyReplicas", int, 0),
            last_command_id=_get(doc, "lastCommandId", str, ""),
            abort_reason=_get(doc, "abortReason", str, ""),
            conditions=tuple(_condition_from(c) for c in _get(doc, "conditions", list, [])),
            observed_generation=_get(doc, "observedGeneration", int, 0),
            message=_get(doc, "message", str, ""),
        )

    def to_dict(self, *, nulls: bool = False) -> dict[str, Any]:
        """The status document; `nulls=True` keeps unset optional keys as None."""
        doc: dict[str, Any] = {
            "phase": self.phase.value,
            "stableVersion": self.stable_version,
            "stableUri": self.stable_uri or None,
            "stableSha256": self.stable_sha256 or None,
            "canaryVersion": self.canary_version,
            "weight": self.weight,
            "step": self.step,
            "stepStartedAt": _fmt(self.step_started_at_ms),
            "rolloutStartedAt": _fmt(self.rollout_started_at_ms),
            "lastAnalysis": None
            if self.last_analysis is None
            else _analysis_to(self.last_analysis),
            "failedChecks": self.failed_checks,
            "inconclusiveChecks": self.inconclusive_checks,
            "breakers": [_breaker_to(b) for b in self.breakers],
            "breakerSummary": self.breaker_summary,
            "canaryReadyReplicas": self.canary_ready_replicas,
            "stableReadyReplicas": self.stable_ready_replicas,
            "lastCommandId": self.last_command_id,
            "abortReason": self.abort_reason,
            "conditions": [_condition_to(c) for c in self.conditions],
            "observedGeneration": self.observed_generation,
            "message": self.message,
        }
        return doc if nulls else {k: v for k, v in doc.items() if v is not None}


def _analysis_to(a: LastAnalysis) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "at": format_time(a.at_ms),
        "requests": a.requests,
        "verdict": a.verdict.value,
        "message": a.message,
        "errorRate": a.error_rate,
        "p99Seconds": a.p99_s,
        "agreement": a.agreement,
    }
    return {k: v for k, v in doc.items() if v is not None}


def _analysis_from(raw: object) -> LastAnalysis:
    doc = _is(raw, dict, "lastAnalysis")
    return LastAnalysis(
        at_ms=parse_time(doc.get("at"), field="lastAnalysis.at"),
        requests=_get(doc, "requests", int, 0),
        verdict=_enum(Verdict, doc.get("verdict"), "lastAnalysis.verdict"),
        message=_get(doc, "message", str, ""),
        error_rate=_number(doc, "errorRate"),
        p99_s=_number(doc, "p99Seconds"),
        agreement=_number(doc, "agreement"),
    )


def _breaker_to(b: BreakerStatus) -> dict[str, Any]:
    doc = {"version": b.version, "state": b.state, "mode": b.mode, "reason": b.reason}
    return doc if b.since_ms is None else {**doc, "since": format_time(b.since_ms)}


def _breaker_from(raw: object) -> BreakerStatus:
    doc = _is(raw, dict, "breakers[]")
    state = doc.get("state", "closed")
    mode = doc.get("mode", "auto")
    if state not in ("closed", "open", "half_open") or mode not in ("auto", "open", "closed"):
        raise ValueError(f"breakers[]: state {state!r} / mode {mode!r} unknown")
    return BreakerStatus(
        version=_get(doc, "version", str, ""),
        state=state,
        mode=mode,
        since_ms=_time(doc, "since"),
        reason=_get(doc, "reason", str, ""),
    )


def _condition_to(c: Condition) -> dict[str, Any]:
    return {
        "type": c.type,
        "status": c.status,
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": format_time(c.last_transition_ms),
        "observedGeneration": c.observed_generation,
    }


def _condition_from(raw: object) -> Condition:
    doc = _is(raw, dict, "conditions[]")
    kind, status = doc.get("type"), doc.get("status")
    if kind not in ("Available", "Progressing", "Degraded", "Paused"):
        raise ValueError(f"conditions[]: type {kind!r} unknown")
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"conditions[]: status {status!r} is not True, False or Unknown")
    return Condition(
        type=kind,
        status=status,
        reason=_get(doc, "reason", str, ""),
        message=_get(doc, "message", str, ""),
        last_transition_ms=parse_time(
            doc.get("lastTransitionTime"), field="conditions[].lastTransitionTime"
        ),
        observed_generation=_get(doc, "observedGeneration", int, 0),
    )


def _fmt(at_ms: int | None) -> str | None:
    return None if at_ms is None else format_time(at_ms)


def _time(doc: Mapping[str, Any], key: str) -> int | None:
    raw = doc.get(key)
    return None if raw is None else parse_time(raw, field=key)


def _number(doc: Mapping[str, Any], key: str) -> float | None:
    raw = doc.get(key)
    if raw is None:
        return None
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        raise ValueError(f"lastAnalysis.{key} is {raw!r}, not a number")
    return float(raw)


_E = TypeVar("_E", Phase, Verdict)


def _enum(kind: type[_E], raw: object, where: str) -> _E:
    try:
        return kind(cast(str, raw))
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ValueError(f"{where} is {raw!r}; one of {allowed}") from None


def _get(doc: Mapping[str, Any], key: str, kind: type[_T], default: _T) -> _T:
    raw = doc.get(key)
    if raw is None:
        return default
    return _is(raw, kind, key)


def _is(raw: object, kind: type[_T], where: str) -> _T:
    if not isinstance(raw, kind) or (kind is int and isinstance(raw, bool)):
        raise ValueError(f"{where} is {raw!r}, not {kind.__name__}")
    return raw
