"""`edgegate.taskstore.v1.TaskStore` in protobuf terms, for both transports.

Each call takes the request and the caller's credential; the gatekeeper
turns the credential into a principal allowed the call's action
(`tasks:write` to submit, cancel, retry and merge; `tasks:read` to read;
`admin` to answer a task in a person's name).
The tenant always comes from the principal, never from the request; a
principal sees its own user's tasks, and an `admin` those of every user of
its tenant. gRPC (`servicer.py`) and NATS (`adapters/bus.py`) only move
bytes to and from here.

Whatever can make a worker run a model needs what the gateway needs for it,
whichever door the call came in by: Submit has security admit the envelope
(`infer:<model>`, inspection, PII masking) and stores the parts as admitted,
with the principal in `admitted_by`; Retry needs `infer:<model>` too. An
answer handed in with Submit is kept only as output inspection lets it out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

from edgegate_common import tasks
from edgegate_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.adapters.gatekeeper import Admitted, Gatekeeper
from edgegate_taskstore.adapters.queue import WorkQueue
from edgegate_taskstore.adapters.records import TaskRecords
from edgegate_taskstore.core import answers, status
from edgegate_taskstore.events import report
from edgegate_taskstore.sessions import SessionStates

READ = "tasks:read"
WRITE = "tasks:write"
ADMIN = "admin"
INFER = "infer:"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
# What a List reply may hold besides its tasks (the page token) and its transport's headers.
PAGE_HEADROOM_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_envelope_bytes: int = tasks.MAX_ENVELOPE_BYTES
    # A List reply stops growing here: NATS's max payload (and gRPC's 4 MiB default), less
    # headroom. A page always holds at least one task, whatever its size (records are
    # kept below NATS's max payload).
    max_page_bytes: int = 1024 * 1024 - PAGE_HEADROOM_BYTES


class TaskStoreApi:
    def __init__(
        self,
        *,
        gatekeeper: Gatekeeper,
        records: TaskRecords,
        queue: WorkQueue,
        sessions: SessionStates,
        limits: Limits,
    ) -> None:
        self._gatekeeper = gatekeeper
        self._records = records
        self._queue = queue
        self._sessions = sessions
        self._limits = limits

    async def submit(self, request: pb.SubmitRequest, *, credential: str) -> pb.Task:
        await self._gatekeeper.admit(credential, action=WRITE)
        self._check(request.envelope)  # before the envelope travels to security
        admitted = await self._gatekeeper.admit_envelope(credential, request.envelope)
        task = self._new_task(request.envelope, admitted)
        if request.HasField("answer"):
            return await self._answered(task, request.answer)
        # Queue first, record second: a record never exists without its queue
        # message. A repeat is dropped by the queue inside its duplicate window,
        # and by the workers after it (the round is claimed or finished); a
        # queue message whose record never came (the record write failed) is
        # dropped by the workers after a few deliveries.
        await self._queue.enqueue(task)
        stored, _ = await self._records.create(task)
        return stored

    async def _answered(self, task: pb.Task, answer: env.Reply) -> pb.Task:
        """Keep work the caller already answered: a completed task, its event published.

        It never enters the work queue. Its answer is kept as security's output
        inspection lets it out, as the gateway would answer it. A repeat (same
        key) finds the stored record and only finishes reporting it if the
        first Submit was cut off before its event was stored; the event is
        never published twice.
        """
        if answer.HasField("error") and answer.error.code:
            raise InvalidArgument("an answered task carries a result, not an error")
        if answer.ByteSize() > self._limits.max_envelope_bytes:
            raise InvalidArgument(  # a limit no retry passes: not RESOURCE_EXHAUSTED
                f"the answer is {answer.ByteSize()} bytes; tasks keep at most "
                f"{self._limits.max_envelope_bytes}"
            )
        parts = await self._gatekeeper.inspect_output(task.admitted_by, list(answer.parts))
        task.status = status.COMPLETED
        task.result.CopyFrom(answer)
        del task.result.parts[:]
        task.result.parts.extend(parts)
        task.result.envelope_id, task.result.task_id = task.envelope.id, task.id
        task.model = f"{answer.model}/{answer.version}" if answer.version else answer.model
        stored, _ = await self._records.create(task)
        return await report(stored, queue=self._queue, records=self._records)

    def _check(self, envelope: env.Envelope) -> None:
        """What makes an envelope no task at all, refused before anyone inspects it."""
        tasks.check_envelope(envelope, max_bytes=self._limits.max_envelope_bytes)

    def _new_task(self, envelope: env.Envelope, admitted: Admitted) -> pb.Task:
        """The pending task for `envelope` as security admitted it (its parts masked)."""
        principal = admitted.principal
        if envelope.tenant and envelope.tenant != principal.tenant:
            raise PermissionDenied(f"the caller belongs to tenant {principal.tenant!r}")
        user = envelope.user or principal.subject
        if not user:
            raise InvalidArgument("the task has no user: the token names no subject")
        _check_user(principal, user)
        task = tasks.new_task(envelope, tenant=principal.tenant, user=user)
        del task.envelope.parts[:]
        task.envelope.parts.extend(admitted.parts)
        self._check(task.envelope)  # masking may have changed its size
        task.admitted_by.CopyFrom(principal)
        return task

    async def get(self, request: pb.GetRequest, *, credential: str) -> pb.Task:
        principal = await self._gatekeeper.admit(credential, action=READ)
        return await self._own(principal, request.id)

    async def list(self, request: pb.ListRequest, *, credential: str) -> pb.ListResponse:
        principal = await self._gatekeeper.admit(credential, action=READ)
        user = request.user or ("" if _is_admin(principal) else principal.subject)
        if user:
            _check_user(principal, user)
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be between 0 and {MAX_PAGE_SIZE}")
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        after = max(request.after_revision, _page_start(request.page_token))
        since = _since(request)
        wanted = set(request.statuses)
        response = pb.ListResponse()
        page_bytes = 0
        async for task in self._records.scan(principal.tenant, after_revision=after, since=since):
            if task.tenant != principal.tenant or (user and task.user != user):
                continue
            if wanted and task.status not in wanted:
                continue
            if request.model and task.envelope.route.model != request.model:
                continue
            if since is not None and task.updated_at.ToDatetime() < since:
                continue
            task_bytes = _field_bytes(task.ByteSize())
            if response.tasks and page_bytes + task_bytes > self._limits.max_page_bytes:
                # Full by size: the next page starts after the last task sent.
                response.next_page_token = str(response.tasks[-1].revision)
                break
            response.tasks.append(task)
            page_bytes += task_bytes
            if len(response.tasks) == page_size:
                response.next_page_token = str(task.revision)
                break
        return response

    async def watch(self, request: pb.WatchRequest, *, credential: str) -> AsyncIterator[pb.Task]:
        principal = await self._gatekeeper.admit(credential, action=READ)
        user = request.user or ("" if _is_admin(principal) else principal.subject)
        if user:
            _check_user(principal, user)
        async for task in self._records.watch(
            principal.tenant, after_revision=request.after_revision
        ):
            if task.tenant == principal.tenant and (not user or task.user == user):
                yield task

    async def cancel(self, request: pb.CancelRequest, *, credential: str) -> pb.Task:
        principal = await self._gatekeeper.admit(credential, action=WRITE)
        task = await self._own(principal, request.id)

        def cancel(record: pb.Task) -> pb.Task:
            if record.status in status.FINISHED:
                raise FailedPrecondition(
                    f"task {record.id} is already {status.name(record.status)}"
                )
            record.status = status.CANCELLED
            return record

        cancelled = await self._records.change(task.tenant, task.id, cancel)
        return await report(cancelled, queue=self._queue, records=self._records)

    async def retry(self, request: pb.RetryRequest, *, credential: str) -> pb.Task:
        principal = await self._gatekeeper.admit(credential, action=WRITE)
        task = await self._own(principal, request.id)
        # Retry runs the model again: the caller must be allowed to run it now.
        await self._gatekeeper.admit(credential, action=f"{INFER}{task.envelope.route.model}")
        if task.status == status.PENDING:
            # Queue it (again): finishes a Retry or Submit cut off between its two writes.
            await self._queue.enqueue(task)
            return task
        dead_seq = await self._queue.dead_letter_seq(task)
        if task.status != status.FAILED or dead_seq is None:
            raise FailedPrecondition(
                f"task {task.id} is {status.name(task.status)}, not in dead-letter; "
                "only failed tasks can be retried"
            )

        def again(record: pb.Task) -> pb.Task:
            record.status = status.PENDING
            record.retries = task.retries + 1
            record.attempts = 0
            record.reported = False
            record.claim = 0
            record.ClearField("error")
            return record

        # As in Submit: the new round's queue message first, then the record.
        await self._queue.enqueue(again(_copy(task)))
        retried = await self._records.change(task.tenant, task.id, again)
        # Only the entry this Retry took back: the new round may already have failed again.
        await self._queue.leave_dead_letter(retried, up_to_seq=dead_seq)
        return retried

    async def answer(self, request: pb.AnswerRequest, *, credential: str) -> pb.Task:
        """Complete a pending task with a person's answer, reported as a worker reports.

        The answer is inspected as a model's output would be, for the principal
        the task was admitted for (so PII is masked for its user). The
        compare-and-set from pending makes one of two racing answers (or a
        worker's start) win. The task's queue message stays: the next delivery
        finds the record finished and drops it (reporting it, had this call
        been cut off before its event was stored), as after a Cancel.
        """
        principal = await self._gatekeeper.admit(credential, action=ADMIN)
        task = await self._own(principal, request.id)  # another tenant learns nothing more
        parts = answers.answer_parts(request.answer)
        answers.check_pending(task)  # before security is asked to inspect anything
        inspected_for = task.admitted_by if task.HasField("admitted_by") else principal
        parts = await self._gatekeeper.inspect_output(inspected_for, parts)

        def answer(record: pb.Task) -> pb.Task:
            return answers.answered(record, parts, by=principal.subject)

        completed = await self._records.change(task.tenant, task.id, answer)
        return await report(completed, queue=self._queue, records=self._records)

    async def merge_state(
        self, request: pb.MergeStateRequest, *, credential: str
    ) -> pb.SessionState:
        principal = await self._gatekeeper.admit(credential, action=WRITE)
        return await self._sessions.merge(principal.tenant, principal.subject, request.state)

    async def get_state(self, request: pb.GetStateRequest, *, credential: str) -> pb.SessionState:
        principal = await self._gatekeeper.admit(credential, action=READ)
        return await self._sessions.get(principal.tenant, principal.subject, request.conversation)

    async def _own(self, principal: principal_pb2.Principal, task_id: str) -> pb.Task:
        """The task if the principal may see it: NOT_FOUND or PERMISSION_DENIED otherwise."""
        if not _is_task_id(task_id):
            raise InvalidArgument(f"{task_id!r} is not a task id", details={"field": "id"})
        try:
            task = await self._records.get(principal.tenant, task_id)
        except NotFound:
            if await self._records.exists_elsewhere(task_id):
                raise PermissionDenied(f"task {task_id} belongs to another tenant") from None
            raise
        if task.tenant != principal.tenant:
            raise PermissionDenied(f"task {task_id} belongs to another tenant")
        _check_user(principal, task.user)
        return task


def _field_bytes(size: int) -> int:
    """What a message of `size` bytes adds to a repeated field: tag, length, body."""
    length = 1
    while size >= 0x80 << (7 * (length - 1)):
        length += 1
    return 1 + length + size


def _copy(task: pb.Task) -> pb.Task:
    copy = pb.Task()
    copy.CopyFrom(task)
    return copy


def _is_task_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def _is_admin(principal: principal_pb2.Principal) -> bool:
    return ADMIN in principal.scopes


def _check_user(principal: principal_pb2.Principal, user: str) -> None:
    if user != principal.subject and not _is_admin(principal):
        raise PermissionDenied(
            f"{principal.subject} may only act on their own tasks; {user}'s need admin"
        )


def _page_start(token: str) -> int:
    if not token:
        return 0
    if not (token.isascii() and token.isdigit() and len(token) <= 20):
        raise InvalidArgument("page_token is not one this service gave out")
    return int(token)


def _since(request: pb.ListRequest) -> dt.datetime | None:
    if not request.HasField("updated_since"):
        return None
    try:
        return request.updated_since.ToDatetime()
    except (ValueError, OverflowError):
        raise InvalidArgument("updated_since is not a valid time") from None
