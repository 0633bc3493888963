"""Faults under load through the gateway: the inference process killed with SIGKILL.

Clients keep sending over gRPC `Send` while inference dies and comes back.
Every message must end answered: at once by local inference, or as a task
that completes once inference returns. None may be refused or lost.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import grpc
import pytest
from support.suite_stack import Stack, all_completed, bearer, start_stack, text_envelope
from support.waiting import eventually

from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
CLIENTS = 4


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("gateway-faults"), taskstores=1)
    yield running
    running.stop()


def _deferred(answers: list[env.Reply]) -> list[str]:
    """The task ids of the answers that became tasks."""
    return [r.task_id for r in answers if r.backend == env.BACKEND_TASKSTORE]


def _local(answers: list[env.Reply]) -> list[env.Reply]:
    return [r for r in answers if r.backend == env.BACKEND_LOCAL]


async def test_kill_9_of_inference_under_load_loses_no_message(stack: Stack) -> None:
    gateway, _ = await asyncio.to_thread(stack.start_gateway, "--inference-timeout-s", "2")
    token = stack.token("infer:*", "tasks:read", "tasks:write")
    answered: list[env.Reply] = []
    failures: list[str] = []
    sending = asyncio.Event()
    sending.set()
    numbers = itertools.count()

    async def client(stub: gateway_pb2_grpc.GatewayStub) -> None:
        while sending.is_set():
            n = next(numbers)
            request = gateway_pb2.SendRequest(envelope=text_envelope(f"load {n}", key=f"load-{n}"))
            try:
                response = await stub.Send(request, metadata=bearer(token), timeout=30)
            except grpc.aio.AioRpcError as exc:
                failures.append(f"{n}: {exc.code().name} {exc.details()}")
                continue
            answered.append(response.reply)

    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        clients = [asyncio.create_task(client(stub)) for _ in range(CLIENTS)]
        await eventually(lambda: len(answered) >= 2 * CLIENTS, what="answers before the kill")
        before_kill = len(answered)
        assert stack.inference is not None
        await asyncio.to_thread(stack.inference.kill)
        # In-flight requests time out; new ones become tasks.
        await eventually(lambda: _deferred(answered[before_kill:]), what="a deferred answer")
        await asyncio.to_thread(stack.start_inference)
        restarted = len(answered)
        await eventually(
            lambda: _local(answered[restarted:]), timeout_s=60, what="a local answer again"
        )
        sending.clear()
        await asyncio.gather(*clients)

    deferred = _deferred(answered)
    local = _local(answered)
    assert not failures, failures[:5]
    assert before_kill > 0 and deferred and local
    assert all(r.parts for r in local)
    async with stack.stub() as taskstore:
        tasks = await all_completed(
            taskstore, deferred, token, timeout_s=90, what="every deferred task"
        )
    assert len({t.id for t in tasks}) == len(deferred)
    assert all(t.result.parts for t in tasks)
