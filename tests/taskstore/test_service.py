"""The taskstore end to end: real nats-server, security, inference and taskstore processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.harness import raw_request
from support.suite_stack import (
    OTHER_TENANT,
    TENANT,
    Stack,
    bearer,
    eventually,
    finished,
    start_stack,
    text_envelope,
)

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import (
    EdgegateError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("taskstore"))
    yield running
    running.stop()


async def _wait_finished(stack: Stack, token: str, task_id: str) -> pb.Task:
    async with stack.stub() as stub:

        async def check() -> pb.Task | None:
            task = await stub.Get(pb.GetRequest(id=task_id), metadata=bearer(token))
            return task if finished(task) else None

        return await eventually(check, what=f"task {task_id} to finish")


async def test_a_submitted_task_completes_and_its_event_matches_the_record(stack: Stack) -> None:
    token = stack.token()
    async with stack.bus() as bus:
        events: asyncio.Queue[pb.Task] = asyncio.Queue()

        async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
            await events.put(pb.Task.FromString(msg.data))

        await bus.subscribe(subjects.taskstore_events(TENANT, "alice"), cb=on_event)
        await bus.flush()
        async with stack.stub() as stub:
            task = await stub.Submit(
                pb.SubmitRequest(envelope=text_envelope("hello there")), metadata=bearer(token)
            )
            assert task.status == pb.TASK_STATUS_PENDING
            assert (task.tenant, task.user) == (TENANT, "alice")
            event = await asyncio.wait_for(events.get(), timeout=20)

            async def reported() -> pb.Task | None:  # the record notes it after publishing
                stored = await stub.Get(pb.GetRequest(id=task.id), metadata=bearer(token))
                return stored if stored.reported else None

            stored = await eventually(reported, what="the record to note its event")
    assert event.id == task.id
    # The event is the finished record; the record's last write only noted it reported.
    assert event.revision < stored.revision and stored.reported and event.reported
    assert _content(event) == _content(stored)
    assert stored.status == pb.TASK_STATUS_COMPLETED
    assert stored.attempts == 1
    assert stored.model == "toy_text/1"
    assert stored.result.task_id == task.id
    (part,) = stored.result.parts
    assert part.tensor.datatype == "FP32" and part.tensor.raw_data


def _content(task: pb.Task) -> pb.Task:
    copy = pb.Task()
    copy.CopyFrom(task)
    copy.ClearField("revision")
    copy.ClearField("updated_at")
    return copy


async def test_the_same_idempotency_key_is_one_task_run_once(stack: Stack) -> None:
    token = stack.token()
    async with stack.stub() as stub:
        request = pb.SubmitRequest(envelope=text_envelope("once only", key="order-42"))
        first, second = await asyncio.gather(
            stub.Submit(request, metadata=bearer(token)),
            stub.Submit(request, metadata=bearer(token)),
        )
        assert first.id == second.id
        done = await _wait_finished(stack, token, first.id)
        third = await stub.Submit(request, metadata=bearer(token))
    assert done.status == pb.TASK_STATUS_COMPLETED and done.attempts == 1
    assert third.id == first.id and third.revision == done.revision


async def test_an_answered_submission_is_kept_completed_and_reported_once(stack: Stack) -> None:
    token = stack.token()
    answer = env.Reply(backend=env.BACKEND_LOCAL, model="edgegate-assistant")
    answer.parts.add(text="the answer")
    request = pb.SubmitRequest(envelope=text_envelope("a question", key="asked-1"), answer=answer)
    async with stack.bus() as bus:
        events: list[pb.Task] = []

        async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
            events.append(pb.Task.FromString(msg.data))

        await bus.subscribe(subjects.taskstore_events(TENANT, "alice"), cb=on_event)
        await bus.flush()
        async with stack.stub() as stub:
            first = await stub.Submit(request, metadata=bearer(token))
            again = await stub.Submit(request, metadata=bearer(token))
            await eventually(
                lambda: [e for e in events if e.id == first.id], what="the answered task's event"
            )
            failed = pb.SubmitRequest(envelope=text_envelope("q", key="asked-2"))
            failed.answer.error.code = env.ERROR_CODE_INTERNAL
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Submit(failed, metadata=bearer(token))
    assert first.status == pb.TASK_STATUS_COMPLETED and first.reported and first.attempts == 0
    assert first.result.parts[0].text == "the answer" and first.result.task_id == first.id
    assert first.model == "edgegate-assistant"
    assert again.id == first.id and again.revision == first.revision
    assert [e.id for e in events if e.id == first.id] == [first.id]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_same_task_over_nats(stack: Stack) -> None:
    token = stack.token()
    headers = {"Authorization": f"Bearer {token}"}
    async with stack.bus() as bus:
        task = await bus.request(
            subjects.TASKSTORE_SUBMIT,
            pb.SubmitRequest(envelope=text_envelope("over nats")),
            pb.Task,
            headers=headers,
        )

        async def check() -> pb.Task | None:
            got = await bus.request(
                subjects.TASKSTORE_GET, pb.GetRequest(id=task.id), pb.Task, headers=headers
            )
            return got if finished(got) else None

        done = await eventually(check)
        with pytest.raises(Unauthenticated):
            await bus.request(subjects.TASKSTORE_GET, pb.GetRequest(id=task.id), pb.Task)
        with pytest.raises(InvalidArgument):
            await bus.request(
                subjects.TASKSTORE_GET, pb.GetRequest(id="nope"), pb.Task, headers=headers
            )
        other = {"Authorization": f"Bearer {stack.token(tenant=OTHER_TENANT)}"}
        with pytest.raises(PermissionDenied):
            await bus.request(
                subjects.TASKSTORE_GET, pb.GetRequest(id=task.id), pb.Task, headers=other
            )
    assert done.status == pb.TASK_STATUS_COMPLETED


@pytest.mark.parametrize(
    ("envelope", "code", "says"),
    [
        (env.Envelope(), grpc.StatusCode.INVALID_ARGUMENT, "no parts"),
        (text_envelope("x", model=""), grpc.StatusCode.INVALID_ARGUMENT, "needs a model"),
        (text_envelope("x" * 300_000), grpc.StatusCode.INVALID_ARGUMENT, "at most"),
        (text_envelope("x", key="k" * 300), grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key"),
    ],
    ids=["no-parts", "no-model", "oversized", "long-key"],
)
async def test_bad_submissions_are_refused_clearly(
    stack: Stack, envelope: env.Envelope, code: grpc.StatusCode, says: str
) -> None:
    async with stack.stub() as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Submit(pb.SubmitRequest(envelope=envelope), metadata=bearer(stack.token()))
    assert refused.value.code() == code
    assert says in (refused.value.details() or "")


async def test_tenants_and_users_only_see_their_own(stack: Stack) -> None:
    alice, bob = stack.token(sub="alice"), stack.token(sub="bob")
    outsider = stack.token(tenant=OTHER_TENANT, sub="alice")
    admin = stack.token("admin", sub="ops")
    reader = stack.token("tasks:read", sub="alice")
    async with stack.stub() as stub:
        task = await stub.Submit(
            pb.SubmitRequest(envelope=text_envelope("mine")), metadata=bearer(alice)
        )
        for token, code in [
            (outsider, grpc.StatusCode.PERMISSION_DENIED),
            (bob, grpc.StatusCode.PERMISSION_DENIED),
            ("not-a-token", grpc.StatusCode.UNAUTHENTICATED),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Get(pb.GetRequest(id=task.id), metadata=bearer(token))
            assert refused.value.code() == code
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Get(pb.GetRequest(id="0" * 32), metadata=bearer(alice))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as read_only:
            await stub.Submit(
                pb.SubmitRequest(envelope=text_envelope("x")), metadata=bearer(reader)
            )
        assert read_only.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (await stub.Get(pb.GetRequest(id=task.id), metadata=bearer(admin))).id == task.id
        listed = await stub.List(pb.ListRequest(), metadata=bearer(alice))
        theirs = await stub.List(pb.ListRequest(), metadata=bearer(outsider))
        everyone = await stub.List(pb.ListRequest(), metadata=bearer(admin))
    assert task.id in {t.id for t in listed.tasks}
    assert {t.user for t in listed.tasks} == {"alice"}
    assert task.id not in {t.id for t in theirs.tasks}
    assert {t.tenant for t in everyone.tasks} == {TENANT}


async def test_list_pages_and_resumes_after_a_revision(stack: Stack) -> None:
    token = stack.token(sub="pager")
    async with stack.stub() as stub:
        ids = []
        for i in range(5):
            task = await stub.Submit(
                pb.SubmitRequest(envelope=text_envelope(f"page {i}")), metadata=bearer(token)
            )
            ids.append(task.id)
        for task_id in ids:
            await _wait_finished(stack, token, task_id)
        seen: list[pb.Task] = []
        page_token = ""
        while True:
            page = await stub.List(
                pb.ListRequest(page_size=2, page_token=page_token), metadata=bearer(token)
            )
            seen.extend(page.tasks)
            page_token = page.next_page_token
            if not page_token:
                break
        since = await stub.List(
            pb.ListRequest(after_revision=seen[2].revision), metadata=bearer(token)
        )
        done = await stub.List(
            pb.ListRequest(statuses=[pb.TASK_STATUS_COMPLETED]), metadata=bearer(token)
        )
    assert sorted(t.id for t in seen) == sorted(ids)
    assert [t.revision for t in seen] == sorted(t.revision for t in seen)
    assert [t.id for t in since.tasks] == [t.id for t in seen[3:]]
    assert {t.id for t in done.tasks} == set(ids)


async def test_a_permanent_failure_goes_to_dead_letter_and_retry_runs_it_again(
    stack: Stack,
) -> None:
    token = stack.token()
    bad = env.Envelope()
    bad.parts.add(tensor=env.Tensor(name="NOPE", datatype="FP32", shape=[1], raw_data=b"\0" * 4))
    bad.route.model = "toy_text"
    async with stack.stub() as stub:
        task = await stub.Submit(pb.SubmitRequest(envelope=bad), metadata=bearer(token))
        failed = await _wait_finished(stack, token, task.id)
        assert failed.status == pb.TASK_STATUS_FAILED
        assert failed.attempts == 1  # a permanent error is not retried
        assert failed.error.code == env.ERROR_CODE_INVALID_ARGUMENT
        assert "NOPE" in failed.error.message
        async with stack.bus() as bus:
            dead = await bus.js.get_last_msg(
                subjects.STREAM_TASKS_DEAD, subjects.taskstore_dead(TENANT, task.id)
            )
            assert pb.Task.FromString(dead.data).id == task.id
        retried = await stub.Retry(pb.RetryRequest(id=task.id), metadata=bearer(token))
        assert (retried.status, retried.retries, retried.attempts) == (
            pb.TASK_STATUS_PENDING,
            1,
            0,
        )

        async def failed_again() -> pb.Task | None:
            got = await stub.Get(pb.GetRequest(id=task.id), metadata=bearer(token))
            return got if got.retries == 1 and finished(got) else None

        again = await eventually(failed_again)
        ok = await stub.Submit(
            pb.SubmitRequest(envelope=text_envelope("fine")), metadata=bearer(token)
        )
        await _wait_finished(stack, token, ok.id)
        with pytest.raises(grpc.aio.AioRpcError) as not_failed:
            await stub.Retry(pb.RetryRequest(id=ok.id), metadata=bearer(token))
    assert again.status == pb.TASK_STATUS_FAILED and again.attempts == 1
    assert not_failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_task_waits_for_its_model_and_can_be_cancelled(stack: Stack) -> None:
    token = stack.token()
    async with stack.stub() as stub:
        task = await stub.Submit(
            pb.SubmitRequest(envelope=text_envelope("later", version="99")),
            metadata=bearer(token),
        )
        await asyncio.sleep(1.5)  # the behaviour: redelivery rounds pass, nobody serves toy_text/99
        waiting = await stub.Get(pb.GetRequest(id=task.id), metadata=bearer(token))
        assert (waiting.status, waiting.attempts) == (pb.TASK_STATUS_PENDING, 0)
        cancelled = await stub.Cancel(pb.CancelRequest(id=task.id), metadata=bearer(token))
        with pytest.raises(grpc.aio.AioRpcError) as twice:
            await stub.Cancel(pb.CancelRequest(id=task.id), metadata=bearer(token))
    assert cancelled.status == pb.TASK_STATUS_CANCELLED
    assert twice.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_watch_streams_the_status_changes(stack: Stack) -> None:
    token = stack.token(sub="watcher")
    async with stack.stub() as stub:
        before = await stub.List(pb.ListRequest(), metadata=bearer(token))
        start = max((t.revision for t in before.tasks), default=0)
        seen: list[pb.Task] = []
        # From `start`: what changes between opening the stream and its subscription
        # is replayed, so no sleep is needed for the watch to be in place.
        call = stub.Watch(pb.WatchRequest(after_revision=start), metadata=bearer(token))
        task = await stub.Submit(
            pb.SubmitRequest(envelope=text_envelope("watch me")), metadata=bearer(token)
        )

        async def follow() -> None:
            async for change in call:
                seen.append(change)
                if change.id == task.id and finished(change):
                    return

        await asyncio.wait_for(follow(), timeout=20)
        call.cancel()
    revisions = [change.revision for change in seen]
    assert revisions == sorted(set(revisions)), "changes arrive once each, in revision order"
    assert min(revisions) > start, "nothing from before `after_revision` is replayed"
    ours = [change for change in seen if change.id == task.id]
    assert ours[0].revision == task.revision  # the stream starts at the task's creation
    statuses = [change.status for change in ours]
    assert statuses[0] == pb.TASK_STATUS_PENDING
    assert statuses[-1] == pb.TASK_STATUS_COMPLETED
    assert statuses == sorted(statuses)


def _device_edit(node: str, wall_ms: int, *, title: str, tag: str, unread: int) -> pb.SessionState:
    state = pb.SessionState(conversation="chat-7")
    state.fields["title"].value_json = f'"{title}"'
    state.fields["title"].at.CopyFrom(pb.HlcTimestamp(wall_ms=wall_ms, node=node))
    state.sets["tags"].elements[tag].add_tags.append(f"{node}-1")
    state.counters["unread"].increments[node] = unread
    return state


async def test_session_state_from_two_devices_converges_in_any_order(stack: Stack) -> None:
    import time

    now_ms = time.time_ns() // 1_000_000
    phone = _device_edit("phone", now_ms - 5000, title="draft", tag="work", unread=2)
    laptop = _device_edit("laptop", now_ms - 1000, title="final", tag="urgent", unread=3)
    alice = {"Authorization": f"Bearer {stack.token()}"}
    outsider = {"Authorization": f"Bearer {stack.token(tenant=OTHER_TENANT)}"}
    async with stack.bus() as bus:
        for state in (laptop, phone, laptop):  # out of order, and one twice
            await bus.request(
                subjects.TASKSTORE_MERGE_STATE,
                pb.MergeStateRequest(state=state),
                pb.SessionState,
                headers=alice,
            )
        merged = await bus.request(
            subjects.TASKSTORE_GET_STATE,
            pb.GetStateRequest(conversation="chat-7"),
            pb.SessionState,
            headers=alice,
        )
        elsewhere = await bus.request(
            subjects.TASKSTORE_GET_STATE,
            pb.GetStateRequest(conversation="chat-7"),
            pb.SessionState,
            headers=outsider,
        )
        future = _device_edit("phone", now_ms + 3_600_000, title="x", tag="x", unread=1)
        with pytest.raises(InvalidArgument, match="in the future"):
            await bus.request(
                subjects.TASKSTORE_MERGE_STATE,
                pb.MergeStateRequest(state=future),
                pb.SessionState,
                headers=alice,
            )
    assert merged.fields["title"].value_json == '"final"'
    assert set(merged.sets["tags"].elements) == {"work", "urgent"}
    assert dict(merged.counters["unread"].increments) == {"phone": 2, "laptop": 3}
    assert not elsewhere.fields  # tenants never share state


_ALLOWED_REFUSALS = {"INVALID_ARGUMENT", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "NOT_FOUND"}


def _envelopes() -> st.SearchStrategy[env.Envelope]:
    parts = st.one_of(
        st.text(max_size=50).map(lambda t: env.Part(text=t)),
        st.binary(max_size=64).map(lambda b: env.Part(binary=env.Binary(data=b))),
        st.builds(
            lambda name, dt, shape, raw: env.Part(
                tensor=env.Tensor(name=name, datatype=dt, shape=shape, raw_data=raw)
            ),
            st.text(max_size=8),
            st.sampled_from(["FP32", "INT64", "BYTES", "NOPE", ""]),
            st.lists(st.integers(-2, 4), max_size=3),
            st.binary(max_size=32),
        ),
    )
    return st.builds(
        lambda parts, model, version, key, tenant, user, priority: env.Envelope(
            parts=parts,
            route=env.RouteHint(model=model, version=version),
            idempotency_key=key,
            tenant=tenant,
            user=user,
            priority=priority,
        ),
        st.lists(parts, max_size=3),
        st.sampled_from(["toy_text", "", "no.such>model", "toy_text"]),
        st.sampled_from(["", "1", "99", "*"]),
        st.text(max_size=300),
        st.sampled_from(["", TENANT, OTHER_TENANT]),
        st.sampled_from(["", "alice", "mallory"]),
        st.integers(0, 7),
    )


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_malformed_requests_get_clear_errors_and_the_service_keeps_working(
    stack: Stack, data: st.DataObject
) -> None:
    envelopes = [data.draw(_envelopes()) for _ in range(30)]
    garbage = [data.draw(st.binary(min_size=1, max_size=200)) for _ in range(10)]
    asyncio.run(_check_malformed(stack, envelopes, garbage))


async def _check_malformed(
    stack: Stack, envelopes: list[env.Envelope], garbage: list[bytes]
) -> None:
    headers = {"Authorization": f"Bearer {stack.token()}"}
    async with stack.bus() as bus:
        for envelope in envelopes:
            outcome = await _submit_outcome(bus, envelope, headers)
            if isinstance(outcome, EdgegateError):
                assert outcome.code.name in _ALLOWED_REFUSALS, outcome
                assert outcome.message
            else:
                assert outcome.tenant == TENANT and outcome.status == pb.TASK_STATUS_PENDING
        for subject in (
            subjects.TASKSTORE_SUBMIT,
            subjects.TASKSTORE_GET,
            subjects.TASKSTORE_LIST,
            subjects.TASKSTORE_MERGE_STATE,
        ):
            for body in garbage:
                reply = await raw_request(bus, subject, body, headers=headers)
                code = (reply.headers or {}).get("Edgegate-Error-Code")
                # Bytes that happen to parse as the request are answered normally.
                assert code is None or code in _ALLOWED_REFUSALS, (subject, body, reply.headers)
        # Still serving: a good task still completes.
        task = await bus.request(
            subjects.TASKSTORE_SUBMIT,
            pb.SubmitRequest(envelope=text_envelope("still fine")),
            pb.Task,
            headers=headers,
        )

        async def done() -> pb.Task | None:
            got = await bus.request(
                subjects.TASKSTORE_GET, pb.GetRequest(id=task.id), pb.Task, headers=headers
            )
            return got if got.status == pb.TASK_STATUS_COMPLETED else None

        await eventually(done)


async def _submit_outcome(
    bus: Bus, envelope: env.Envelope, headers: dict[str, str]
) -> pb.Task | EdgegateError:
    try:
        return await bus.request(
            subjects.TASKSTORE_SUBMIT, pb.SubmitRequest(envelope=envelope), pb.Task, headers=headers
        )
    except EdgegateError as exc:
        return exc


async def test_look_alike_tenants_never_share_tasks_or_state(stack: Stack) -> None:
    """Tenants "acme.io" and "acme_io" map to the same NATS-safe spelling; not to the same data."""
    dotted, underscored = stack.token(tenant="acme.io"), stack.token(tenant="acme_io")
    state = pb.SessionState(conversation="shared-name")
    state.counters["n"].increments["phone"] = 1
    async with stack.stub() as stub:
        task = await stub.Submit(
            pb.SubmitRequest(envelope=text_envelope("dotted")), metadata=bearer(dotted)
        )
        await stub.MergeState(pb.MergeStateRequest(state=state), metadata=bearer(dotted))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Get(pb.GetRequest(id=task.id), metadata=bearer(underscored))
        theirs = await stub.List(pb.ListRequest(), metadata=bearer(underscored))
        other_state = await stub.GetState(
            pb.GetStateRequest(conversation="shared-name"), metadata=bearer(underscored)
        )
        own_state = await stub.GetState(
            pb.GetStateRequest(conversation="shared-name"), metadata=bearer(dotted)
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not theirs.tasks
    assert not other_state.counters and own_state.counters["n"].increments["phone"] == 1


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        (pb.ListRequest(page_token="²"), "page_token"),
        (pb.ListRequest(page_token="12x"), "page_token"),
        (pb.ListRequest(page_size=5000), "page_size"),
    ],
    ids=["unicode-digit", "not-a-number", "huge-page"],
)
async def test_bad_list_requests_are_invalid_arguments(
    stack: Stack, request_: pb.ListRequest, says: str
) -> None:
    async with stack.stub() as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.List(request_, metadata=bearer(stack.token()))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in (refused.value.details() or "")
