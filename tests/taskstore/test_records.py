"""Task records on a real JetStream KV bucket: compare-and-set under contention, TTL when done."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from edgegate_common.bus import Bus
from edgegate_common.errors import FailedPrecondition, NotFound
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
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
    await records.create(_new(task_id))
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
            await asyncio.sleep(rng.random() / 100)
            with contextlib.suppress(FailedPrecondition):
                await records.change("acme", task_id, step(action))

    plans = [rng.choices(["start", "start", "complete", "cancel"], k=6) for _ in range(12)]
    history: list[tuple[int, int, int]] = []
    watcher = asyncio.ensure_future(_follow(records, history))
    await asyncio.sleep(0.2)
    await asyncio.gather(*(writer(plan) for plan in plans))
    final = await records.get("acme", task_id)
    await asyncio.sleep(0.3)
    watcher.cancel()
    assert final.status in status.FINISHED
    assert history == sorted(history)
    assert history[-1] == status.progress(final)


async def _follow(records: TaskRecords, history: list[tuple[int, int, int]]) -> None:
    async for task in records.watch("acme", after_revision=0):
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
    await asyncio.sleep(2.5)
    with pytest.raises(NotFound):
        await records.get("acme", done_id)
    assert (await records.get("acme", open_id)).status == status.PENDING
