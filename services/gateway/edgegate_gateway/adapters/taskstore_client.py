"""The taskstore, as the gateway calls it: NATS request-reply on the caller's behalf.

Every call carries the caller's own token, so the taskstore admits it as
that caller: the gateway can store, read or list no task the caller could
not (`edgegate_common.bus.calls`).
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.bus.calls import call_service
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

Rep = TypeVar("Rep", bound=Message)


class TaskstoreClient:
    def __init__(self, bus: Bus, *, timeout_s: float) -> None:
        """`timeout_s` covers a call whole: the taskstore's work and its own call to security."""
        self._bus = bus
        self._timeout_s = timeout_s

    async def submit(
        self, envelope: env.Envelope, *, credential: str, answer: env.Reply | None = None
    ) -> tpb.Task:
        """Store an admitted envelope: a task to run later, or, with `answer`, one answered
        already, kept as completed (its result event published).

        The same idempotency key names the same task, so a repeat stores nothing twice.
        """
        return await self._call(
            subjects.TASKSTORE_SUBMIT,
            tpb.SubmitRequest(envelope=envelope, answer=answer),
            tpb.Task,
            credential=credential,
        )

    async def get(self, task_id: str, *, credential: str) -> tpb.Task:
        return await self._call(
            subjects.TASKSTORE_GET, tpb.GetRequest(id=task_id), tpb.Task, credential=credential
        )

    async def cancel(self, task_id: str, *, credential: str) -> tpb.Task:
        return await self._call(
            subjects.TASKSTORE_CANCEL,
            tpb.CancelRequest(id=task_id),
            tpb.Task,
            credential=credential,
        )

    async def retry(self, task_id: str, *, credential: str) -> tpb.Task:
        """Take a failed task back from dead-letter and run it again."""
        return await self._call(
            subjects.TASKSTORE_RETRY, tpb.RetryRequest(id=task_id), tpb.Task, credential=credential
        )

    async def list(self, listing: tpb.ListRequest, *, credential: str) -> tpb.ListResponse:
        """A page of the caller's tenant's tasks; `listing.model` keeps one model's (say
        the assistant's escalations, for the console's inbox)."""
        return await self._call(
            subjects.TASKSTORE_LIST, listing, tpb.ListResponse, credential=credential
        )

    async def answer(self, task_id: str, answer: env.Reply, *, credential: str) -> tpb.Task:
        """A person's answer to a pending task no model runs (an escalation): the caller
        needs `admin` in the task's tenant. The task comes back completed, and its result
        reaches the user through the usual result event, once."""
        return await self._call(
            subjects.TASKSTORE_ANSWER,
            tpb.AnswerRequest(id=task_id, answer=answer),
            tpb.Task,
            credential=credential,
        )

    async def _call(
        self, subject: str, request: Message, reply_type: type[Rep], *, credential: str
    ) -> Rep:
        return await call_service(
            self._bus,
            subject,
            request,
            reply_type,
            service="taskstore",
            timeout_s=self._timeout_s,
            credential=credential,
        )
