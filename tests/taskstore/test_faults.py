"""Faults: a taskstore replica killed while it holds tasks, and nats-server restarted mid-run.

Every accepted task must finish exactly once: completed in its record, and
one event per task in the events stream (where subscribers read them).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.suite_stack import TENANT, Stack, bearer, eventually, start_stack, text_envelope

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path, taskstores=2)
    yield running
    running.stop()


async def _events_per_task(bus: Bus) -> Counter[str]:
    """How often each task's finish is stored in the events stream."""
    info = await bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
    counts: Counter[str] = Counter()
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await bus.js.get_msg(subjects.STREAM_TASK_EVENTS, seq)
        counts[pb.Task.FromString(message.data or b"").id] += 1
    return counts


async def _all_completed(stack: Stack, token: str, ids: list[str]) -> list[pb.Task]:
    async with stack.stub(replica=len(stack.taskstores) - 1) as stub:

        async def check() -> list[pb.Task] | None:
            tasks = [await stub.Get(pb.GetRequest(id=i), metadata=bearer(token)) for i in ids]
            done = all(t.status == pb.TASK_STATUS_COMPLETED for t in tasks)
            return tasks if done else None

        return await eventually(check, timeout_s=90, what="every task to complete")


async def test_kill_9_of_a_replica_holding_tasks_loses_and_repeats_nothing(stack: Stack) -> None:
    token = stack.token()
    assert stack.inference is not None and stack.inference.pid is not None
    # Inference frozen: each replica takes tasks and holds them, waiting for replies.
    os.kill(stack.inference.pid, signal.SIGSTOP)
    try:
        async with stack.stub() as stub:
            ids = [
                (
                    await stub.Submit(
                        pb.SubmitRequest(envelope=text_envelope(f"held {i}")),
                        metadata=bearer(token),
                    )
                ).id
                for i in range(40)
            ]

            async def both_hold() -> bool | None:
                tasks = [await stub.Get(pb.GetRequest(id=i), metadata=bearer(token)) for i in ids]
                held = sum(t.status == pb.TASK_STATUS_PROCESSING for t in tasks)
                return True if held >= 24 else None

            await eventually(both_hold, what="both replicas to hold tasks")
        stack.taskstores[0].kill()  # SIGKILL: no drain, no acks, no goodbye
    finally:
        os.kill(stack.inference.pid, signal.SIGCONT)
    tasks = await _all_completed(stack, token, ids)
    async with stack.bus() as bus:
        events = await _events_per_task(bus)
    assert {i: events[i] for i in ids} == dict.fromkeys(ids, 1)
    # The tasks the killed replica held ran again on the survivor: a second attempt.
    assert any(t.attempts == 2 for t in tasks)
    assert all(t.tenant == TENANT and t.result.parts for t in tasks)


async def test_nats_restart_during_a_run_loses_no_accepted_task(stack: Stack) -> None:
    token = stack.token()
    accepted: list[str] = []
    refusals: list[grpc.StatusCode] = []

    async def submit(batch: str, n: int) -> None:
        async with stack.stub() as stub:
            for i in range(n):
                request = pb.SubmitRequest(
                    envelope=text_envelope(f"restart {batch} {i}", key=f"{batch}-{i}")
                )
                for _ in range(100):  # a client retries what was not acknowledged
                    try:
                        task = await stub.Submit(request, metadata=bearer(token), timeout=5)
                    except grpc.aio.AioRpcError as exc:
                        refusals.append(exc.code())
                        await asyncio.sleep(0.2)  # the behaviour: a client paces its retries
                        continue
                    accepted.append(task.id)
                    break

    assert stack.inference is not None and stack.inference.pid is not None
    # Inference frozen: the first tasks are still queued or running when NATS goes.
    os.kill(stack.inference.pid, signal.SIGSTOP)
    try:
        await submit("before", 20)
        stack.nats.restart()
    finally:
        os.kill(stack.inference.pid, signal.SIGCONT)
    await submit("after", 20)
    assert len(set(accepted)) == 40
    # While NATS was away, Submit said "try again", never anything else.
    assert set(refusals) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
    await _all_completed(stack, token, sorted(set(accepted)))
    async with stack.bus() as bus:
        events = await _events_per_task(bus)
    assert {i: events[i] for i in set(accepted)} == dict.fromkeys(set(accepted), 1)
