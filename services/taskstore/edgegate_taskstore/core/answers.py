"""A person's answer to a task no model runs: what it may hold, and the finish it makes.

The assistant files an escalation when it cannot answer, for a model no
replica serves; such a task waits, pending, until a person answers it.
The answer then takes the path a worker's result takes (the record
completed by compare-and-set, its event published once), so every door
that delivers results delivers it unchanged. Pure rules here; `api.py`
does the reading, the inspection and the writing.
"""

from __future__ import annotations

from edgegate_common.errors import FailedPrecondition, InvalidArgument
from edgegate_common.tasks import ESCALATION_MODEL
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.core import status

MAX_ANSWER_TEXT_BYTES = 64 * 1024
# Who answered, in the result's metadata: no Backend value names a person.
ANSWERED_BY = "answered_by"


def answer_parts(answer: env.Reply) -> list[env.Part]:
    """The answer's parts if a person's answer may be them; INVALID_ARGUMENT says why not.

    Text only: a person writes words, and the chat platforms that deliver an
    escalation's answer carry nothing else.
    """
    parts = list(answer.parts)
    if any(p.WhichOneof("content") != "text" for p in parts):
        raise InvalidArgument("an answer holds text parts only", details={"field": "answer"})
    if not any(p.text.strip() for p in parts):
        raise InvalidArgument("the answer has no text", details={"field": "answer"})
    text_bytes = sum(len(p.text.encode()) for p in parts)
    if text_bytes > MAX_ANSWER_TEXT_BYTES:
        raise InvalidArgument(
            f"the answer's text is {text_bytes} bytes; at most {MAX_ANSWER_TEXT_BYTES}",
            details={"field": "answer"},
        )
    return parts


def check_pending(task: pb.Task) -> None:
    """FAILED_PRECONDITION unless `task` is an escalation that still waits for its answer.

    Only an escalation: a task some model will run must get that model's answer, never
    words a person typed and the caller would take for the model's output.
    """
    if task.envelope.route.model != ESCALATION_MODEL:
        raise FailedPrecondition(
            f"task {task.id} is for model {task.envelope.route.model!r}: a person answers only "
            f"escalations ({ESCALATION_MODEL})"
        )
    if task.status == status.PENDING:
        return
    if task.status == status.COMPLETED:
        raise FailedPrecondition(f"task {task.id} was answered already")
    raise FailedPrecondition(
        f"task {task.id} is {status.name(task.status)}; only a pending task can be answered"
    )


def answered(record: pb.Task, parts: list[env.Part], *, by: str) -> pb.Task:
    """`record` (pending) completed with `parts` as its result, answered by `by`."""
    check_pending(record)
    record.status = status.COMPLETED
    record.ClearField("error")
    record.model = record.envelope.route.model
    result = record.result
    result.Clear()
    result.envelope_id, result.task_id = record.envelope.id, record.id
    result.parts.extend(parts)
    result.backend = env.BACKEND_LOCAL  # answered on the premises, not by the cloud
    result.model = record.envelope.route.model
    result.metadata[ANSWERED_BY] = by
    result.created_at.GetCurrentTime()
    return record
