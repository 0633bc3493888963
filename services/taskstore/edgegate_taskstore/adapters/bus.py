"""The taskstore on NATS: the same calls as gRPC, one subject each.

Every replica joins the `taskstore` queue group. The caller's token travels
in the `Authorization` header. Watch has no request/reply form: NATS
subscribers follow `edgegate.taskstore.v1.events.<tenant>.<user>` (or the
stream that keeps those events) instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message

from edgegate_common import subjects
from edgegate_common.bus import Bus, RequestContext
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.api import TaskStoreApi

AUTHORIZATION = "Authorization"

Call = Callable[..., Awaitable[Message]]


async def serve(bus: Bus, api: TaskStoreApi) -> None:
    calls: list[tuple[str, type[Message], Call]] = [
        (subjects.TASKSTORE_SUBMIT, pb.SubmitRequest, api.submit),
        (subjects.TASKSTORE_GET, pb.GetRequest, api.get),
        (subjects.TASKSTORE_LIST, pb.ListRequest, api.list),
        (subjects.TASKSTORE_CANCEL, pb.CancelRequest, api.cancel),
        (subjects.TASKSTORE_RETRY, pb.RetryRequest, api.retry),
        (subjects.TASKSTORE_ANSWER, pb.AnswerRequest, api.answer),
        (subjects.TASKSTORE_MERGE_STATE, pb.MergeStateRequest, api.merge_state),
        (subjects.TASKSTORE_GET_STATE, pb.GetStateRequest, api.get_state),
    ]
    queue = subjects.queue_group("taskstore")
    for subject, request_type, call in calls:
        await bus.serve(subject, request_type, _handler(call), queue=queue)


def _handler(call: Call) -> Callable[[Any, RequestContext], Awaitable[Message]]:
    async def handle(request: Message, ctx: RequestContext) -> Message:
        return await call(request, credential=ctx.headers.get(AUTHORIZATION, ""))

    return handle
