"""Task status rules: a task only ever moves forward.

A task is `pending` until a worker starts it, `processing` while attempts run
(it stays `processing` between a failed attempt and the next one), and ends
`completed`, `failed` or `cancelled`. Only an explicit Retry takes a failed
task back to `pending`, and it counts a new round (`retries`).

Every writer changes a record with compare-and-set and checks the change with
`check_forward`; so however writers interleave (two workers after a
redelivery, a Cancel racing a completion), the stored record's `progress`
never decreases and a finished task stays finished.
"""

from __future__ import annotations

from edgegate_common.errors import FailedPrecondition
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb

PENDING = pb.TASK_STATUS_PENDING
PROCESSING = pb.TASK_STATUS_PROCESSING
COMPLETED = pb.TASK_STATUS_COMPLETED
FAILED = pb.TASK_STATUS_FAILED
CANCELLED = pb.TASK_STATUS_CANCELLED

FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})
_RANK = {PENDING: 0, PROCESSING: 1, COMPLETED: 2, FAILED: 2, CANCELLED: 2}


def name(status: int) -> str:
    """`pending`, `processing`, ... as people and JSON read it."""
    return pb.TaskStatus.Name(status).removeprefix("TASK_STATUS_").lower()  # type: ignore[arg-type]


def progress(task: pb.Task) -> tuple[int, int, int]:
    """How far a task has come: (Retry rounds, status rank, attempts); never decreases."""
    return (task.retries, _RANK[task.status], task.attempts)


def check_forward(old: pb.Task, new: pb.Task) -> None:
    """Raise FailedPrecondition unless `new` is a step forward from `old`.

    A finished task changes again only through Retry (a new round, back to
    pending, from `failed` only) or to note that its event is stored. Within
    a round the status rank and the attempt count never shrink (a note such
    as the last attempt's error may change at the same step).
    """
    if new.retries != old.retries:
        if new.retries == old.retries + 1 and old.status == FAILED and new.status == PENDING:
            return
        raise FailedPrecondition(
            f"task {old.id} is {name(old.status)}; only a failed task can be retried"
        )
    if old.status in FINISHED:
        if _marks_reported(old, new):
            return
        raise FailedPrecondition(f"task {old.id} is already {name(old.status)}")
    if progress(new) < progress(old):
        raise FailedPrecondition(
            f"task {old.id} cannot go from {name(old.status)} (attempt {old.attempts}) "
            f"to {name(new.status)} (attempt {new.attempts})"
        )


def _marks_reported(old: pb.Task, new: pb.Task) -> bool:
    """The one change a finished task takes: noting that its event is stored."""
    if old.reported or not new.reported:
        return False
    unmarked = pb.Task()
    unmarked.CopyFrom(new)
    unmarked.reported = False
    unmarked.revision, unmarked.updated_at.seconds, unmarked.updated_at.nanos = (
        old.revision,
        old.updated_at.seconds,
        old.updated_at.nanos,
    )
    return unmarked == old
