"""A ModelDeployment drawn for a person, the way `kubectl argo rollouts get rollout` draws one.

Pure code: an object as the API server returns it goes in, lines of text come
out. The status is read leniently, field by field, because this is what an
SRE looks at when something is wrong: a field of an unexpected shape shows as
missing instead of hiding everything else behind an error. The field names are
those of the operator's `RolloutStatus.to_dict` and the CRD (docs/operator.md,
"Status"); the CLI does not import the operator, the two stay independent.

Steps are marked done, current or pending; an aborted rollout marks the step
it stopped at. Terminals that cannot show the symbols get ASCII ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO, TypeGuard

Doc = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Glyphs:
    done: str
    current: str
    pending: str
    failed: str
    phases: Mapping[str, str]


UNICODE = Glyphs(
    done="✔",
    current="●",
    pending="◌",
    failed="✖",
    phases={
        "Healthy": "✔", "Progressing": "◌", "Promoting": "◌", "Paused": "‖",
        "Pending": "◷", "Aborted": "✖", "Degraded": "✖",
    },
)  # fmt: skip
ASCII = Glyphs(done="[x]", current="[>]", pending="[ ]", failed="[!]", phases={})


def glyphs_for(stream: TextIO) -> Glyphs:
    """UNICODE when the stream's encoding can write every symbol, else ASCII."""
    symbols = "".join([UNICODE.done, UNICODE.current, UNICODE.pending, UNICODE.failed])
    try:
        (symbols + "".join(UNICODE.phases.values())).encode(stream.encoding or "ascii")
    except (LookupError, UnicodeEncodeError):
        return ASCII
    return UNICODE


def render(obj: Doc, *, glyphs: Glyphs, now: datetime) -> list[str]:
    """The whole picture of one ModelDeployment, one line per item."""
    meta, spec, status = _dict(obj, "metadata"), _dict(obj, "spec"), _dict(obj, "status")
    steps = _steps(spec)
    return [
        _row("Name", _str(meta, "name")),
        _row("Namespace", _str(meta, "namespace")),
        *_phase(spec, status, glyphs),
        *_generation(meta, status),
        _row("Strategy", "Canary"),
        *_weights(status, steps),
        *_versions(spec, status),
        *_analysis(spec, status, glyphs, now),
        *_breakers(spec, status, now),
        *_conditions(status, now),
        *_step_list(spec, status, steps, glyphs),
    ]


def _phase(spec: Doc, status: Doc, glyphs: Glyphs) -> list[str]:
    phase = _str(status, "phase") or "Pending"
    icon = glyphs.phases.get(phase, "")
    lines = [_row("Status", f"{icon} {phase}".strip())]
    if message := _str(status, "message"):
        lines.append(_row("Message", message))
    if reason := _str(status, "abortReason"):
        lines.append(_row("Abort reason", reason))
    if spec.get("paused") is True:
        lines.append(_row("Paused", "yes: spec.paused is true (`edgegate rollout resume` ends it)"))
    return lines


def _generation(meta: Doc, status: Doc) -> list[str]:
    """A line only while the status describes an older spec than the one stored."""
    current, observed = _int(meta, "generation"), _int(status, "observedGeneration")
    if not current or observed >= current:
        return []
    text = f"{observed} of {current}: the operator has not acted on the latest spec yet"
    return [_row("Generation", text)]


def _weights(status: Doc, steps: Sequence[Doc]) -> list[str]:
    step, weight = _int(status, "step"), _int(status, "weight")
    total = len(steps)
    return [
        _row("Step", f"{min(step, total)}/{total}", indent=2),
        _row("SetWeight", _set_weight(status, steps), indent=2),
        _row("ActualWeight", str(weight), indent=2),
    ]


def _set_weight(status: Doc, steps: Sequence[Doc]) -> str:
    """The weight the steps reached so far ask for (a setWeight step counts once current)."""
    if not _str(status, "canaryVersion"):
        return "-"
    if _str(status, "abortReason"):
        return "0"
    step = _int(status, "step")
    if step >= len(steps):
        return "100"
    asked = [s["setWeight"] for s in steps[: step + 1] if _is_int(s.get("setWeight"))]
    return str(max(asked, default=0))


def _versions(spec: Doc, status: Doc) -> list[str]:
    weight = _int(status, "weight")
    stable, canary = _str(status, "stableVersion"), _str(status, "canaryVersion")
    wanted = _int(spec, "replicas", default=1)
    lines = ["Versions:"]
    if stable:
        ready = _int(status, "stableReadyReplicas")
        share = 100 - weight if canary else 100
        lines.append(
            _row("stable", f"{stable}  ({ready}/{wanted} ready, {share}% of traffic)", indent=2)
        )
    if canary:
        ready = _int(status, "canaryReadyReplicas")
        lines.append(
            _row("canary", f"{canary}  ({ready}/{wanted} ready, {weight}% of traffic)", indent=2)
        )
    desired = _str(_dict(spec, "model"), "version")
    if desired and desired not in (stable, canary):
        lines.append(_row("spec", f"{desired}  (not rolled out yet)", indent=2))
    if len(lines) == 1:
        lines.append("  (none yet)")
    return lines


def _analysis(spec: Doc, status: Doc, glyphs: Glyphs, now: datetime) -> list[str]:
    last = _dict(status, "lastAnalysis")
    policy = _dict(_dict(spec, "canary"), "analysis")
    if not last:
        return [_row("Analysis", "none yet")]
    verdict = _str(last, "verdict") or "?"
    icon = {"Pass": glyphs.done, "Fail": glyphs.failed}.get(verdict, "")
    when = _age(_str(last, "at"), now)
    lines = [_row("Analysis", " ".join(x for x in (icon, verdict, when and f"({when})") if x))]
    lines.append(_row("Requests", str(_int(last, "requests")), indent=2))
    figures = (
        ("Error rate", _num(last, "errorRate"), _num(policy, "maxErrorRate"), "max", _percent),
        ("p99 latency", _num(last, "p99Seconds"), _num(policy, "maxP99LatencySeconds"), "max",
         _seconds),
        ("Agreement", _num(last, "agreement"), _num(policy, "minAgreement"), "min", _ratio),
    )  # fmt: skip
    for label, value, limit, bound, show in figures:
        if value is None:
            continue
        limit_text = "" if limit is None else f"  ({bound} {show(limit)})"
        lines.append(_row(label, show(value) + limit_text, indent=2))
    lines.append(_row("Failed checks", _count(status, "failedChecks", policy, "failureLimit"), 2))
    lines.append(
        _row("Inconclusive", _count(status, "inconclusiveChecks", policy, "inconclusiveLimit"), 2)
    )
    if message := _str(last, "message"):
        lines.append(_row("Message", message, indent=2))
    return lines


def _count(status: Doc, key: str, policy: Doc, limit_key: str) -> str:
    count = _int(status, key)
    limit = policy.get(limit_key)
    return f"{count} of {limit} allowed" if _is_int(limit) else str(count)


def _breakers(spec: Doc, status: Doc, now: datetime) -> list[str]:
    """Each version's breaker as reported, and overrides the operator has not applied yet."""
    reported = [b for b in _list(status, "breakers") if isinstance(b, Mapping)]
    wanted = {
        str(o.get("version")): str(o.get("mode"))
        for o in _list(spec, "breakers")
        if isinstance(o, Mapping)
    }
    lines = ["Breakers:"]
    for b in reported:
        version, mode = _str(b, "version"), _str(b, "mode") or "auto"
        parts = [f"{_str(b, 'state') or '?':<9} mode {mode}"]
        if since := _age(_str(b, "since"), now):
            parts.append(f"since {since}")
        if reason := _str(b, "reason"):
            parts.append(reason)
        text = ", ".join(parts)
        if wanted.get(version, "auto") != mode:
            text += f"; mode {wanted.get(version, 'auto')} requested, not applied yet"
        lines.append(_row(version, text, indent=2))
    shown = {_str(b, "version") for b in reported}
    for version, mode in wanted.items():
        if version not in shown:
            lines.append(_row(version, f"mode {mode} requested, not applied yet", indent=2))
    if len(lines) == 1:
        lines.append("  (none reported)")
    return lines


def _conditions(status: Doc, now: datetime) -> list[str]:
    found = [c for c in _list(status, "conditions") if isinstance(c, Mapping)]
    if not found:
        return []
    lines = ["Conditions:"]
    for c in found:
        age = _age(_str(c, "lastTransitionTime"), now)
        head = f"  {_str(c, 'type'):<12} {_str(c, 'status'):<7} {_str(c, 'reason')}"
        tail = ", ".join(x for x in (_str(c, "message"), age) if x)
        lines.append(f"{head}  {tail}".rstrip() if tail else head)
    return lines


def _step_list(spec: Doc, status: Doc, steps: Sequence[Doc], glyphs: Glyphs) -> list[str]:
    interval = _str(_dict(_dict(spec, "canary"), "analysis"), "interval")
    rolling = bool(_str(status, "canaryVersion"))
    aborted = rolling and bool(_str(status, "abortReason"))
    step = _int(status, "step")
    lines = ["Steps:" if rolling else "Steps (no rollout running):"]
    width = len(str(len(steps) - 1))
    for index, item in enumerate(steps):
        if not rolling or index > step:
            mark = glyphs.pending
        elif index < step:
            mark = glyphs.done
        else:
            mark = glyphs.failed if aborted else glyphs.current
        lines.append(f"  {mark} {index:>{width}}  {describe_step(item, interval=interval)}")
    return lines


def describe_step(step: Doc, *, interval: str = "") -> str:
    """`setWeight 20`, `pause 5m`, `pause (until promoted)`, `analysis 1m`, as in the spec.

    An analysis step without an interval of its own runs for `interval`, the
    spec's canary.analysis.interval.
    """
    if "setWeight" in step:
        return f"setWeight {step['setWeight']}"
    if "pause" in step:
        duration = _str(_dict(step, "pause"), "duration")
        return f"pause {duration}" if duration else "pause (until promoted)"
    if "analysis" in step:
        own = _str(_dict(step, "analysis"), "interval") or interval
        return f"analysis {own}" if own else "analysis"
    return "(unreadable step)"


def _steps(spec: Doc) -> list[Doc]:
    """spec.canary.steps; none at all means one `setWeight: 100`, as the operator reads it."""
    steps: list[Doc] = [s for s in _list(_dict(spec, "canary"), "steps") if isinstance(s, Mapping)]
    return steps or [{"setWeight": 100}]


def _age(stamp: str, now: datetime) -> str:
    """`12s ago`, `5m ago`, `3h ago`, `2d ago`; empty for a missing or unreadable time."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def _seconds(value: float) -> str:
    return f"{value:.3f} s"


def _ratio(value: float) -> str:
    return f"{value:.3f}"


def _row(label: str, value: str, indent: int = 0) -> str:
    head = " " * indent + f"{label}:"
    return f"{head:<16} {value}".rstrip()


def _dict(doc: Doc, key: str) -> Doc:
    value = doc.get(key)
    return value if isinstance(value, Mapping) else {}


def _list(doc: Doc, key: str) -> list[Any]:
    value = doc.get(key)
    return value if isinstance(value, list) else []


def _str(doc: Doc, key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def _int(doc: Doc, key: str, *, default: int = 0) -> int:
    value = doc.get(key)
    return value if _is_int(value) else default


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(doc: Doc, key: str) -> float | None:
    value = doc.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
