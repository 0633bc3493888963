"""A person answers a task no model runs: the escalation inbox's one write.

Real processes: nats-server, security (PII masking on), one taskstore
replica with its workers, and no inference at all, so an escalation task
stays pending until someone answers it, as in production.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import grpc
import nats.js.errors
import pytest
from support.suite_stack import (
    OTHER_TENANT,
    TENANT,
    Stack,
    bearer,
    start_stack,
    text_envelope,
)
from support.waiting import eventually

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import PermissionDenied
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ESCALATION = "edgegate-escalation"
EMAIL = "li.lei@example.com"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("answer"), inference=False, pii=True)
    yield running
    running.stop()


def _user() -> str:
    """A user of the test's own: its events subject holds this test's events only."""
    return f"asker-{uuid.uuid4().hex[:8]}"


def _reply(*texts: str) -> env.Reply:
    reply = env.Reply()
    for text in texts:
        reply.parts.add(text=text)
    return reply


def _json_reply() -> env.Reply:
    reply = _reply("see the data")
    reply.parts.add().json.update({"parcel": "in transit"})
    return reply


async def _escalate(stack: Stack, user: str, question: str = "where is my parcel?") -> pb.Task:
    """A pending task as the assistant files one: the user's question, for nobody's model."""
    envelope = text_envelope(question, model=ESCALATION, priority=env.PRIORITY_HIGH)
    async with stack.stub() as stub:
        task = await stub.Submit(
            pb.SubmitRequest(envelope=envelope), metadata=bearer(stack.token(sub=user))
        )
    assert task.status == pb.TASK_STATUS_PENDING
    return task


async def _answer(stack: Stack, task_id: str, answer: env.Reply, token: str) -> pb.Task:
    async with stack.stub() as stub:
        return await stub.Answer(
            pb.AnswerRequest(id=task_id, answer=answer), metadata=bearer(token)
        )


async def _refusal(stack: Stack, task_id: str, answer: env.Reply, token: str) -> grpc.RpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _answer(stack, task_id, answer, token)
    return refused.value


async def _get(stack: Stack, task_id: str, user: str) -> pb.Task:
    async with stack.stub() as stub:
        return await stub.Get(pb.GetRequest(id=task_id), metadata=bearer(stack.token(sub=user)))


async def _stored_events(bus: Bus, user: str) -> int:
    """How many finish events the events stream keeps for `user` (what deliverers read)."""
    subject = subjects.taskstore_events(TENANT, user)
    info = await bus.js.stream_info(subjects.STREAM_TASK_EVENTS, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def _queued_ids(bus: Bus) -> set[str]:
    """The task ids of every message still in the work queue (read by sequence, unconsumed)."""
    info = await bus.js.stream_info(subjects.STREAM_TASKS)
    ids = set()
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await bus.js.get_msg(subjects.STREAM_TASKS, seq)
        except nats.js.errors.NotFoundError:
            continue  # acknowledged and gone
        ids.add(pb.Task.FromString(message.data or b"").id)
    return ids


async def test_an_answer_completes_the_task_reports_it_once_and_drops_its_queue_message(
    stack: Stack,
) -> None:
    user = _user()
    task = await _escalate(stack, user)
    admin = stack.token("admin", sub="operator")
    async with stack.bus() as bus:
        assert task.id in await _queued_ids(bus)
        answered = await _answer(stack, task.id, _reply("It left the depot today."), admin)
        assert await _stored_events(bus, user) == 1
        # The worker's next delivery finds the record finished and drops the message,
        # reporting nothing again.
        await eventually(
            lambda: _not_queued(bus, task.id), what="the answered task's queue message to go"
        )
        assert await _stored_events(bus, user) == 1
    stored = await _get(stack, task.id, user)
    assert answered.status == pb.TASK_STATUS_COMPLETED and answered.reported
    assert stored.status == pb.TASK_STATUS_COMPLETED and stored.revision == answered.revision
    assert [p.text for p in stored.result.parts] == ["It left the depot today."]
    assert stored.result.envelope_id == task.envelope.id and stored.result.task_id == task.id
    assert stored.result.model == ESCALATION and stored.model == ESCALATION
    assert stored.result.metadata["answered_by"] == "operator"
    assert stored.result.created_at.seconds > 0 and stored.attempts == 0
    again = await _refusal(stack, task.id, _reply("Once more."), admin)
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "answered already" in (again.details() or "")


async def _not_queued(bus: Bus, task_id: str) -> bool:
    return task_id not in await _queued_ids(bus)


async def test_of_two_answers_at_once_one_wins_and_one_event_goes_out(stack: Stack) -> None:
    user = _user()
    task = await _escalate(stack, user)
    admins = [stack.token("admin", sub=f"operator-{n}") for n in (1, 2)]
    texts = ["first operator's answer", "second operator's answer"]
    outcomes = await asyncio.gather(
        *(_answer(stack, task.id, _reply(t), a) for t, a in zip(texts, admins, strict=True)),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, pb.Task)]
    lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert lost[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    stored = await _get(stack, task.id, user)
    assert stored.result.parts[0].text == won[0].result.parts[0].text
    async with stack.bus() as bus:
        assert await _stored_events(bus, user) == 1


async def test_answering_needs_admin_of_the_tasks_own_tenant(stack: Stack) -> None:
    user = _user()
    task = await _escalate(stack, user)
    answer = _reply("an answer")
    not_admin = stack.token("tasks:read", "tasks:write", "infer:*", sub=user)
    denied = await _refusal(stack, task.id, answer, not_admin)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "admin" in (denied.details() or "")
    # Another tenant's admin is refused as Get refuses it (the id belongs elsewhere).
    elsewhere = stack.token("admin", tenant=OTHER_TENANT, sub="their-operator")
    async with stack.stub() as stub:
        with pytest.raises(grpc.aio.AioRpcError) as read:
            await stub.Get(pb.GetRequest(id=task.id), metadata=bearer(elsewhere))
    other = await _refusal(stack, task.id, answer, elsewhere)
    assert other.code() == read.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "another tenant" in (other.details() or "")
    assert (await _get(stack, task.id, user)).status == pb.TASK_STATUS_PENDING


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (_reply(), "no text"),
        (_reply("", "  \n"), "no text"),
        (_reply("x" * (64 * 1024 + 1)), "at most 65536"),
        (_json_reply(), "text parts only"),
    ],
    ids=["no-parts", "blank", "too-long", "not-text"],
)
async def test_an_answer_without_usable_text_is_refused(
    stack: Stack, answer: env.Reply, says: str
) -> None:
    user = _user()
    task = await _escalate(stack, user)
    refused = await _refusal(stack, task.id, answer, stack.token("admin", sub="operator"))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in (refused.details() or "")
    assert (await _get(stack, task.id, user)).status == pb.TASK_STATUS_PENDING


async def test_only_a_pending_task_takes_an_answer(stack: Stack) -> None:
    user = _user()
    task = await _escalate(stack, user)
    async with stack.stub() as stub:
        await stub.Cancel(pb.CancelRequest(id=task.id), metadata=bearer(stack.token(sub=user)))
    refused = await _refusal(stack, task.id, _reply("late"), stack.token("admin", sub="operator"))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cancelled" in (refused.details() or "")


async def test_only_an_escalation_takes_a_persons_answer(stack: Stack) -> None:
    """A task some model will run keeps waiting for that model: no typed text poses as it."""
    user = _user()
    envelope = text_envelope("embed me", model="some-model", key=f"not-an-escalation-{user}")
    async with stack.stub() as stub:
        task = await stub.Submit(
            pb.SubmitRequest(envelope=envelope), metadata=bearer(stack.token(sub=user))
        )
    refused = await _refusal(stack, task.id, _reply("made up"), stack.token("admin", sub="op"))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "only escalations" in (refused.details() or "")
    assert (await _get(stack, task.id, user)).status == pb.TASK_STATUS_PENDING


async def test_the_answer_passes_output_inspection_so_pii_is_masked(stack: Stack) -> None:
    user = _user()
    task = await _escalate(stack, user, question="who handles refunds?")
    admin = stack.token("admin", sub="operator")
    answered = await _answer(stack, task.id, _reply(f"write to {EMAIL}"), admin)
    (part,) = (await _get(stack, task.id, user)).result.parts
    assert EMAIL not in part.text and part.text.startswith("write to ")
    assert answered.result.parts[0].text == part.text


async def test_list_keeps_one_models_tasks(stack: Stack) -> None:
    user = _user()
    escalated = await _escalate(stack, user)
    async with stack.stub() as stub:
        token = stack.token(sub=user)
        ordinary = await stub.Submit(
            pb.SubmitRequest(envelope=text_envelope("run me")), metadata=bearer(token)
        )
        only = await stub.List(pb.ListRequest(model=ESCALATION), metadata=bearer(token))
        every = await stub.List(pb.ListRequest(), metadata=bearer(token))
    assert [t.id for t in only.tasks] == [escalated.id]
    assert {t.id for t in every.tasks} == {escalated.id, ordinary.id}


async def test_the_gateways_client_lists_and_answers_escalations_over_nats(stack: Stack) -> None:
    user = _user()
    task = await _escalate(stack, user)
    admin = stack.token("admin", sub="operator")
    async with stack.bus() as bus:
        client = TaskstoreClient(bus, timeout_s=10)
        inbox = await client.list(
            pb.ListRequest(model=ESCALATION, statuses=[pb.TASK_STATUS_PENDING]), credential=admin
        )
        assert task.id in [t.id for t in inbox.tasks]
        assert all(t.envelope.route.model == ESCALATION for t in inbox.tasks)
        answered = await client.answer(task.id, _reply("Answered by a person."), credential=admin)
        with pytest.raises(PermissionDenied):
            await client.answer(
                task.id, _reply("again"), credential=stack.token("tasks:write", sub=user)
            )
        inbox = await client.list(
            pb.ListRequest(model=ESCALATION, statuses=[pb.TASK_STATUS_PENDING]), credential=admin
        )
    assert answered.status == pb.TASK_STATUS_COMPLETED
    assert task.id not in [t.id for t in inbox.tasks]
