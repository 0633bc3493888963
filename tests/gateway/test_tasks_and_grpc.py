"""`/v1/tasks` and gRPC `Gateway.Send`: deferred work through the gateway, offline safety.

Real processes: nats-server, security, inference, taskstore and the gateway.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from support.suite_stack import OTHER_TENANT, Stack, start_stack

from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
MODEL = "toy_text"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("gateway-tasks"), taskstores=1)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> tuple[str, str]:
    """(HTTP base URL, gRPC target)."""
    proc, port = stack.start_gateway()
    return f"http://127.0.0.1:{port}/v1", proc.target


def _token(stack: Stack, **kwargs: str) -> str:
    return stack.token("infer:*", "tasks:read", "tasks:write", **kwargs)


def _http(
    method: str, url: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as refused:
        with refused:  # it holds the connection
            return refused.code, json.loads(refused.read()), dict(refused.headers)


def _until_done(base: str, token: str, task_id: str, timeout_s: float = 30) -> dict[str, Any]:
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        _, task, _ = _http("GET", f"{base}/tasks/{task_id}", token)
        if task["status"] in ("completed", "failed", "cancelled") and task["notified"]:
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish")


def test_a_task_submitted_over_http_runs_and_reads_back(
    stack: Stack, gateway: tuple[str, str]
) -> None:
    base, _ = gateway
    token = _token(stack)
    status, task, headers = _http(
        "POST",
        f"{base}/tasks",
        token,
        {"model": MODEL, "input": ["later please"], "priority": "high"},
    )
    assert status == 202 and headers["Location"] == f"/v1/tasks/{task['id']}"
    assert (task["status"], task["priority"], task["model"]) == ("pending", "high", MODEL)
    done = _until_done(base, token, task["id"])
    assert done["status"] == "completed" and done["error"] is None
    (output,) = done["result"]["outputs"]
    assert output["datatype"] == "FP32" and output["shape"][0] == 1
    _, listed, _ = _http("GET", f"{base}/tasks?status=completed&page_size=50", token)
    assert task["id"] in {t["id"] for t in listed["data"]}
    _, since, _ = _http("GET", f"{base}/tasks?after_revision={done['revision']}", token)
    assert task["id"] not in {t["id"] for t in since["data"]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("POST", "/tasks", {"model": MODEL, "input": "x", "priority": "urgent"}, 400, "priority"),
        ("POST", "/tasks", {"input": "x"}, 400, "'model'"),
        ("GET", "/tasks/" + "0" * 32, None, 404, "no task"),
        ("GET", "/tasks/not-an-id", None, 400, "not a task id"),
        ("GET", "/tasks?status=done", None, 400, "status"),
        ("GET", "/tasks?page_size=-1", None, 400, "page_size"),
    ],
    ids=["priority", "no-model", "unknown", "malformed-id", "bad-status", "bad-page"],
)
def test_bad_task_requests_get_clear_errors(
    stack: Stack,
    gateway: tuple[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    says: str,
) -> None:
    base, _ = gateway
    got, answer, _ = _http(method, base + path, _token(stack), body)
    assert got == status, answer
    assert says in answer["error"]["message"]


def test_tasks_stay_within_their_tenant(stack: Stack, gateway: tuple[str, str]) -> None:
    base, _ = gateway
    _, task, _ = _http("POST", f"{base}/tasks", _token(stack), {"model": MODEL, "input": "mine"})
    got, answer, _ = _http("GET", f"{base}/tasks/{task['id']}", _token(stack, tenant=OTHER_TENANT))
    assert got == 403, answer
    got, _, _ = _http("GET", f"{base}/tasks/{task['id']}", "not-a-token")
    assert got == 401


def _send(target: str, token: str, envelope: env.Envelope, *, defer: bool = False) -> env.Reply:
    async def call() -> env.Reply:
        async with grpc.aio.insecure_channel(target) as channel:
            response = await gateway_pb2_grpc.GatewayStub(channel).Send(
                gateway_pb2.SendRequest(envelope=envelope, defer=defer),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=30,
            )
        return response.reply

    return asyncio.run(call())


def _text(text: str, *, version: str = "") -> env.Envelope:
    envelope = env.Envelope(route=env.RouteHint(model=MODEL, version=version))
    envelope.parts.add(text=text)
    return envelope


def test_grpc_send_answers_now_or_defers_on_request(stack: Stack, gateway: tuple[str, str]) -> None:
    base, target = gateway
    token = _token(stack)
    now = _send(target, token, _text("answer me now"))
    assert now.backend == env.BACKEND_LOCAL and now.parts[0].tensor.datatype == "FP32"
    later = _send(target, token, _text("answer me later"), defer=True)
    assert later.backend == env.BACKEND_TASKSTORE and later.task_id
    assert _until_done(base, token, later.task_id)["status"] == "completed"
    with pytest.raises(grpc.RpcError) as refused:
        _send(target, "not-a-token", _text("who am I"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_message_sent_while_inference_is_down_is_answered_when_it_returns(
    stack: Stack, gateway: tuple[str, str]
) -> None:
    """Inference stopped: the message becomes a task; inference back: the task completes."""
    base, target = gateway
    token = _token(stack)
    assert stack.inference is not None
    stack.inference.stop()
    try:
        deferred = _send(target, token, _text("while you were out"))
        assert deferred.backend == env.BACKEND_TASKSTORE and deferred.task_id
        _, waiting, _ = _http("GET", f"{base}/tasks/{deferred.task_id}", token)
        assert waiting["status"] == "pending"
    finally:
        stack.start_inference()
    done = _until_done(base, token, deferred.task_id, timeout_s=60)
    assert done["status"] == "completed" and done["attempts"] >= 1
