"""Workers against real processes: priority order, heartbeats, retries with backoff, giving up."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import nats.js.errors
import pytest
from support.suite_stack import (
    TENANT,
    Stack,
    bearer,
    finished,
    start_stack,
    text_envelope,
)
from support.waiting import eventually

from edgegate_common import subjects
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path, taskstores=0)
    yield running
    running.stop()


@contextmanager
def inference_frozen(stack: Stack) -> Iterator[None]:
    """SIGSTOP the inference process: requests to it go unanswered until SIGCONT."""
    assert stack.inference is not None and stack.inference.pid is not None
    os.kill(stack.inference.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(stack.inference.pid, signal.SIGCONT)


async def _submit(stack: Stack, token: str, envelope: env.Envelope) -> pb.Task:
    async with stack.stub() as stub:
        return await stub.Submit(pb.SubmitRequest(envelope=envelope), metadata=bearer(token))


async def _get(stack: Stack, token: str, task_id: str) -> pb.Task:
    async with stack.stub() as stub:
        return await stub.Get(pb.GetRequest(id=task_id), metadata=bearer(token))


async def test_queued_tasks_run_highest_priority_first(stack: Stack) -> None:
    token = stack.token()
    await stack.add_taskstore("--workers", "0")  # takes submissions, runs nothing
    ids: dict[int, list[str]] = {}
    for priority in (env.PRIORITY_LOW, env.PRIORITY_NORMAL, env.PRIORITY_HIGH):
        for i in range(3):
            task = await _submit(stack, token, text_envelope(f"p{priority} {i}", priority=priority))
            ids.setdefault(priority, []).append(task.id)
    await stack.add_taskstore("--workers", "1")  # one at a time, in the order it takes them
    for task_ids in ids.values():
        for task_id in task_ids:
            await eventually(
                lambda i=task_id: _finished_or_none(stack, token, i), what="tasks to finish"
            )
    async with stack.bus() as bus:
        info = await bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
        order = [
            pb.Task.FromString(
                (await bus.js.get_msg(subjects.STREAM_TASK_EVENTS, seq)).data or b""
            ).priority
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
    assert order == [env.PRIORITY_HIGH] * 3 + [env.PRIORITY_NORMAL] * 3 + [env.PRIORITY_LOW] * 3


async def _finished_or_none(stack: Stack, token: str, task_id: str) -> pb.Task | None:
    task = await _get(stack, token, task_id)
    return task if finished(task) else None


async def test_long_work_is_heartbeaten_not_redelivered(stack: Stack) -> None:
    """Inference answers after twice the ack wait; "in progress" acks keep tasks where they are."""
    token = stack.token()
    await stack.add_taskstore()
    await stack.add_taskstore()  # a second replica that would take a redelivery
    with inference_frozen(stack):
        tasks = [await _submit(stack, token, text_envelope(f"slow {i}")) for i in range(4)]
        # The behaviour: twice the ack wait (2 s) passes, within the infer timeout (5 s).
        await asyncio.sleep(4.0)
    done = [
        await eventually(lambda i=t.id: _finished_or_none(stack, token, i), what="slow tasks")
        for t in tasks
    ]
    assert [(t.status, t.attempts) for t in done] == [(pb.TASK_STATUS_COMPLETED, 1)] * 4


async def test_a_transient_failure_is_retried_until_it_succeeds(stack: Stack) -> None:
    token = stack.token()
    await stack.add_taskstore("--infer-timeout-s", "0.5", "--max-attempts", "20")
    with inference_frozen(stack):
        task = await _submit(stack, token, text_envelope("try again"))

        async def retried() -> pb.Task | None:
            got = await _get(stack, token, task.id)
            return got if got.attempts >= 2 and got.error.message else None

        waiting = await eventually(retried, what="a second attempt")
    assert waiting.status == pb.TASK_STATUS_PROCESSING
    assert waiting.error.code == env.ERROR_CODE_DEADLINE_EXCEEDED
    done = await eventually(lambda: _finished_or_none(stack, token, task.id))
    assert done.status == pb.TASK_STATUS_COMPLETED
    assert not done.HasField("error")


async def test_exhausted_retries_go_to_dead_letter_with_the_reason(stack: Stack) -> None:
    token = stack.token()
    await stack.add_taskstore("--infer-timeout-s", "0.3", "--max-attempts", "2")
    with inference_frozen(stack):
        task = await _submit(stack, token, text_envelope("never answered"))
        failed = await eventually(lambda: _finished_or_none(stack, token, task.id))
    assert (failed.status, failed.attempts) == (pb.TASK_STATUS_FAILED, 2)
    assert failed.error.code == env.ERROR_CODE_DEADLINE_EXCEEDED
    async with stack.bus() as bus:
        dead = await bus.js.get_last_msg(
            subjects.STREAM_TASKS_DEAD, subjects.taskstore_dead(TENANT, task.id)
        )
    assert "DEADLINE_EXCEEDED" in (dead.headers or {}).get("Edgegate-Dead-Reason", "")


async def _events_for(stack: Stack, task_id: str) -> list[pb.Task]:
    async with stack.bus() as bus:
        info = await bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
        events = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            data = (await bus.js.get_msg(subjects.STREAM_TASK_EVENTS, seq)).data or b""
            events.append(pb.Task.FromString(data))
    return [e for e in events if e.id == task_id]


async def _stray_queue_message(stack: Stack, task: pb.Task) -> None:
    """A second queue message for the task's round, as a Submit repeated after the window makes.

    Returns once a worker has taken it and let it go: the queue is a work-queue
    stream, so a message a worker acknowledged is gone from it.
    """
    async with stack.bus() as bus:
        ack = await bus.js.publish(
            subjects.taskstore_queue("normal"),
            task.SerializeToString(),
            headers={"Nats-Msg-Id": f"stray-{task.id}"},
        )

        async def consumed() -> bool:
            try:
                await bus.js.get_msg(subjects.STREAM_TASKS, ack.seq)
            except nats.js.errors.NotFoundError:
                return True
            return False

        await eventually(consumed, timeout_s=10, what="a worker to take the stray message")


async def test_a_second_queue_message_does_not_run_a_claimed_round_again(stack: Stack) -> None:
    token = stack.token()
    await stack.add_taskstore()
    await stack.add_taskstore()
    with inference_frozen(stack):
        task = await _submit(stack, token, text_envelope("claimed"))

        async def running() -> pb.Task | None:
            got = await _get(stack, token, task.id)
            return got if got.status == pb.TASK_STATUS_PROCESSING else None

        claimed = await eventually(running, what="a worker to claim the task")
        await _stray_queue_message(stack, task)  # a worker takes it while the round runs
    done = await eventually(lambda: _finished_or_none(stack, token, task.id))
    assert claimed.claim > 0
    assert (done.status, done.attempts, done.claim) == (pb.TASK_STATUS_COMPLETED, 1, claimed.claim)
    assert len(await _events_for(stack, task.id)) == 1


async def test_a_finish_is_reported_once_even_after_the_duplicate_window(stack: Stack) -> None:
    token = stack.token()
    await stack.add_taskstore("--duplicate-window-s", "3")
    task = await _submit(stack, token, text_envelope("cancel me", version="99"))  # never ready
    async with stack.stub() as stub:
        await stub.Cancel(pb.CancelRequest(id=task.id), metadata=bearer(token))
    # The behaviour: the duplicate window runs out, so a repeated publish would be stored.
    await asyncio.sleep(3.5)
    await _stray_queue_message(stack, task)
    events = await _events_for(stack, task.id)
    assert [e.status for e in events] == [pb.TASK_STATUS_CANCELLED]
    assert (await _get(stack, token, task.id)).reported


async def test_a_full_store_refuses_submissions_and_keeps_what_it_holds(stack: Stack) -> None:
    token = stack.token()
    await stack.add_taskstore("--workers", "0", "--max-store-bytes", "65536")
    accepted: list[str] = []
    async with stack.stub() as stub:
        refusal = None
        for i in range(400):
            try:
                task = await stub.Submit(
                    pb.SubmitRequest(envelope=text_envelope(f"fill {i} " + "x" * 400)),
                    metadata=bearer(token),
                )
            except grpc.aio.AioRpcError as exc:
                refusal = exc
                break
            accepted.append(task.id)
        assert refusal is not None, "the store never filled up"
        kept = [await stub.Get(pb.GetRequest(id=i), metadata=bearer(token)) for i in accepted]
    assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maximum" in (refusal.details() or "").lower()
    assert accepted and all(t.status == pb.TASK_STATUS_PENDING for t in kept)
    async with stack.bus() as bus:
        queued = (await bus.js.stream_info(subjects.STREAM_TASKS)).state.messages
    # Nothing queued was dropped to make room (the refused Submit may have queued its
    # message before its record was refused: workers drop that one).
    assert queued in (len(accepted), len(accepted) + 1)
