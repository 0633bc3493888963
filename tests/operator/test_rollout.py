"""The rollout state machine: each transition by example, then invariants under any sequence.

Every decision here is made the way the operator makes it: from the resource's spec and a
status that went through JSON (as the API server stores it), with nothing kept in memory.
So each reconcile is also an operator restart, and a test that passes here passes for an
operator killed at any point.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from support.crd_schema import checker

from edgegate_operator.core import (
    COMMAND_ANNOTATION,
    AgreementSnapshot,
    AnalysisResult,
    BreakerObservation,
    Decision,
    EnsureDeployment,
    MetricsSnapshot,
    ModelDeploymentSpec,
    Observed,
    Phase,
    RemoveDeployment,
    RolloutStatus,
    SetBreakerModes,
    Verdict,
    analyse,
    analysis_window,
    decide,
    reconcile,
)

Json = dict[str, Any]
URI = "s3://models/m/{}/model.onnx"
STEPS: list[Json] = [
    {"setWeight": 20},  # 0
    {"pause": {"duration": "60s"}},  # 1
    {"analysis": {}},  # 2
    {"setWeight": 50},  # 3
    {"pause": {}},  # 4: until resumed or promoted
    {"setWeight": 100},  # 5
    {"analysis": {"interval": "10s"}},  # 6
]


def make_spec(*, version: str = "1", steps: list[Json] | None = None, **canary: Any) -> Json:
    analysis = {"failureLimit": 2, "inconclusiveLimit": 2, **canary.pop("analysis", {})}
    return {
        "model": {"name": "m", "version": version, "uri": URI.format(version)},
        "replicas": 2,
        "canary": {"steps": STEPS if steps is None else steps, "analysis": analysis, **canary},
    }


class Cluster:
    """One ModelDeployment as the API server holds it, reconciled by a memoryless operator."""

    def __init__(self, spec: Json, *, now_s: float = 1_000.0) -> None:
        self.spec = spec
        self.status: Json | None = None
        self.now_s = now_s
        self.canary_ready = 0
        self.stable_ready = spec.get("replicas", 1)
        self.annotations: dict[str, str] = {}
        self.breakers: dict[str, BreakerObservation] = {}
        self.last: Decision | None = None

    def observed(self, analysis: AnalysisResult | None = None) -> Observed:
        return Observed(
            canary_ready_replicas=self.canary_ready,
            stable_ready_replicas=self.stable_ready,
            analysis=analysis,
            breakers=dict(self.breakers),
        )

    def reconcile(self, analysis: AnalysisResult | None = None) -> Decision:
        decision = reconcile(
            spec=self.spec,
            status=self.status,
            observed=self.observed(analysis),
            now_s=self.now_s,
            generation=1,
            annotations=self.annotations,
        )
        self.status = json.loads(json.dumps(decision.status.to_dict()))
        self.last = decision
        return decision

    @property
    def st(self) -> RolloutStatus:
        return RolloutStatus.from_dict(self.status)

    def set_version(self, version: str) -> Decision:
        self.spec["model"] = {"name": "m", "version": version, "uri": URI.format(version)}
        return self.reconcile()

    def command(self, action: str, ident: str) -> Decision:
        self.annotations[COMMAND_ANNOTATION] = json.dumps({"action": action, "id": ident})
        return self.reconcile()

    def window(self) -> tuple[float, float]:
        window = analysis_window(ModelDeploymentSpec.from_dict(self.spec), self.st)
        assert window is not None, f"not at an analysis step: {self.status}"
        return window

    def analysis(self, verdict: Verdict, *, message: str = "", requests: int = 100) -> Decision:
        """Wait for the current window to end and hand the operator its result."""
        start_s, end_s = self.window()
        self.now_s = max(self.now_s, end_s)
        result = AnalysisResult(
            verdict=verdict,
            message=message or f"{verdict.value} by the test",
            window_start_s=start_s,
            window_end_s=self.now_s,
            requests=requests,
            error_rate=0.0,
            p99_s=0.1,
        )
        return self.reconcile(result)

    def later(self, seconds: float) -> Decision:
        self.now_s += seconds
        return self.reconcile()


def weights(decision: Decision) -> dict[str, int]:
    assert decision.route is not None
    return decision.route.route()["weights"]


def reasons(decision: Decision) -> list[str]:
    return [e.reason for e in decision.events]


def rolling(*, canary_ready: int = 2, **spec: Any) -> Cluster:
    """Version 1 stable and ready, version 2 rolling out with `canary_ready` replicas."""
    cluster = Cluster(make_spec(**spec))
    cluster.reconcile()
    cluster.canary_ready = canary_ready
    cluster.set_version("2")
    return cluster


def test_a_new_model_deployment_serves_its_version_at_100_percent() -> None:
    cluster = Cluster(make_spec())
    cluster.stable_ready = 0
    first = cluster.reconcile()
    assert weights(first) == {"1": 100}
    assert EnsureDeployment("1", "stable", 2, URI.format(1), None) in first.actions
    assert reasons(first) == ["Created"]
    assert first.status.phase is Phase.PENDING
    assert first.status.message == "waiting for version 1: 0/2 stable replicas ready"
    cluster.stable_ready = 2
    ready = cluster.reconcile()
    assert ready.status.phase is Phase.HEALTHY
    assert ready.status.condition("Available").status == "True"  # type: ignore[union-attr]
    assert ready.events == ()


def test_a_canary_gets_traffic_only_while_all_its_replicas_are_ready() -> None:
    cluster = rolling(canary_ready=0)
    started = cluster.last
    assert started is not None
    assert reasons(started) == ["RolloutStarted"]
    assert weights(started) == {"1": 100, "2": 0}
    assert EnsureDeployment("2", "canary", 2, URI.format(2), None) in started.actions
    # The spec names only the new version's model; the stable one's is kept in status.
    assert EnsureDeployment("1", "stable", 2, URI.format(1), None) in started.actions
    assert started.status.stable_uri == URI.format(1)
    assert started.status.phase is Phase.PROGRESSING
    assert "waiting for replicas (0/2 canary replicas ready)" in started.status.message
    cluster.canary_ready = 1
    assert weights(cluster.reconcile()) == {"1": 100, "2": 0}
    cluster.canary_ready = 2
    ready = cluster.reconcile()
    assert weights(ready) == {"1": 80, "2": 20}
    assert ready.status.step == 1
    assert reasons(ready) == ["WeightChanged", "Paused"]  # step 1 is a 60 s pause
    cluster.canary_ready = 1  # a canary pod goes away mid-step
    lost = cluster.reconcile()
    assert weights(lost) == {"1": 100, "2": 0}
    assert lost.status.step == 1
    cluster.canary_ready = 2
    assert weights(cluster.reconcile()) == {"1": 80, "2": 20}


def test_steps_run_in_order_through_pauses_and_analysis_windows() -> None:
    cluster = rolling()
    assert cluster.later(59).status.step == 1
    analysing = cluster.later(1)  # the pause's 60 s are over
    assert analysing.status.step == 2
    assert analysing.status.message == "step 2 (analysis 30s); canary 2 at 20%"
    start_s, end_s = cluster.window()
    assert (start_s, end_s) == (cluster.now_s, cluster.now_s + 30)
    stale = AnalysisResult(
        verdict=Verdict.PASS,
        message="an older window",
        window_start_s=start_s - 30,
        window_end_s=end_s,
        requests=100,
    )
    cluster.now_s = end_s
    assert cluster.reconcile(stale).status.step == 2  # a result for another window is ignored
    passed = cluster.analysis(Verdict.PASS, message="100 requests, all fine")
    # Passed, so setWeight 50 (the canary is ready) and on to the pause without a duration.
    assert passed.status.step == 4
    assert weights(passed) == {"1": 50, "2": 50}
    assert passed.status.phase is Phase.PAUSED
    assert passed.status.last_analysis is not None
    assert passed.status.last_analysis.verdict is Verdict.PASS
    assert reasons(passed) == ["AnalysisPassed", "WeightChanged", "Paused"]
    assert cluster.later(86_400).status.step == 4  # until resumed: no deadline applies


def test_failed_checks_at_the_limit_abort_and_bring_stable_back_to_100() -> None:
    cluster = rolling()
    cluster.later(60)
    failed = cluster.analysis(Verdict.FAIL, message="error rate 0.2 over maxErrorRate 0.01")
    assert failed.status.failed_checks == 1
    assert failed.status.phase is Phase.PROGRESSING
    assert weights(failed) == {"1": 80, "2": 20}
    assert [e.message for e in failed.events] == [
        "error rate 0.2 over maxErrorRate 0.01 (1 of failureLimit 2)"
    ]
    aborted = cluster.analysis(Verdict.FAIL, message="error rate 0.3 over maxErrorRate 0.01")
    assert aborted.status.phase is Phase.ABORTED
    assert aborted.status.abort_reason == (
        "analysis failed 2 times (failureLimit 2): error rate 0.3 over maxErrorRate 0.01"
    )
    assert weights(aborted) == {"1": 100, "2": 0}
    assert EnsureDeployment("2", "canary", 0, URI.format(2), None) in aborted.actions
    assert aborted.events[0].type == "Warning"
    assert aborted.events[0].reason == "RolloutAborted"
    assert cluster.later(1_000).events == ()
    assert cluster.st.phase is Phase.ABORTED


def test_inconclusive_checks_at_the_limit_pause_the_rollout_with_a_message() -> None:
    cluster = rolling()
    cluster.later(60)
    few = "3 requests in the window, fewer than minRequests 20"
    assert cluster.analysis(Verdict.INCONCLUSIVE, message=few).status.phase is Phase.PROGRESSING
    held = cluster.analysis(Verdict.INCONCLUSIVE, message=few)
    assert held.status.phase is Phase.PAUSED
    assert held.status.message.startswith(
        f"analysis inconclusive 2 times (inconclusiveLimit 2): {few}; promote skips the step"
    )
    paused = held.status.condition("Paused")
    assert paused is not None and paused.reason == "InconclusiveLimit"
    assert [(e.type, e.reason) for e in held.events] == [("Warning", "Paused")]
    assert weights(held) == {"1": 80, "2": 20}  # traffic stays where it was
    assert cluster.later(3_600).status.phase is Phase.PAUSED  # a person decides, not a deadline
    # Pause and resume: the analysis runs again on fresh traffic.
    cluster.spec["paused"] = True
    assert cluster.reconcile().status.condition("Paused").reason == "SREPause"  # type: ignore[union-attr]
    cluster.spec["paused"] = False
    resumed = cluster.later(1)
    assert reasons(resumed) == ["Resumed"]
    assert resumed.status.inconclusive_checks == 0
    assert cluster.window()[0] == cluster.now_s
    # Or promote: the analysis step is skipped.
    cluster.analysis(Verdict.INCONCLUSIVE, message=few)
    cluster.analysis(Verdict.INCONCLUSIVE, message=few)
    skipped = cluster.command("promote", "p-1")
    assert skipped.status.step == 4
    assert weights(skipped) == {"1": 50, "2": 50}


def test_the_progress_deadline_aborts_a_canary_that_never_gets_ready() -> None:
    cluster = rolling(canary_ready=1)
    assert cluster.later(600).status.phase is Phase.PROGRESSING
    aborted = cluster.later(1)
    assert aborted.status.phase is Phase.ABORTED
    assert aborted.status.abort_reason == (
        "progress deadline: step 0 (setWeight 20) not done in 600 s (1/2 canary replicas ready)"
    )
    assert weights(aborted) == {"1": 100, "2": 0}


def test_all_steps_passed_promote_the_canary_and_remove_the_old_version() -> None:
    cluster = rolling()
    cluster.later(60)
    cluster.analysis(Verdict.PASS)
    assert cluster.command("promote", "p-1").status.step == 6  # past the indefinite pause
    cluster.canary_ready = 1
    waiting = cluster.analysis(Verdict.PASS)
    assert waiting.status.phase is Phase.PROMOTING  # not while a canary replica is missing
    assert weights(waiting) == {"1": 100, "2": 0}
    cluster.canary_ready = 2
    promoted = cluster.reconcile()
    assert promoted.status.phase is Phase.HEALTHY
    assert (promoted.status.stable_version, promoted.status.canary_version) == ("2", "")
    assert weights(promoted) == {"2": 100}
    assert RemoveDeployment("1") in promoted.actions
    assert EnsureDeployment("2", "stable", 2, URI.format(2), None) in promoted.actions
    assert reasons(promoted) == ["Promoted"]
    assert cluster.reconcile().events == ()


def test_sre_commands_act_once_per_id_and_refuse_what_does_not_fit() -> None:
    cluster = rolling()
    refused = cluster.command("retry", "c-1")
    assert [(e.type, e.message) for e in refused.events] == [
        ("Warning", "retry (command c-1) ignored: retry restarts an aborted rollout; none is")
    ]
    aborted = cluster.command("abort", "c-2")
    assert aborted.status.abort_reason == "aborted by an SRE (command c-2)"
    assert weights(aborted) == {"1": 100, "2": 0}
    assert cluster.reconcile().events == ()  # the same annotation again: already done
    assert cluster.st.last_command_id == "c-2"
    retried = cluster.command("retry", "c-3")
    assert retried.status.phase is Phase.PAUSED  # at the 60 s pause
    assert (retried.status.step, retried.status.abort_reason) == (1, "")  # step 0 again, ready
    assert weights(retried) == {"1": 80, "2": 20}
    full = cluster.command("promoteFull", "c-4")
    assert weights(full) == {"2": 100}
    cluster.annotations[COMMAND_ANNOTATION] = "{not json"
    bad = cluster.reconcile()
    assert [e.reason for e in bad.events] == ["CommandIgnored"]
    assert "(not JSON)" in bad.events[0].message
    assert cluster.reconcile().events == ()


def test_the_spec_version_ends_restarts_or_starts_a_rollout() -> None:
    cluster = rolling()
    restarted = cluster.set_version("3")
    assert reasons(restarted)[0] == "RolloutRestarted"
    assert RemoveDeployment("2") in restarted.actions
    assert (restarted.status.canary_version, restarted.status.step) == ("3", 1)
    assert weights(restarted) == {"1": 80, "3": 20}
    ended = cluster.set_version("1")
    assert reasons(ended) == ["RolloutEnded"]
    assert RemoveDeployment("3") in ended.actions
    assert weights(ended) == {"1": 100}
    assert ended.status.phase is Phase.HEALTHY
    cluster.set_version("2")
    cluster.command("abort", "a-1")
    again = cluster.set_version("4")  # a new version after an abort: a new rollout
    assert again.status.phase is Phase.PAUSED
    assert (again.status.canary_version, again.status.abort_reason) == ("4", "")


def test_an_operator_restarted_mid_rollout_decides_as_the_one_before_it() -> None:
    cluster = rolling()
    cluster.later(60)
    cluster.analysis(Verdict.FAIL, message="p99 2 s over maxP99LatencySeconds 1")
    remembered = cluster.st
    spec = ModelDeploymentSpec.from_dict(cluster.spec)
    start_s, end_s = cluster.window()
    result = AnalysisResult(Verdict.FAIL, "again", start_s, end_s, 100)
    args: dict[str, Any] = {"spec": spec, "observed": cluster.observed(result), "now_s": end_s}
    in_memory = decide(status=remembered, **args)
    restarted = decide(
        status=RolloutStatus.from_dict(json.loads(json.dumps(remembered.to_dict()))), **args
    )
    assert restarted == in_memory
    assert restarted.status.phase is Phase.ABORTED


def test_a_spec_the_schema_let_through_degrades_without_moving_traffic() -> None:
    cluster = rolling()
    cluster.spec["canary"]["steps"] = [{"setWeight": 50}, {"setWeight": 10}]
    degraded = cluster.later(1)
    assert degraded.status.phase is Phase.DEGRADED
    condition = degraded.status.condition("Degraded")
    assert condition is not None and condition.status == "True"
    assert "weights may only go up" in condition.message
    assert degraded.status.message.endswith("traffic stays where it was")
    assert weights(degraded) == {"1": 80, "2": 20}
    assert [(e.type, e.reason) for e in degraded.events] == [("Warning", "InvalidSpec")]
    assert cluster.later(10_000).events == ()  # said once; and no deadline while degraded
    cluster.canary_ready = 1
    assert weights(cluster.reconcile()) == {"1": 100, "2": 0}  # unready: no traffic, still
    cluster.canary_ready = 2
    cluster.spec["canary"]["steps"] = STEPS
    fixed = cluster.reconcile()
    assert fixed.status.phase is Phase.PAUSED
    assert (fixed.status.step, weights(fixed)) == (1, {"1": 80, "2": 20})
    assert "SpecAccepted" in reasons(fixed)
    cluster.spec["canary"]["steps"] = "oops"
    assert cluster.reconcile().status.phase is Phase.DEGRADED
    aborted = cluster.command("abort", "x-1")  # an abort is obeyed even now
    assert weights(aborted) == {"1": 100, "2": 0}
    assert aborted.status.abort_reason == "aborted by an SRE (command x-1)"


def test_breaker_overrides_and_reports_pass_through() -> None:
    cluster = rolling()
    cluster.spec["breakers"] = [{"version": "2", "mode": "open"}]
    cluster.breakers["1"] = BreakerObservation(state="half_open", since_s=990, reason="probing")
    decision = cluster.reconcile()
    assert SetBreakerModes((("2", "open"),)) in decision.actions
    assert decision.status.breaker_summary == "1:half_open 2:open"
    by_version = {b.version: b for b in decision.status.breakers}
    assert (by_version["1"].reason, by_version["1"].since_ms) == ("probing", 990_000)
    assert (by_version["2"].mode, by_version["2"].reason) == ("open", "forced open (spec.breakers)")


def test_with_no_replicas_a_new_version_becomes_stable_at_once() -> None:
    cluster = Cluster({**make_spec(), "replicas": 0})
    cluster.reconcile()
    promoted = cluster.set_version("2")
    assert weights(promoted) == {"2": 100}
    assert "replicas is 0" in promoted.events[-1].message


def test_a_canary_that_answers_fast_without_errors_but_wrongly_is_aborted() -> None:
    cluster = rolling(
        steps=[{"setWeight": 10}, {"analysis": {}}, {"setWeight": 100}],
        shadowPercent=10,
        analysis={"minAgreement": 0.95, "failureLimit": 1},
    )
    start_s, end_s = cluster.window()
    calls = [
        MetricsSnapshot("m", "2", "pod-a", start_s, start_s, latency_bounds_s=(0.1,)),
        MetricsSnapshot(
            "m", "2", "pod-a", end_s, start_s, requests=500, successes=500,
            latency_bounds_s=(0.1,), latency_counts=(500, 0),
        ),
    ]  # fmt: skip
    shadow = [
        AgreementSnapshot("2", "gw", start_s, 0, compared=0, agreed=0),
        AgreementSnapshot("2", "gw", end_s, 0, compared=200, agreed=120),
    ]
    policy = ModelDeploymentSpec.from_dict(cluster.spec).canary.analysis
    result = analyse(
        calls, version="2", policy=policy, start_s=start_s, end_s=end_s, agreements=shadow
    )
    assert (result.error_rate, result.verdict) == (0.0, Verdict.FAIL)
    cluster.now_s = end_s
    aborted = cluster.reconcile(result)
    assert aborted.status.phase is Phase.ABORTED
    assert "agreement 0.6 under minAgreement 0.95" in aborted.status.abort_reason
    assert aborted.status.last_analysis is not None
    assert aborted.status.last_analysis.agreement == pytest.approx(0.6)


def test_every_status_written_passes_the_crds_schema() -> None:
    crd = checker("modeldeployments")
    cluster = rolling()
    statuses = [cluster.status, cluster.later(60).status.to_dict(nulls=True)]
    cluster.analysis(Verdict.FAIL, message="x" * 5_000)  # a long message is clipped
    statuses += [cluster.status, cluster.command("abort", "a").status.to_dict(nulls=True)]
    for status in statuses:
        obj = {
            "apiVersion": "edgegate.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "m"},
            "spec": cluster.spec,
            "status": status,
        }
        assert crd.refusals(obj) == []


# ---- properties: any sequence of verdicts, readiness, time, commands, versions, bad specs ----

KINDS = st.sampled_from(["weight", "pause", "timed", "analysis"])


@st.composite
def step_lists(draw: st.DrawFn) -> list[Json]:
    kinds = draw(st.lists(KINDS, max_size=6))
    weights = sorted(draw(st.lists(st.integers(0, 100), min_size=len(kinds), max_size=len(kinds))))
    steps: list[Json] = []
    for kind, weight in zip(kinds, weights, strict=True):
        steps.append(
            {"setWeight": weight} if kind == "weight"
            else {"pause": {}} if kind == "pause"
            else {"pause": {"duration": "30s"}} if kind == "timed"
            else {"analysis": {"interval": "20s"}}
        )  # fmt: skip
    return [*steps, {"setWeight": 100}, *draw(st.sampled_from([[], [{"analysis": {}}]]))]


class Rollouts(RuleBasedStateMachine):
    """Random operation of one ModelDeployment; the invariants hold after every decision."""

    cluster: Cluster
    good_steps: list[Json]

    @initialize(
        steps=step_lists(),
        replicas=st.integers(1, 3),
        failure_limit=st.integers(1, 3),
        inconclusive_limit=st.integers(1, 3),
        deadline_s=st.sampled_from([60, 600]),
    )
    def create(
        self, steps: list[Json], replicas: int, failure_limit: int, inconclusive_limit: int,
        deadline_s: int,
    ) -> None:  # fmt: skip
        spec = make_spec(
            steps=steps,
            analysis={"failureLimit": failure_limit, "inconclusiveLimit": inconclusive_limit},
            progressDeadlineSeconds=deadline_s,
        )
        self.cluster = Cluster({**spec, "replicas": replicas})
        self.good_steps = steps
        self.check(None)
        # Most of the interest is in a rollout: start one, with a ready canary.
        self.set_version("2")
        self.canary_gets_ready()

    @rule(seconds=st.one_of(st.sampled_from([1.0, 20.0, 30.0]), st.floats(0, 700)))
    def time_passes(self, seconds: float) -> None:
        self.cluster.now_s += seconds
        self.check(None)

    @rule()
    def canary_gets_ready(self) -> None:
        self.cluster.canary_ready = self.cluster.spec["replicas"]
        self.check(None)

    @rule(canary=st.integers(0, 3), stable=st.integers(0, 3))
    def readiness_changes(self, canary: int, stable: int) -> None:
        self.cluster.canary_ready, self.cluster.stable_ready = canary, stable
        self.check(None)

    # One rule per verdict, so that analysis results are as frequent as the other events.
    @rule()
    def analysis_passes(self) -> None:
        self.analysis_arrives(Verdict.PASS)

    @rule()
    def analysis_fails(self) -> None:
        self.analysis_arrives(Verdict.FAIL)

    @rule()
    def analysis_is_inconclusive(self) -> None:
        self.analysis_arrives(Verdict.INCONCLUSIVE)

    @rule(verdict=st.sampled_from(Verdict))
    def a_stale_analysis_arrives(self, verdict: Verdict) -> None:
        self.analysis_arrives(verdict, stale_s=1)

    def analysis_arrives(self, verdict: Verdict, *, stale_s: float = 0) -> None:
        try:
            start_s, end_s = self.cluster.window()
        except (AssertionError, ValueError):  # not at an analysis step, or a broken spec
            start_s, end_s = self.cluster.now_s - 30, self.cluster.now_s
        self.cluster.now_s = max(self.cluster.now_s, end_s)
        self.check(AnalysisResult(verdict, "test", start_s - stale_s, self.cluster.now_s, 50))

    @rule(
        action=st.sampled_from(["promote", "promoteFull", "abort", "retry", "bogus"]),
        ident=st.integers(0, 5),
    )
    def sre_command(self, action: str, ident: int) -> None:
        self.cluster.annotations[COMMAND_ANNOTATION] = json.dumps(
            {"action": action, "id": f"{ident}"}
        )
        self.check(None)

    @rule(version=st.sampled_from(["1", "2", "3", "3", "4"]))
    def set_version(self, version: str) -> None:
        self.cluster.spec["model"] = {"name": "m", "version": version, "uri": URI.format(version)}
        self.check(None)

    @rule(paused=st.booleans())
    def pause_or_resume(self, paused: bool) -> None:
        self.cluster.spec["paused"] = paused
        self.check(None)

    @rule(broken=st.sampled_from([False, False, True]))
    def break_or_fix_the_steps(self, broken: bool) -> None:
        self.cluster.spec["canary"]["steps"] = [{"setWeight": 5}] if broken else self.good_steps
        self.check(None)

    def check(self, analysis: AnalysisResult | None) -> None:
        before = copy.deepcopy(self.cluster.status)
        previous = self.cluster.last
        decision = self.cluster.reconcile(analysis)
        status, route = decision.status, decision.route
        assert route is not None
        assert route.stable_weight + route.canary_weight == 100
        assert 0 <= route.canary_weight <= 100
        assert route.canary_weight == status.weight
        assert route.canary_version == (status.canary_version or None)
        replicas = self.cluster.spec.get("replicas", 1)
        if self.cluster.canary_ready < replicas:
            assert route.canary_weight == 0, "an unready canary got traffic"
        if status.phase is Phase.ABORTED or any(
            e.reason == "RolloutAborted" for e in decision.events
        ):
            assert route.stable_weight == 100, "an abort left traffic on the canary"
        if status.abort_reason:
            assert (
                EnsureDeployment(
                    status.canary_version, "canary", 0, URI.format(status.canary_version), None
                )
                in decision.actions
                or status.phase is Phase.DEGRADED
            )
        if status.phase is Phase.DEGRADED and previous is not None and previous.route is not None:
            assert route.canary_weight in (0, previous.route.canary_weight)
        assert status.step <= len(self.good_steps)
        if not status.canary_version:
            assert status.phase in (Phase.HEALTHY, Phase.PENDING, Phase.DEGRADED)
        assert RolloutStatus.from_dict(json.loads(json.dumps(status.to_dict()))) == status
        # Idempotent: the same inputs once more change nothing and say nothing.
        again = reconcile(
            spec=self.cluster.spec,
            status=self.cluster.status,
            observed=self.cluster.observed(analysis),
            now_s=self.cluster.now_s,
            generation=1,
            annotations=self.cluster.annotations,
        )
        assert again.status == status
        assert again.events == (), f"{again.events} from {before}"

    @invariant()
    def weights_add_up(self) -> None:
        if self.cluster.last is not None and self.cluster.last.route is not None:
            route = self.cluster.last.route
            assert route.stable_weight + route.canary_weight == 100


Rollouts.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,  # one failure, shrunk fast
)
TestRollouts = Rollouts.TestCase
