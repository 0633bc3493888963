"""The parts of status derived from the rollout's position and what was seen.

Weight, phase, message, conditions and breakers are all computed afresh on
every decision from the step, the counters and the observed replicas, so
they cannot drift from them. The canary's weight is the one rule the route
obeys: the weight its finished setWeight steps reached while all its
replicas are ready, 0 otherwise, and 0 whenever the rollout is aborted or
over. A condition keeps its lastTransitionTime until its status changes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from edgegate_operator.core.spec import Pause, describe_step
from edgegate_operator.core.status import (
    BreakerStatus,
    Condition,
    ConditionType,
    Phase,
    RolloutStatus,
    clip,
)
from edgegate_operator.core.steps import Run, inconclusive_held, target_weight
from edgegate_operator.core.units import format_time, to_ms

_Wanted = tuple[ConditionType, Literal["True", "False"], str, str]


def settle(st: RolloutStatus, run: Run, *, before: RolloutStatus, generation: int) -> RolloutStatus:
    """Fill in weight, phase, message, conditions and breakers; note weight/pause Events."""
    weight = target_weight(run.steps, st.step) if st.rolling and run.canary_ready else 0
    if st.rolling and before.canary_version == st.canary_version and weight != before.weight:
        why = "" if run.canary_ready else f" ({run.readiness()})"
        run.note("Normal", "WeightChanged", f"canary {st.canary_version}: {weight}%{why}")
    observed = run.observed
    st = replace(
        st,
        weight=weight,
        canary_ready_replicas=observed.canary_ready_replicas if st.canary_version else 0,
        stable_ready_replicas=observed.stable_ready_replicas,
        observed_generation=generation,
    )
    paused = paused_reason(st, run)
    st = replace(st, phase=_phase(st, run, paused=paused is not None))
    st = replace(st, message=_message(st, run, paused))
    st = replace(st, conditions=merge_conditions(st, _wanted(st, run, paused), run=run))
    return with_breakers(st, run)


def paused_reason(st: RolloutStatus, run: Run) -> tuple[str, str] | None:
    """(reason, message) when the rollout is held, by a person or a pause step."""
    if not st.rolling:
        return None
    if run.spec.paused:
        return "SREPause", "paused by an SRE (spec.paused): resume to go on"
    if inconclusive_held(st, run.spec):
        limit = run.spec.canary.analysis.inconclusive_limit
        last = st.last_analysis.message if st.last_analysis else ""
        return "InconclusiveLimit", (
            f"analysis inconclusive {st.inconclusive_checks} times (inconclusiveLimit {limit}): "
            f"{last}; promote skips the step, pause and resume analyses again, abort ends it"
        )
    if st.step < len(run.steps) and isinstance(step := run.steps[st.step], Pause):
        if step.duration_ms is None:
            return "PauseStep", f"step {st.step} pauses until resumed or promoted"
        until = format_time((st.step_started_at_ms or run.now_ms) + step.duration_ms)
        return "PauseStep", f"step {st.step} ({describe_step(step)}) pauses until {until}"
    return None


def _phase(st: RolloutStatus, run: Run, *, paused: bool) -> Phase:
    if not st.canary_version:
        stable_ready = run.observed.stable_ready_replicas >= run.spec.replicas
        return Phase.PENDING if st.phase is Phase.PENDING and not stable_ready else Phase.HEALTHY
    if st.aborted:
        return Phase.ABORTED
    if paused:
        return Phase.PAUSED
    return Phase.PROMOTING if st.step >= len(run.steps) else Phase.PROGRESSING


def _message(st: RolloutStatus, run: Run, paused: tuple[str, str] | None) -> str:
    stable = f"{run.observed.stable_ready_replicas}/{run.spec.replicas} stable replicas ready"
    if st.phase is Phase.PENDING:
        return f"waiting for version {st.stable_version}: {stable}"
    if st.phase is Phase.HEALTHY:
        return f"version {st.stable_version} serves 100% ({stable})"
    if st.phase is Phase.ABORTED:
        return f"aborted: {st.abort_reason}; retry starts again, or set the model version"
    where = f"canary {st.canary_version} at {st.weight}%"
    if not run.canary_ready:
        where += f", waiting for replicas ({run.readiness()})"
    if paused is not None:
        return f"{paused[1]}; {where}"
    if st.phase is Phase.PROMOTING:
        return f"all steps done, promoting once the canary is ready; {where}"
    step = describe_step(run.steps[st.step])
    return f"step {st.step} ({step}); {where}"  # the index, as in status.step


def _wanted(st: RolloutStatus, run: Run, paused: tuple[str, str] | None) -> list[_Wanted]:
    available = run.observed.stable_ready_replicas >= run.spec.replicas
    ready = f"{run.observed.stable_ready_replicas}/{run.spec.replicas} stable replicas ready"
    if st.rolling:
        progressing: _Wanted = ("Progressing", "True", "RolloutInProgress", st.message)
    elif st.aborted:
        progressing = ("Progressing", "False", "RolloutAborted", st.abort_reason)
    else:
        progressing = ("Progressing", "False", "NoRollout", f"{st.stable_version} is stable")
    return [
        ("Available", "True" if available else "False",
         "StableReady" if available else "StableNotReady", ready),
        progressing,
        _degraded(run),
        ("Paused", "True", *paused) if paused else ("Paused", "False", "NotPaused", ""),
    ]  # fmt: skip


def _degraded(run: Run) -> _Wanted:
    """Degraded when the adapters saw something the spec cannot work with (traffic stays)."""
    problems = run.observed.problems
    if problems:
        return ("Degraded", "True", "ChildProblem", clip("; ".join(problems)))
    return ("Degraded", "False", "SpecValid", "")


def merge_conditions(
    st: RolloutStatus, wanted: list[_Wanted], *, run: Run
) -> tuple[Condition, ...]:
    """The wanted conditions, keeping lastTransitionTime where the status did not change."""
    merged = []
    for kind, status, reason, message in wanted:
        old = st.condition(kind)
        since = old.last_transition_ms if old is not None and old.status == status else run.now_ms
        merged.append(
            Condition(
                type=kind,
                status=status,
                reason=reason,
                message=message,
                last_transition_ms=since,
                observed_generation=st.observed_generation,
            )
        )
        _note_transition(old, merged[-1], run)
    return tuple(merged)


def _note_transition(old: Condition | None, new: Condition, run: Run) -> None:
    changed = old is None or (old.status, old.reason) != (new.status, new.reason)
    if not changed:
        return
    if new.type == "Paused" and new.status == "True":
        kind = "Warning" if new.reason == "InconclusiveLimit" else "Normal"
        run.note(kind, "Paused", new.message)
    if new.type == "Degraded" and old is not None and old.status == "True":
        run.note("Normal", "SpecAccepted", "the spec is valid again")


def with_breakers(st: RolloutStatus, run: Run) -> RolloutStatus:
    """Each live version's breaker: an SRE's forced mode, else what the gateways report."""
    versions = [v for v in (st.stable_version, st.canary_version) if v]
    breakers = []
    for version in versions:
        mode = run.spec.breaker_mode(version)
        old = next((b for b in st.breakers if b.version == version), None)
        seen = run.observed.breakers.get(version)
        state: Literal["closed", "open", "half_open"]
        if mode != "auto":
            state, reason, since = mode, f"forced {mode} (spec.breakers)", None
        elif seen is not None:
            state, reason, since = seen.state, seen.reason, to_ms(seen.since_s)
        elif old is not None and old.mode == "auto":
            state, reason, since = old.state, old.reason, old.since_ms
        else:
            state, reason, since = "closed", "", None
        if since is None:
            kept = old is not None and old.state == state and old.since_ms is not None
            since = old.since_ms if kept and old is not None else run.now_ms
        breakers.append(
            BreakerStatus(
                version=version, state=state, mode=mode, since_ms=since, reason=clip(reason)
            )
        )
    summary = " ".join(f"{b.version}:{b.state}" for b in breakers)
    return replace(st, breakers=tuple(breakers), breaker_summary=summary)
