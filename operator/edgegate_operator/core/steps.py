"""The canary's steps: weight, pause, analysis; then promotion, or abort.

`progress` walks the steps as far as the inputs allow in one call (a
setWeight with a ready canary finishes at once, so does a pause whose time
is up) and stops where it must wait: for replicas, for time, for the
analysis of a window, for a person. Deciding again on the same inputs
therefore changes nothing, which is what makes the handlers idempotent.

Clocks, all in status: `stepStartedAt` starts each step (a pause's
duration and the progress deadline count from it); an analysis window
starts at the later of `stepStartedAt` and `lastAnalysis.at`, so each
check judges fresh traffic and a result for an older window is ignored.
The progress deadline bounds every step that waits on the system (ready
replicas, analysis windows, promotion), never a pause: time a person or
a pause step holds the rollout is not lack of progress.

Counters: `failedChecks` count over the whole rollout (a canary that fails
once at each of several steps is not healthy); `inconclusiveChecks` count
inconclusive checks in a row: a pass or a fail says traffic sufficed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgegate_operator.core.actions import Event, Observed
from edgegate_operator.core.spec import (
    Analyze,
    ModelDeploymentSpec,
    Pause,
    SetWeight,
    Step,
    describe_step,
)
from edgegate_operator.core.status import LastAnalysis, RolloutStatus, Verdict, clip
from edgegate_operator.core.units import to_ms


@dataclass(slots=True)
class Run:
    """One decision's inputs, and the one-shot things it has to say."""

    spec: ModelDeploymentSpec
    observed: Observed
    now_ms: int
    events: list[Event] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.spec.canary.steps

    @property
    def canary_ready(self) -> bool:
        wanted = self.spec.replicas
        return wanted > 0 and self.observed.canary_ready_replicas >= wanted

    def note(self, kind: str, reason: str, message: str) -> None:
        self.events.append(Event(type="Warning" if kind == "Warning" else "Normal",
                                 reason=reason, message=message))  # fmt: skip

    def readiness(self) -> str:
        return f"{self.observed.canary_ready_replicas}/{self.spec.replicas} canary replicas ready"


def target_weight(steps: tuple[Step, ...], step: int) -> int:
    """The weight the finished steps before `step` set (weights only go up)."""
    return max((s.weight for s in steps[:step] if isinstance(s, SetWeight)), default=0)


def window_start_ms(status: RolloutStatus) -> int:
    started = status.step_started_at_ms or 0
    if status.last_analysis is None:
        return started
    return max(started, status.last_analysis.at_ms)


def inconclusive_held(status: RolloutStatus, spec: ModelDeploymentSpec) -> bool:
    return status.inconclusive_checks >= spec.canary.analysis.inconclusive_limit


def progress(status: RolloutStatus, run: Run) -> RolloutStatus:
    """Run the current step, and those after it, until one has to wait."""
    st = status
    for _ in range(len(run.steps) + 1):
        if not st.rolling or run.spec.paused or inconclusive_held(st, run.spec):
            return st
        if run.spec.replicas == 0:
            return promote(st, run, why="replicas is 0, so there is no traffic to shift")
        if st.step >= len(run.steps):
            if run.canary_ready:
                return promote(st, run)
            return _deadline(st, run, waiting=f"promotion waits: {run.readiness()}")
        st, advanced = _run_step(st, run.steps[st.step], run)
        if not advanced:
            return st
    return st


def advance(st: RolloutStatus, run: Run) -> RolloutStatus:
    return replace(st, step=st.step + 1, step_started_at_ms=run.now_ms, inconclusive_checks=0)


def abort(st: RolloutStatus, run: Run, *, reason: str) -> RolloutStatus:
    run.note(
        "Warning",
        "RolloutAborted",
        f"canary {st.canary_version} aborted: {reason}; stable {st.stable_version} back at 100%",
    )
    return replace(st, abort_reason=clip(reason), weight=0)


def promote(st: RolloutStatus, run: Run, *, why: str = "") -> RolloutStatus:
    old, new = st.stable_version, st.canary_version
    run.removed.append(old)
    because = f" ({why})" if why else ""
    run.note("Normal", "Promoted", f"version {new} is stable at 100%, {old} removed{because}")
    model = run.spec.model  # the canary always runs the spec's model
    return replace(
        cleared(st), stable_version=new, stable_uri=model.uri, stable_sha256=model.sha256 or ""
    )


def cleared(st: RolloutStatus) -> RolloutStatus:
    """No rollout: the canary's fields back to their empty values."""
    return replace(
        st,
        canary_version="",
        weight=0,
        step=0,
        step_started_at_ms=None,
        rollout_started_at_ms=None,
        failed_checks=0,
        inconclusive_checks=0,
        abort_reason="",
    )


def started(st: RolloutStatus, run: Run, *, canary: str) -> RolloutStatus:
    """A rollout of `canary` at step 0, clocks starting now."""
    return replace(
        cleared(st),
        canary_version=canary,
        step_started_at_ms=run.now_ms,
        rollout_started_at_ms=run.now_ms,
        last_analysis=None,
    )


def _run_step(st: RolloutStatus, step: Step, run: Run) -> tuple[RolloutStatus, bool]:
    if isinstance(step, SetWeight):
        if run.canary_ready:
            return advance(st, run), True
        return _deadline(st, run, waiting=run.readiness()), False
    if isinstance(step, Pause):
        started_ms = st.step_started_at_ms or run.now_ms
        if step.duration_ms is not None and run.now_ms >= started_ms + step.duration_ms:
            return advance(st, run), True
        return st, False
    return _analyse(st, step, run)


def _analyse(st: RolloutStatus, step: Analyze, run: Run) -> tuple[RolloutStatus, bool]:
    start_ms = window_start_ms(st)
    end_ms = start_ms + step.interval_ms
    result = run.observed.analysis
    if (
        run.now_ms < end_ms
        or result is None
        or to_ms(result.window_start_s) < start_ms
        or to_ms(result.window_end_s) < end_ms
    ):
        return _deadline(st, run, waiting="the analysis window has not ended"), False
    policy = run.spec.canary.analysis
    st = replace(
        st,
        last_analysis=LastAnalysis(
            at_ms=run.now_ms,
            requests=result.requests,
            verdict=result.verdict,
            message=clip(result.message),
            error_rate=result.error_rate,
            p99_s=result.p99_s,
            agreement=result.agreement,
        ),
    )
    if result.verdict is Verdict.PASS:
        run.note("Normal", "AnalysisPassed", f"canary {st.canary_version}: {result.message}")
        return advance(st, run), True
    if result.verdict is Verdict.FAIL:
        failed = st.failed_checks + 1
        st = replace(st, failed_checks=failed, inconclusive_checks=0)
        if failed >= policy.failure_limit:
            why = f"analysis failed {failed} times (failureLimit {policy.failure_limit})"
            return abort(st, run, reason=f"{why}: {result.message}"), False
        count = f"{failed} of failureLimit {policy.failure_limit}"
        run.note("Warning", "AnalysisFailed", f"{result.message} ({count})")
        return _deadline(st, run, waiting="analysing again"), False
    inconclusive = st.inconclusive_checks + 1
    st = replace(st, inconclusive_checks=inconclusive)
    if inconclusive >= policy.inconclusive_limit:
        return st, False  # held: the Paused condition says why, with an Event
    count = f"{inconclusive} of inconclusiveLimit {policy.inconclusive_limit}"
    run.note("Normal", "AnalysisInconclusive", f"{result.message} ({count})")
    return _deadline(st, run, waiting="analysing again"), False


def _deadline(st: RolloutStatus, run: Run, *, waiting: str) -> RolloutStatus:
    """Abort when the current step has waited past progressDeadlineSeconds."""
    deadline_s = run.spec.canary.progress_deadline_s
    started_ms = st.step_started_at_ms if st.step_started_at_ms is not None else run.now_ms
    if run.now_ms - started_ms <= deadline_s * 1000:
        return st
    what = (
        f"step {st.step} ({describe_step(run.steps[st.step])})"
        if st.step < len(run.steps)
        else "promotion"
    )
    return abort(
        st, run, reason=f"progress deadline: {what} not done in {deadline_s} s ({waiting})"
    )
