"""Task status rules: concurrent writers with compare-and-set never move a task backwards."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegate_common.errors import FailedPrecondition
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.core import status


def task(state: int, *, attempts: int = 0, retries: int = 0) -> pb.Task:
    return pb.Task(id="t", status=state, attempts=attempts, retries=retries)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (task(status.PENDING), task(status.PROCESSING, attempts=1)),
        (task(status.PROCESSING, attempts=1), task(status.PROCESSING, attempts=2)),
        (task(status.PROCESSING, attempts=1), task(status.PROCESSING, attempts=1)),  # a note
        (task(status.PROCESSING, attempts=2), task(status.COMPLETED, attempts=2)),
        (task(status.PENDING), task(status.CANCELLED)),
        (task(status.FAILED, attempts=3), task(status.PENDING, retries=1)),
    ],
)
def test_forward_steps_are_allowed(old: pb.Task, new: pb.Task) -> None:
    status.check_forward(old, new)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (task(status.PROCESSING, attempts=1), task(status.PENDING, attempts=1), "cannot go"),
        (task(status.PROCESSING, attempts=2), task(status.PROCESSING, attempts=1), "cannot go"),
        (task(status.COMPLETED, attempts=1), task(status.FAILED, attempts=1), "already completed"),
        (task(status.CANCELLED), task(status.PROCESSING, attempts=1), "already cancelled"),
        (task(status.COMPLETED, attempts=1), task(status.PENDING, retries=1), "only a failed"),
        (task(status.FAILED, attempts=1), task(status.PENDING, retries=2), "only a failed"),
    ],
)
def test_backward_steps_are_refused(old: pb.Task, new: pb.Task, says: str) -> None:
    with pytest.raises(FailedPrecondition, match=says):
        status.check_forward(old, new)


class CasStore:
    """One record with compare-and-set: the same contract as the KV bucket."""

    def __init__(self) -> None:
        self.record = task(status.PENDING)
        self.revision = 1
        self.history = [status.progress(self.record)]

    def write(self, proposal: pb.Task, *, read_revision: int) -> bool:
        if read_revision != self.revision:
            return False
        status.check_forward(self.record, proposal)
        self.record, self.revision = proposal, self.revision + 1
        self.history.append(status.progress(proposal))
        return True


# What a writer may try: start an attempt, note an error, finish, cancel, retry.
ACTIONS = ("start", "note", "complete", "fail", "cancel", "retry")


def propose(action: str, current: pb.Task) -> pb.Task:
    nxt = pb.Task()
    nxt.CopyFrom(current)
    if action == "start":
        nxt.status, nxt.attempts = status.PROCESSING, nxt.attempts + 1
    elif action == "note":
        nxt.error.message = "transient"
    elif action == "complete":
        nxt.status = status.COMPLETED
    elif action == "fail":
        nxt.status = status.FAILED
    elif action == "cancel":
        nxt.status = status.CANCELLED
    else:
        nxt.status, nxt.retries, nxt.attempts = status.PENDING, nxt.retries + 1, 0
    return nxt


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(ACTIONS), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_interleaved_writers_never_move_a_task_backwards(
    steps: list[tuple[int, str, bool]],
) -> None:
    """Four writers read, decide and write in any interleaving; stale writes must lose."""
    store = CasStore()
    reads: dict[int, tuple[pb.Task, int]] = {}
    for writer, action, reread in steps:
        if reread or writer not in reads:
            reads[writer] = (store.record, store.revision)
        seen, revision = reads.pop(writer)
        with contextlib.suppress(FailedPrecondition):
            store.write(propose(action, seen), read_revision=revision)
    assert store.history == sorted(store.history)
    finished_at = [i for i, p in enumerate(store.history) if p[1] == 2]
    for i in finished_at:
        # After a finish, only a Retry (a new round) changes the record.
        if i + 1 < len(store.history):
            assert store.history[i + 1][0] == store.history[i][0] + 1
