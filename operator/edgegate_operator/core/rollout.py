"""`decide`: a ModelDeployment's next status and the actions that make it true.

A pure function of the spec, the status, what the adapters observed, the
time and an SRE command, so that the operator holds no rollout state in
memory: killed at any point and started again, it reads status and decides
the same. Deciding twice on the same inputs gives the same status and no
new Events (a command is acted on once per id, an analysis result once per
window).

Order inside one decision: adopt a new resource (its version is stable at
100%), follow the spec's version (start, restart or end a rollout), apply
the command, note a pause ending, walk the steps, then derive weight,
phase, message, conditions and breakers. The route is always
{stable: 100 - w, canary: w}; w is 0 whenever the canary is not fully
ready, and 0 once aborted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from edgegate_operator.core.actions import (
    COMMAND_ANNOTATION,
    Action,
    Command,
    EnsureDeployment,
    Event,
    Observed,
    RemoveDeployment,
    SetBreakerModes,
    SetWeights,
)
from edgegate_operator.core.commands import apply_command
from edgegate_operator.core.settle import settle
from edgegate_operator.core.spec import Analyze, ModelDeploymentSpec, Pause, SpecError
from edgegate_operator.core.status import Condition, Phase, RolloutStatus
from edgegate_operator.core.steps import (
    Run,
    advance,
    cleared,
    progress,
    started,
    window_start_ms,
)
from edgegate_operator.core.units import to_ms


@dataclass(frozen=True, slots=True)
class Decision:
    status: RolloutStatus
    actions: tuple[Action, ...]

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(a for a in self.actions if isinstance(a, Event))

    @property
    def route(self) -> SetWeights | None:
        return next((a for a in self.actions if isinstance(a, SetWeights)), None)


def decide(
    *,
    spec: ModelDeploymentSpec,
    status: RolloutStatus,
    observed: Observed,
    now_s: float,
    generation: int = 0,
    command: Command | None = None,
) -> Decision:
    """The next status and the actions, from a valid spec (see `reconcile` for raw input)."""
    run = Run(spec=spec, observed=observed, now_ms=to_ms(now_s))
    st = _adopt(status, run)
    st = _follow_version(st, run)
    if command is not None and command.id != st.last_command_id:
        st = apply_command(st, command, run)
    st = _after_hold(st, run, before=status)
    st = progress(st, run)
    st = settle(st, run, before=status, generation=generation)
    return Decision(status=st, actions=_actions(st, run))


def analysis_window(spec: ModelDeploymentSpec, status: RolloutStatus) -> tuple[float, float] | None:
    """(start_s, end_s) of the window the current analysis step waits for, else None.

    The adapter analyses the canary over it once `end_s` has passed and hands the
    result to `decide` as `Observed.analysis`.
    """
    steps = spec.canary.steps
    if not status.rolling or status.step >= len(steps):
        return None
    step = steps[status.step]
    if not isinstance(step, Analyze):
        return None
    start_ms = window_start_ms(status)
    return start_ms / 1000, (start_ms + step.interval_ms) / 1000


def reconcile(
    *,
    spec: Mapping[str, object],
    status: Mapping[str, object] | None,
    observed: Observed,
    now_s: float,
    generation: int = 0,
    annotations: Mapping[str, str] | None = None,
) -> Decision:
    """`decide` for a resource as the API server holds it: never raises on bad input.

    A spec the schema could not refuse gives a Degraded decision that leaves
    traffic where it was. A status that cannot be read (the schema should have
    refused it) is treated as lost: the resource starts again from its spec,
    with a Warning.
    """
    warnings: list[Event] = []
    try:
        current = RolloutStatus.from_dict(status)
    except ValueError as exc:
        current = RolloutStatus()
        warnings.append(Event(type="Warning", reason="StatusUnreadable", message=str(exc)))
    text = (annotations or {}).get(COMMAND_ANNOTATION)
    command = None if text is None else Command.from_annotation(text)
    try:
        parsed = ModelDeploymentSpec.from_dict(spec)
    except SpecError as exc:
        decision = degrade(
            status=current, error=exc, observed=observed, now_s=now_s,
            generation=generation, command=command, replicas=_replicas(spec),
        )  # fmt: skip
    else:
        decision = decide(
            spec=parsed, status=current, observed=observed, now_s=now_s,
            generation=generation, command=command,
        )  # fmt: skip
    return replace(decision, actions=(*decision.actions, *warnings))


def degrade(
    *,
    status: RolloutStatus,
    error: SpecError,
    observed: Observed,
    now_s: float,
    generation: int = 0,
    command: Command | None = None,
    replicas: int = 1,
) -> Decision:
    """Degraded: nothing moves, except that an unready canary loses its traffic.

    An abort command is still obeyed (an abort always brings stable back to
    100%); the other commands wait for a valid spec and say so.
    """
    now_ms = to_ms(now_s)
    st = status
    events: list[Event] = []
    if command is not None and command.id != st.last_command_id:
        st = _command_while_degraded(st, command, events)
    ready = replicas > 0 and observed.canary_ready_replicas >= replicas
    weight = st.weight if st.rolling and ready else 0
    message = f"invalid spec: {error}; traffic stays where it was"
    if st.phase is not Phase.DEGRADED or st.message != message:
        events.append(Event(type="Warning", reason="InvalidSpec", message=str(error)))
    old = st.condition("Degraded")
    since = old.last_transition_ms if old is not None and old.status == "True" else now_ms
    degraded = Condition(
        type="Degraded", status="True", reason="InvalidSpec", message=str(error),
        last_transition_ms=since, observed_generation=generation,
    )  # fmt: skip
    st = replace(
        st,
        phase=Phase.DEGRADED,
        message=message,
        weight=weight,
        canary_ready_replicas=observed.canary_ready_replicas if st.canary_version else 0,
        stable_ready_replicas=observed.stable_ready_replicas,
        observed_generation=generation,
        conditions=(*(c for c in st.conditions if c.type != "Degraded"), degraded),
    )
    actions: list[Action] = []
    if st.stable_version:
        canary = st.canary_version or None
        actions.append(SetWeights(st.stable_version, 100 - weight, canary, weight))
    return Decision(status=st, actions=(*actions, *events))


def _command_while_degraded(
    st: RolloutStatus, command: Command, events: list[Event]
) -> RolloutStatus:
    st = replace(st, last_command_id=command.id)
    if command.action == "abort" and st.rolling:
        reason = f"aborted by an SRE (command {command.id})"
        events.append(Event(type="Warning", reason="RolloutAborted", message=reason))
        return replace(st, abort_reason=reason)
    why = f"{command.action} (command {command.id}) ignored: the spec is invalid"
    events.append(Event(type="Warning", reason="CommandIgnored", message=why))
    return st


def _adopt(status: RolloutStatus, run: Run) -> RolloutStatus:
    if status.stable_version:
        return status
    model = run.spec.model
    run.note("Normal", "Created", f"version {model.version} serves all traffic")
    return replace(
        cleared(status),
        stable_version=model.version,
        stable_uri=model.uri,
        stable_sha256=model.sha256 or "",
        phase=Phase.PENDING,
    )


def _follow_version(st: RolloutStatus, run: Run) -> RolloutStatus:
    wanted = run.spec.model.version
    if wanted == st.stable_version:
        if not st.canary_version:
            return st
        run.removed.append(st.canary_version)
        run.note(
            "Normal",
            "RolloutEnded",
            f"model set back to stable version {wanted}: canary {st.canary_version} removed",
        )
        return cleared(st)
    if wanted == st.canary_version:
        return st
    if st.canary_version:
        run.removed.append(st.canary_version)
        run.note(
            "Normal",
            "RolloutRestarted",
            f"version {wanted} replaces canary {st.canary_version}: starting again at step 0",
        )
    else:
        run.note("Normal", "RolloutStarted", f"canary {wanted} against stable {st.stable_version}")
    return started(st, run, canary=wanted)


def _after_hold(st: RolloutStatus, run: Run, *, before: RolloutStatus) -> RolloutStatus:
    """Leaving an SRE pause or a Degraded spell restarts the current step's clock.

    Time held is not lack of progress, and a resumed analysis judges fresh
    traffic. Resuming also ends a pause step without a duration (that is the
    resume it waits for) and re-arms inconclusive analysis.
    """
    if not st.rolling:
        return st
    held = before.condition("Paused")
    resumed = held is not None and held.status == "True" and held.reason == "SREPause"
    resumed = resumed and not run.spec.paused and before.rolling
    if before.phase is Phase.DEGRADED or resumed:
        st = replace(st, step_started_at_ms=run.now_ms)
    if not resumed:
        return st
    run.note("Normal", "Resumed", f"resumed by an SRE at step {st.step}")
    st = replace(st, inconclusive_checks=0)
    steps = run.steps
    if st.step < len(steps) and steps[st.step] == Pause(None):
        return advance(st, run)
    return st


def _actions(st: RolloutStatus, run: Run) -> tuple[Action, ...]:
    spec = run.spec
    actions: list[Action] = []
    canary = st.canary_version or None
    shadow = spec.canary.shadow_percent if st.rolling and _canary_ready(st, spec) else 0
    actions.append(SetWeights(st.stable_version, 100 - st.weight, canary, st.weight, shadow))
    model = spec.model
    same = model.version == st.stable_version
    actions.append(
        EnsureDeployment(
            version=st.stable_version,
            track="stable",
            replicas=spec.replicas,
            uri=st.stable_uri or (model.uri if same else None),
            sha256=st.stable_sha256 or (model.sha256 if same else None),
        )
    )
    if canary is not None:
        replicas = 0 if st.aborted else spec.replicas
        actions.append(EnsureDeployment(canary, "canary", replicas, model.uri, model.sha256))
    live = {st.stable_version, st.canary_version}
    removed = dict.fromkeys(v for v in run.removed if v not in live)
    actions.extend(RemoveDeployment(v) for v in removed)
    actions.append(SetBreakerModes(tuple((o.version, o.mode) for o in spec.breakers)))
    return (*actions, *run.events)


def _canary_ready(st: RolloutStatus, spec: ModelDeploymentSpec) -> bool:
    return spec.replicas > 0 and st.canary_ready_replicas >= spec.replicas


def _replicas(spec: Mapping[str, object]) -> int:
    raw = spec.get("replicas", 1)
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else 1
