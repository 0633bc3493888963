"""SRE commands: promote, promote --full, abort, retry.

Each arrives once as the `edgegate.io/command` annotation with an id; the
id is recorded in `status.lastCommandId`, so a command is acted on once
however often the resource is reconciled. A command that does not fit the
rollout's state (retry of a healthy resource, promote with no canary) is
refused with a Warning Event that says why, and changes nothing else.
"""

from __future__ import annotations

from dataclasses import replace

from edgegate_operator.core.actions import Command
from edgegate_operator.core.spec import describe_step
from edgegate_operator.core.status import RolloutStatus
from edgegate_operator.core.steps import Run, abort, advance, started


def apply_command(st: RolloutStatus, command: Command, run: Run) -> RolloutStatus:
    """Act on a command not seen before (the caller checks lastCommandId)."""
    st = replace(st, last_command_id=command.id)
    if not command.known:
        return _refuse(
            st, command, run, why="the action is not promote, promoteFull, abort or retry"
        )
    if command.action == "retry":
        if not st.aborted:
            return _refuse(st, command, run, why="retry restarts an aborted rollout; none is")
        run.note(
            "Normal",
            "Retried",
            f"canary {st.canary_version} starts again at step 0 (it was aborted: "
            f"{st.abort_reason})",
        )
        return started(st, run, canary=st.canary_version)
    if not st.rolling:
        why = "the rollout is aborted: retry it first" if st.aborted else "no rollout is running"
        return _refuse(st, command, run, why=why)
    by = f"by an SRE (command {command.id})"
    if command.action == "abort":
        return abort(st, run, reason=f"aborted {by}")
    steps = run.steps
    if st.step >= len(steps):
        return _refuse(st, command, run, why="all steps are done; promotion waits for readiness")
    if command.action == "promoteFull":
        run.note("Normal", "PromoteFull", f"steps {st.step}.. skipped {by}: promoting")
        return replace(st, step=len(steps), step_started_at_ms=run.now_ms, inconclusive_checks=0)
    run.note(
        "Normal", "StepSkipped", f"step {st.step} ({describe_step(steps[st.step])}) skipped {by}"
    )
    return advance(st, run)


def _refuse(st: RolloutStatus, command: Command, run: Run, *, why: str) -> RolloutStatus:
    run.note("Warning", "CommandIgnored", f"{command.action} (command {command.id}) ignored: {why}")
    return st
