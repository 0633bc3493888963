"""Records and queues on real JetStream: CAS under contention, TTLs, watch, dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
from support.waiting import eventually

from edgegate_common.bus import Bus
from edgegate_common.errors import FailedPrecondition, NotFound, ResourceExhausted
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.adapters.queue import QueueSettings, WorkQueue
from edgegate_taskstore.adapters.records import Storage, TaskRecords
from edgegate_taskstore.core import status


async def _records(bus: Bus, *, finished_ttl_s: float = 3600) -> TaskRecords:
    return await TaskRecords.open(bus.js, storage=Storage(finished_ttl_s=finished_ttl_s))


def _new(task_id: str) -> pb.Task:
    return pb.Task(id=task_id, tenant="acme", user="alice", status=status.PENDING)


async def test_create_is_once_per_id(bus: Bus) -> None:
    records = await _records(bus)
    task_id = f"{random.getrandbits(128):032x}"
    first, created = await records.create(_new(task_id))
    again, created_again = await records.create(_new(task_id))
    assert (created, created_again) == (True, False)
    assert again.revision == first.revision


async def test_concurrent_writers_never_move_a_record_backwards(bus: Bus) -> None:
    """Twelve writers race to start attempts, finish and cancel one record."""
    records = await _records(bus)
    task_id = f"{random.getrandbits(128):032x}"
    created, _ = await records.create(_new(task_id))
    rng = random.Random(3)

    def step(action: str):  # type: ignore[no-untyped-def]
        def change(record: pb.Task) -> pb.Task | None:
            if record.status in status.FINISHED:
                return None
            if action == "start":
                record.status, record.attempts = status.PROCESSING, record.attempts + 1
            else:
                record.status = status.COMPLETED if action == "complete" else status.CANCELLED
            return record

        return change

    async def writer(actions: list[str]) -> None:
        for action in actions:
            await asyncio.sleep(rng.random() / 100)  # the behaviour: writers interleave
            with contextlib.suppress(FailedPrecondition):
                await records.change("acme", task_id, step(action))

    plans = [rng.choices(["start", "start", "complete", "cancel"], k=6) for _ in range(12)]
    history: list[tuple[int, int, int]] = []
    # From the creation on: no change is missed while the watch subscribes.
    watcher = asyncio.ensure_future(_follow(records, history, after_revision=created.revision))
    await asyncio.gather(*(writer(plan) for plan in plans))
    final = await records.get("acme", task_id)
    try:
        await eventually(
            lambda: history and history[-1] == status.progress(final),
            timeout_s=10,
            what=f"the watch to reach {status.progress(final)}, it saw {history[-3:]}",
        )
    finally:
        watcher.cancel()
    assert final.status in status.FINISHED
    assert history == sorted(history)


async def _follow(
    records: TaskRecords, history: list[tuple[int, int, int]], *, after_revision: int
) -> None:
    async for task in records.watch("acme", after_revision=after_revision):
        history.append(status.progress(task))


async def test_finished_records_expire_and_pending_ones_stay(bus: Bus) -> None:
    records = await _records(bus, finished_ttl_s=1)
    done_id, open_id = (f"{random.getrandbits(128):032x}" for _ in range(2))
    await records.create(_new(done_id))
    await records.create(_new(open_id))

    def finish(record: pb.Task) -> pb.Task:
        record.status = status.COMPLETED
        return record

    await records.change("acme", done_id, finish)

    async def expired() -> bool:
        try:
            await records.get("acme", done_id)
        except NotFound:
            return True
        return False

    await eventually(expired, timeout_s=10, interval_s=0.2, what="the finished record to expire")
    assert (await records.get("acme", open_id)).status == status.PENDING


async def test_a_watcher_that_falls_behind_is_told_where_to_resume(bus: Bus) -> None:
    records = await _records(bus)
    tenant = f"watch-{random.getrandbits(32):x}"

    async def add() -> pb.Task:
        task_id = f"{random.getrandbits(128):032x}"
        created, _ = await records.create(pb.Task(id=task_id, tenant=tenant, status=status.PENDING))
        return created

    before = await add()  # after_revision 0 means "from now on": start after a real one
    await add()
    watcher = records.watch(tenant, after_revision=before.revision, max_buffered=3)
    seen = [await anext(watcher)]  # subscribed, and caught up
    for _ in range(10):
        await add()
    # The changes reach the watcher's subscription at the server's pace; nothing outside
    # the watcher shows when its buffer has overflowed, so this one stays a sleep.
    await asyncio.sleep(0.5)

    async def drain() -> None:
        async for task in watcher:
            seen.append(task)

    with pytest.raises(ResourceExhausted, match="after_revision=") as behind:
        await drain()
    resume = int(str(behind.value.message).rsplit("=", 1)[1])
    assert resume == seen[-1].revision
    assert len(seen) <= 4


async def test_retry_takes_back_only_the_dead_letter_entry_it_saw(bus: Bus) -> None:
    """A new round that failed again at once keeps its own dead-letter entry."""
    queue = await WorkQueue.open(bus, storage=Storage(), settings=QueueSettings())
    task = pb.Task(id=f"{random.getrandbits(128):032x}", tenant="acme", status=status.FAILED)
    await queue.dead_letter(task, reason="round 0 failed")
    seen = await queue.dead_letter_seq(task)
    task.retries = 1
    await queue.dead_letter(task, reason="round 1 failed too")
    newest = await queue.dead_letter_seq(task)
    await queue.leave_dead_letter(task, up_to_seq=seen or 0)
    assert seen is not None and newest is not None and newest > seen
    assert await queue.dead_letter_seq(task) == newest
    await queue.leave_dead_letter(task, up_to_seq=newest)
    assert await queue.dead_letter_seq(task) is None
