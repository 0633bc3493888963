"""The operator end to end: kopf against KMock, real inference, the real gateway's traffic.

Each test rolls out its own model (its own ModelDeployment, route and
Deployments), so the tests share one world: one nats-server, one KMock,
one gateway, one operator process. Timings are shortened (3 s analysis
windows, snapshots every 0.5 s, a resync every 0.5 s) so that a whole
rollout takes seconds; what is measured at full scale is in bench/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from support import model_factory as mf
from support.kmock_cluster import MODELDEPLOYMENTS
from support.operator_world import (
    VOCAB,
    RouteLog,
    Traffic,
    World,
    model_deployment,
    start_world,
    toy,
    write_version,
)
from support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

FOUR_STEPS = [
    {"setWeight": 5}, {"analysis": {}},
    {"setWeight": 25}, {"analysis": {}},
    {"setWeight": 50}, {"analysis": {}},
    {"setWeight": 100}, {"analysis": {}},
]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from start_world(tmp_path_factory.mktemp("operator-e2e"))


@pytest.fixture(autouse=True)
def _one_model_at_a_time(world: World) -> Iterator[None]:
    """Delete the test's ModelDeployments afterwards: the operator then removes their
    Deployments (the kubelet stops their pods) and NATS documents, and the next test does
    not share the two cores with them."""
    yield
    for body in world.cluster.list(MODELDEPLOYMENTS, "edgegate"):
        name = body["metadata"]["name"]
        world.custom.delete_namespaced_custom_object(
            "edgegate.io", "v1alpha1", "edgegate", "modeldeployments", name
        )
        wait_until(
            lambda name=name: world.cluster.get(MODELDEPLOYMENTS, "edgegate", name) is None,
            timeout_s=60,
            what=f"{name} deleted",
        )
        wait_until(
            lambda name=name: (
                not world.kubelet.processes(f"{name}-v1") + world.kubelet.processes(f"{name}-v2")
            ),
            timeout_s=60,
            what=f"{name}'s pods stopped",
        )
        wait_until(
            lambda name=name: world.route(name) is None,
            timeout_s=10,
            what=f"{name}'s route removed with it",
        )


def healthy_at(world: World, name: str, version: str) -> dict:
    return world.wait_status(
        name,
        f"{name} Healthy with stable {version}",
        lambda s: s.get("phase") == "Healthy" and s.get("stableVersion") == version,
        timeout_s=90,
    )


def test_a_good_version_is_promoted_step_by_step_without_a_failed_request(world: World) -> None:
    v1 = write_version(world.source, "good", 1, toy())
    v2 = write_version(world.source, "good", 2, toy())
    world.apply(model_deployment("good", version=1, uri=v1, steps=FOUR_STEPS))
    healthy_at(world, "good", "1")
    assert world.route("good") == {"weights": {"1": 100}}

    routes = RouteLog(world.stack.nats.url, "good")
    traffic = Traffic(world.client(), "good").start()
    try:
        world.patch("good", {"spec": {"model": {"version": "2", "uri": v2}}})
        status = healthy_at(world, "good", "2")
    finally:
        traffic.stop()
        routes.stop()
    assert routes.weights("2") == [0, 5, 25, 50, 100]
    assert world.route("good") == {"weights": {"2": 100}}
    assert status["lastAnalysis"]["verdict"] == "Pass"
    assert not traffic.failures, traffic.failures[:5]
    assert traffic.answers > 100
    assert "Promoted" in world.events("good")
    # Status only ever through /status: KMock would take it either way, a cluster would not.
    writes = [
        r for r in world.cluster.requests()
        if r.method.value == "PATCH" and r.resource is not None
        and r.resource.plural == "modeldeployments" and r.name == "good"
    ]  # fmt: skip
    assert any(r.subresource == "status" for r in writes)
    assert not [r for r in writes if r.subresource is None and "status" in (r.data or {})]
    # the old version's Deployment is gone; the new one serves
    names = {d["metadata"]["name"] for d in world.cluster.list("apps/v1/deployments", "edgegate")}
    assert "good-v2" in names and "good-v1" not in names


def deployment(world: World, name: str) -> dict | None:
    return world.cluster.get("apps/v1/deployments", "edgegate", name)


def aborted(world: World, name: str, timeout_s: float = 90) -> dict:
    return world.wait_status(
        name, f"{name} Aborted", lambda s: s.get("phase") == "Aborted", timeout_s=timeout_s
    )


def test_a_version_that_fails_on_some_inputs_is_aborted_and_stable_gets_everything_back(
    world: World,
) -> None:
    v1 = write_version(world.source, "flaky", 1, toy())
    # Its embedding table stops at token id 2100: "the a" works, "the cat sat" is refused
    # (ONNX Runtime: index out of bounds), which version 1 answers.
    v2 = write_version(world.source, "flaky", 2, toy(vocab=2100))
    steps = [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]
    world.apply(model_deployment("flaky", version=1, uri=v1, steps=steps))
    healthy_at(world, "flaky", "1")
    routes = RouteLog(world.stack.nats.url, "flaky")
    traffic = Traffic(world.client(), "flaky", texts=("the a", "the cat sat")).start()
    try:
        world.patch("flaky", {"spec": {"model": {"version": "2", "uri": v2}}})
        status = aborted(world, "flaky")
        answers = traffic.answers
        wait_until(lambda: traffic.answers > answers + 50, timeout_s=30, what="traffic after")
        failures_before = len(traffic.failures)
        wait_until(lambda: traffic.answers > answers + 100, timeout_s=30, what="more traffic")
    finally:
        traffic.stop()
        routes.stop()
    assert status["lastAnalysis"]["verdict"] == "Fail"
    assert "refuses" in status["abortReason"], status["abortReason"]
    verdict_s = datetime.fromisoformat(status["lastAnalysis"]["at"].replace("Z", "+00:00"))
    after = [
        t for t, doc in routes.seen if doc["weights"].get("2") == 0 and t > verdict_s.timestamp()
    ]
    print(f"failing verdict -> weight 0: {min(after) - verdict_s.timestamp():.3f} s")
    failed, total = len(traffic.failures), traffic.answers + len(traffic.failures)
    print(f"failed requests while the canary had traffic: {failed} of {total}")
    assert world.route("flaky") == {"weights": {"1": 100, "2": 0}}
    assert routes.weights("2")[-1] == 0
    assert deployment(world, "flaky-v2")["spec"]["replicas"] == 0
    assert "RolloutAborted" in world.events("flaky")
    assert traffic.failures, "the canary's failures reached some callers while it had traffic"
    assert len(traffic.failures) == failures_before, "no failure once stable had it all back"


def test_a_slow_version_is_aborted_on_p99(world: World) -> None:
    v1 = write_version(world.source, "slowpoke", 1, toy())
    v2 = write_version(
        world.source, "slowpoke", 2, mf.slow_encoder(vocab=VOCAB, hidden=768, layers=40)
    )
    steps = [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]
    body = model_deployment(
        "slowpoke", version=1, uri=v1, steps=steps, analysis={"maxP99LatencySeconds": 0.02}
    )
    world.apply(body)
    healthy_at(world, "slowpoke", "1")
    traffic = Traffic(world.client(), "slowpoke").start()
    try:
        world.patch("slowpoke", {"spec": {"model": {"version": "2", "uri": v2}}})
        status = aborted(world, "slowpoke")
    finally:
        traffic.stop()
    assert status["lastAnalysis"]["verdict"] == "Fail"
    assert "p99" in status["abortReason"], status["abortReason"]
    assert world.route("slowpoke") == {"weights": {"1": 100, "2": 0}}
    assert not traffic.failures, traffic.failures[:5]


def test_a_fast_error_free_version_with_wrong_answers_is_aborted_by_shadow_analysis(
    world: World,
) -> None:
    v1 = write_version(world.source, "liar", 1, toy(seed=0))
    v2 = write_version(world.source, "liar", 2, toy(seed=1))  # other weights: other vectors
    steps = [{"analysis": {}}, {"setWeight": 100}]
    body = model_deployment(
        "liar", version=1, uri=v1, steps=steps, shadowPercent=100,
        analysis={"minAgreement": 0.95},
    )  # fmt: skip
    world.apply(body)
    healthy_at(world, "liar", "1")
    routes = RouteLog(world.stack.nats.url, "liar")
    traffic = Traffic(world.client(), "liar").start()
    try:
        world.patch("liar", {"spec": {"model": {"version": "2", "uri": v2}}})
        status = aborted(world, "liar")
    finally:
        traffic.stop()
        routes.stop()
    assert "agreement" in status["abortReason"], status["abortReason"]
    assert status["lastAnalysis"]["agreement"] < 0.95
    assert status["lastAnalysis"]["errorRate"] == 0
    assert routes.weights("2") == [0], "the wrong answers never reached a caller"
    assert any("shadow" in doc for _, doc in routes.seen), "the canary got shadow traffic"
    assert world.route("liar") == {"weights": {"1": 100, "2": 0}}
    assert not traffic.failures


def test_too_little_traffic_is_inconclusive_pauses_and_never_promotes(world: World) -> None:
    v1 = write_version(world.source, "quiet", 1, toy())
    v2 = write_version(world.source, "quiet", 2, toy())
    steps = [{"setWeight": 10}, {"analysis": {"interval": "2s"}}, {"setWeight": 100}]
    world.apply(model_deployment("quiet", version=1, uri=v1, steps=steps))
    healthy_at(world, "quiet", "1")
    world.patch("quiet", {"spec": {"model": {"version": "2", "uri": v2}}})  # and no traffic
    status = world.wait_status(
        "quiet", "a pause for inconclusive analysis", lambda s: s.get("phase") == "Paused"
    )
    assert status["lastAnalysis"]["verdict"] == "Inconclusive"
    assert status["inconclusiveChecks"] == 2
    assert "inconclusive" in status["message"].lower(), status["message"]
    assert status["stableVersion"] == "1" and status["canaryVersion"] == "2"
    time.sleep(3)  # the behaviour: another window passes, still held, still not promoted
    assert world.status("quiet")["phase"] == "Paused"
    assert world.route("quiet")["weights"]["1"] == 90


def test_an_operator_killed_mid_rollout_resumes_at_the_same_step(world: World) -> None:
    v1 = write_version(world.source, "sturdy", 1, toy())
    v2 = write_version(world.source, "sturdy", 2, toy())
    steps = [{"setWeight": 20}, {"pause": {"duration": "6s"}}, {"setWeight": 100}]
    world.apply(model_deployment("sturdy", version=1, uri=v1, steps=steps))
    healthy_at(world, "sturdy", "1")
    routes = RouteLog(world.stack.nats.url, "sturdy")
    world.patch("sturdy", {"spec": {"model": {"version": "2", "uri": v2}}})
    before = world.wait_status("sturdy", "the pause step", lambda s: s.get("step") == 1)
    world.kill_operator()
    killed_at = time.monotonic()
    world.start_operator()
    try:
        after = world.wait_status(
            "sturdy", "the new operator's first decision",
            lambda s: s.get("observedGeneration") and s.get("step") is not None
            and time.monotonic() - killed_at > 2,
        )  # fmt: skip
        assert after["step"] in (1, 2), after
        assert after["stepStartedAt"] == before["stepStartedAt"] or after["step"] == 2
        healthy_at(world, "sturdy", "2")
    finally:
        routes.stop()
    assert routes.weights("2") == [0, 20, 100], routes.weights("2")


def test_a_deleted_child_is_recreated_and_a_missing_secret_degrades_without_moving_traffic(
    world: World,
) -> None:
    v1 = write_version(world.source, "keeper", 1, toy())
    body = model_deployment("keeper", version=1, uri=v1, steps=[])
    body["spec"]["fallback"] = {
        "endpoint": "https://cloud.example/v1", "protocol": "openai", "model": "keeper",
        "apiKeySecretRef": {"name": "keeper-cloud", "key": "api-key"},
    }  # fmt: skip
    world.apply(body)
    status = world.wait_status(
        "keeper", "a Degraded condition", lambda s: _condition(s, "Degraded") == "True"
    )
    message = next(c["message"] for c in status["conditions"] if c["type"] == "Degraded")
    assert "keeper-cloud" in message
    healthy = healthy_at(world, "keeper", "1")
    assert _condition(healthy, "Degraded") == "True"  # serving, and saying what is missing
    assert world.route("keeper") == {"weights": {"1": 100}}
    world.core.create_namespaced_secret(
        "edgegate",
        {"metadata": {"name": "keeper-cloud"}, "data": {"api-key": "c2VjcmV0"}},
    )
    world.wait_status("keeper", "Degraded cleared", lambda s: _condition(s, "Degraded") == "False")

    world.apps.delete_namespaced_deployment("keeper-v1", "edgegate")
    wait_until(lambda: deployment(world, "keeper-v1"), timeout_s=10, what="keeper-v1 recreated")


def _condition(status: dict, kind: str) -> str:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == kind), "")


def kubectl(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl edgegate ...` through kubectl's plugin lookup (kubectl-edgegate on PATH)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "KUBECONFIG": str(world.kubeconfig)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(bin_dir / "kubectl"), "edgegate", *args, "-n", "edgegate"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_sre_commands_through_kubectl_edgegate(world: World) -> None:
    v1 = write_version(world.source, "steered", 1, toy())
    v2 = write_version(world.source, "steered", 2, toy())
    # A long timed pause: an SRE's resume restarts its clock (resuming a `pause: {}` would
    # end that step, which is what it waits for).
    steps = [{"setWeight": 20}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
    world.apply(model_deployment("steered", version=1, uri=v1, steps=steps))
    healthy_at(world, "steered", "1")

    done = kubectl(world, "rollout", "set-version", "steered", "2", "--uri", v2)
    assert done.returncode == 0, done.stderr
    world.wait_status("steered", "the pause step", lambda s: s.get("step") == 1)

    assert kubectl(world, "rollout", "pause", "steered").returncode == 0
    held = world.wait_status(
        "steered", "an SRE pause", lambda s: _reason(s, "Paused") == "SREPause"
    )
    assert held["phase"] == "Paused"
    assert kubectl(world, "rollout", "resume", "steered").returncode == 0
    world.wait_status("steered", "resumed", lambda s: _reason(s, "Paused") != "SREPause")

    done = kubectl(world, "rollout", "abort", "steered")
    assert done.returncode == 0, done.stdout + done.stderr
    assert world.status("steered")["phase"] == "Aborted"
    assert world.route("steered") == {"weights": {"1": 100, "2": 0}}

    done = kubectl(world, "rollout", "retry", "steered")
    assert done.returncode == 0, done.stdout + done.stderr
    world.wait_status("steered", "step 1 again", lambda s: s.get("step") == 1 and s["weight"] == 20)

    shown = kubectl(world, "rollout", "status", "steered")
    assert shown.returncode == 0, shown.stderr
    assert "Paused" in shown.stdout and "20" in shown.stdout
    print(f"$ kubectl edgegate rollout status steered -n edgegate\n{shown.stdout}")

    routes = RouteLog(world.stack.nats.url, "steered")
    try:
        sent_at = time.time()
        done = kubectl(world, "rollout", "promote", "steered")
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(lambda: routes.weights("2")[-1:] == [100], timeout_s=10, what="100% canary")
    finally:
        routes.stop()
    changed_at = next(t for t, doc in routes.seen if doc["weights"].get("2") == 100)
    print(f"promote -> route change: {changed_at - sent_at:.3f} s (kubectl start-up included)")
    healthy_at(world, "steered", "2")

    for command, mode in (("open", "open"), ("close", "closed"), ("auto", "auto")):
        done = kubectl(world, "breaker", command, "steered", "--version", "2")
        assert done.returncode == 0, done.stdout + done.stderr
        world.wait_status(
            "steered", f"breaker mode {mode}",
            lambda s, mode=mode: any(
                b["version"] == "2" and b["mode"] == mode for b in s.get("breakers", [])
            ),
        )  # fmt: skip
        assert world.breakers("steered")["modes"].get("2", "auto") == mode

    shown = kubectl(world, "rollout", "status", "steered")
    assert shown.returncode == 0, shown.stderr
    assert "Healthy" in shown.stdout and "steered" in shown.stdout
    print(f"$ kubectl edgegate rollout status steered -n edgegate\n{shown.stdout}")


def _reason(status: dict, kind: str) -> str:
    return next((c["reason"] for c in status.get("conditions", []) if c["type"] == kind), "")


def test_promote_reaches_the_route_within_a_second_of_the_annotation(world: World) -> None:
    """The operator's share of `promote`: from the annotation's write to the new route."""
    v1 = write_version(world.source, "prompt", 1, toy())
    v2 = write_version(world.source, "prompt", 2, toy())
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]
    world.apply(model_deployment("prompt", version=1, uri=v1, steps=steps))
    healthy_at(world, "prompt", "1")
    world.patch("prompt", {"spec": {"model": {"version": "2", "uri": v2}}})
    world.wait_status(
        "prompt", "the pause step", lambda s: s.get("step") == 1 and s["weight"] == 10
    )
    routes = RouteLog(world.stack.nats.url, "prompt")
    try:
        command = json.dumps({"action": "promote", "id": "measure-1"})
        sent_s = time.time()
        world.patch("prompt", {"metadata": {"annotations": {"edgegate.io/command": command}}})
        wait_until(lambda: routes.weights("2")[-1:] == [100], timeout_s=10, what="100% canary")
    finally:
        routes.stop()
    changed_s = next(t for t, doc in routes.seen if doc["weights"].get("2") == 100)
    print(f"promote annotation -> route change: {changed_s - sent_s:.3f} s")
    assert changed_s - sent_s < 5, "promotion must not wait for anything but the watch"
    healthy_at(world, "prompt", "2")
