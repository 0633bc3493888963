"""What makes an envelope a task, in one place for the taskstore and the gateway.

The taskstore stores tasks; the gateway's disk outbox accepts messages while
NATS is away and promises the caller the task each will become. The promise
holds only if both refuse the same envelopes and derive the same task from
one, so the rule and the size limit live here, once: `check_envelope` says
what no task may be, `new_task` builds the pending task that keeps an
envelope for a tenant's user.
"""

from __future__ import annotations

from edgegate_common import subjects
from edgegate_common.errors import InvalidArgument
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

# The model of a task that waits for a person: the assistant's question nobody could
# answer. No replica serves it; the taskstore's Answer completes such a task, and only such.
ESCALATION_MODEL = "edgegate-escalation"
# The largest envelope a task keeps (the taskstore's default; it may be configured lower).
MAX_ENVELOPE_BYTES = 256 * 1024


def check_envelope(envelope: env.Envelope, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> None:
    """INVALID_ARGUMENT for what makes an envelope no task at all.

    A task needs parts, a model and an idempotency key of at most
    `subjects.MAX_IDEMPOTENCY_KEY` characters, within `max_bytes`. These are
    limits no retry passes, so none of them is RESOURCE_EXHAUSTED.
    """
    if not envelope.parts:
        raise InvalidArgument("the envelope has no parts", details={"field": "envelope.parts"})
    if not envelope.route.model:
        raise InvalidArgument(
            "a task needs a model (envelope.route.model)", details={"field": "envelope.route"}
        )
    if len(envelope.idempotency_key) > subjects.MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument(f"idempotency_key is longer than {subjects.MAX_IDEMPOTENCY_KEY}")
    size = envelope.ByteSize()
    if size > max_bytes:
        raise InvalidArgument(f"the envelope is {size} bytes; tasks take at most {max_bytes}")


def new_task(envelope: env.Envelope, *, tenant: str, user: str) -> tpb.Task:
    """The pending task that keeps `envelope` for `user` of `tenant`, created now.

    Its id comes from (tenant, user, idempotency key) — or the envelope's id
    when it has no key — so the same message always names the same task.
    The task's copy of the envelope carries the tenant and user, and the
    task's id and creation time where the envelope has none of its own.
    """
    task = tpb.Task(
        id=subjects.task_id(tenant, user, envelope.idempotency_key or envelope.id),
        tenant=tenant,
        user=user,
        status=tpb.TASK_STATUS_PENDING,
        priority=envelope.priority or env.PRIORITY_NORMAL,
    )
    task.envelope.CopyFrom(envelope)
    task.envelope.tenant, task.envelope.user = tenant, user
    if not task.envelope.id:
        task.envelope.id = task.id
    task.created_at.GetCurrentTime()
    task.updated_at.CopyFrom(task.created_at)
    if not task.envelope.HasField("received_at"):
        task.envelope.received_at.CopyFrom(task.created_at)
    return task
