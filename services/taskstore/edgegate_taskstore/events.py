"""Reporting a finished task: its event, stored once, then noted in the record.

The event goes to the events stream with a de-duplication id, then the
record is marked `reported` (compare-and-set). Whoever finds a finished
record that is not marked yet (a redelivery after a crash between the two
steps) reports it again: inside the stream's duplicate window the repeat is
dropped, and the window is longer than the ack wait that brings the
redelivery. Once marked, nobody publishes that finish again, however late a
stray queue message turns up.
"""

from __future__ import annotations

from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.adapters.queue import WorkQueue
from edgegate_taskstore.adapters.records import TaskRecords
from edgegate_taskstore.core import status


async def report(task: pb.Task, *, queue: WorkQueue, records: TaskRecords) -> pb.Task:
    """Publish `task`'s finish (once) and mark it reported; the record as stored after."""
    if task.status not in status.FINISHED or task.reported:
        return task
    event = pb.Task()
    event.CopyFrom(task)
    event.reported = True
    await queue.publish_event(event)

    def mark(record: pb.Task) -> pb.Task | None:
        if record.reported or (record.retries, record.status) != (task.retries, task.status):
            return None
        record.reported = True
        return record

    return await records.change(task.tenant, task.id, mark)
