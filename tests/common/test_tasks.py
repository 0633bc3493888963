"""`edgegate_common.tasks`: the one rule the taskstore and the gateway's outbox share."""

from __future__ import annotations

import pytest

from edgegate_common import subjects
from edgegate_common.errors import InvalidArgument
from edgegate_common.tasks import MAX_ENVELOPE_BYTES, check_envelope, new_task
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb


def _envelope(
    text: str = "later please", *, model: str = "toy_text", key: str = ""
) -> env.Envelope:
    envelope = env.Envelope(id="e-1", route=env.RouteHint(model=model), idempotency_key=key)
    envelope.parts.add(text=text)
    return envelope


def test_an_envelope_with_parts_and_a_model_is_a_task() -> None:
    check_envelope(_envelope())
    check_envelope(_envelope(key="k" * subjects.MAX_IDEMPOTENCY_KEY))


@pytest.mark.parametrize(
    ("envelope", "says"),
    [
        (env.Envelope(route=env.RouteHint(model="toy_text")), "no parts"),
        (_envelope(model=""), "needs a model"),
        (_envelope(key="k" * (subjects.MAX_IDEMPOTENCY_KEY + 1)), "idempotency_key is longer"),
        (_envelope("x" * MAX_ENVELOPE_BYTES), f"tasks take at most {MAX_ENVELOPE_BYTES}"),
    ],
    ids=["no-parts", "no-model", "long-key", "too-big"],
)
def test_what_no_task_may_be_is_invalid_argument(envelope: env.Envelope, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        check_envelope(envelope)


def test_the_size_limit_is_the_callers_when_given() -> None:
    envelope = _envelope("x" * 100)
    check_envelope(envelope, max_bytes=envelope.ByteSize())
    with pytest.raises(InvalidArgument, match=f"at most {envelope.ByteSize() - 1}"):
        check_envelope(envelope, max_bytes=envelope.ByteSize() - 1)


def test_a_new_task_is_pending_for_the_tenants_user_with_the_envelope() -> None:
    envelope = _envelope(key="once")
    envelope.priority = env.PRIORITY_HIGH
    task = new_task(envelope, tenant="acme", user="alice")
    assert (task.tenant, task.user, task.status) == ("acme", "alice", tpb.TASK_STATUS_PENDING)
    assert task.priority == env.PRIORITY_HIGH
    assert task.id == subjects.task_id("acme", "alice", "once")
    assert (task.envelope.tenant, task.envelope.user) == ("acme", "alice")
    assert task.envelope.parts[0].text == "later please" and task.envelope.id == "e-1"
    assert task.created_at == task.updated_at == task.envelope.received_at
    assert task.created_at.seconds > 0
    assert not envelope.tenant, "the caller's envelope is left as it was"


def test_the_same_key_names_the_same_task_and_no_key_a_task_per_envelope() -> None:
    keyed = [new_task(_envelope(key="k"), tenant="acme", user="alice") for _ in range(2)]
    assert keyed[0].id == keyed[1].id
    assert new_task(_envelope(key="k"), tenant="acme", user="bob").id != keyed[0].id
    # No key: the envelope's id is the basis (a resend of the same envelope is the same task).
    assert new_task(_envelope(), tenant="acme", user="alice").id == subjects.task_id(
        "acme", "alice", "e-1"
    )


def test_an_envelope_without_id_or_arrival_takes_the_tasks() -> None:
    envelope = _envelope()
    envelope.ClearField("id")
    envelope.received_at.FromSeconds(1_700_000_000)
    task = new_task(envelope, tenant="acme", user="alice")
    assert task.envelope.id == task.id
    assert task.envelope.received_at.seconds == 1_700_000_000, "its own arrival is kept"
    assert new_task(_envelope(), tenant="acme", user="alice").priority == env.PRIORITY_NORMAL
