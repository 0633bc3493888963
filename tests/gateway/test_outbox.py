"""The disk outbox: messages accepted while NATS is down, replayed exactly once when it returns.

The outbox itself on a temporary folder, then the whole stack: nats-server
stopped under a running gateway, messages accepted over HTTP and gRPC,
nats-server started again, every message a task that ran once.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from support.suite_stack import (
    TENANT,
    all_completed,
    bearer,
    eventually,
    start_stack,
    text_envelope,
)

from edgegate_common import subjects
from edgegate_common.errors import ResourceExhausted
from edgegate_gateway.adapters.outbox import Outbox
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb


def _entry(task_id: str, text: str = "hi") -> gateway_pb2.OutboxEntry:
    return gateway_pb2.OutboxEntry(envelope=text_envelope(text), credential="t", task_id=task_id)


def test_entries_come_back_in_order_and_leave_when_done(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", max_entries=2)
    first = outbox.put(_entry("a" * 32, "first"))
    outbox.put(_entry("b" * 32, "second"))
    with pytest.raises(ResourceExhausted, match="outbox holds 2"):
        outbox.put(_entry("c" * 32))
    assert [s.entry.envelope.parts[0].text for s in outbox.pending()] == ["first", "second"]
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700
    outbox.done(first)
    assert [s.entry.task_id for s in outbox.pending()] == ["b" * 32]
    assert not list((tmp_path / "outbox").glob(".*.tmp"))


def test_a_damaged_or_refused_entry_is_set_aside_with_its_reason(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, max_entries=10)
    (tmp_path / "00000000000000000001-x.entry").write_bytes(b"\xff\xff not protobuf")
    kept = outbox.put(_entry("d" * 32))
    (pending,) = outbox.pending()
    outbox.reject(kept, "UNAUTHENTICATED: the token expired")
    assert outbox.count() == 0 and pending.entry.task_id == "d" * 32
    reasons = sorted(p.read_text() for p in (tmp_path / "rejected").glob("*.reason"))
    assert reasons[0].startswith("UNAUTHENTICATED") and "does not parse" in reasons[1]


def _post(url: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        method="POST",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.loads(refused.read())


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_nats_down_then_up_replays_the_outbox_exactly_once(tmp_path: Path) -> None:
    stack = await asyncio.to_thread(start_stack, tmp_path, taskstores=1)
    try:
        outbox_dir = tmp_path / "outbox"
        gateway, port = await asyncio.to_thread(
            stack.start_gateway, "--outbox-dir", str(outbox_dir)
        )
        base = f"http://127.0.0.1:{port}/v1"
        token = stack.token("infer:*", "tasks:read", "tasks:write")
        stranger = stack.token("infer:*", "tasks:read", "tasks:write", sub="stranger")
        status, warm = await asyncio.to_thread(
            _post, f"{base}/tasks", token, {"model": "toy_text", "input": "while up"}
        )
        assert status == 202, warm

        await asyncio.to_thread(stack.nats.stop)
        await asyncio.sleep(0.5)  # the gateway notices the connection is gone
        accepted = []
        for i in range(8):
            status, task = await asyncio.to_thread(
                _post,
                f"{base}/tasks",
                token,
                {"model": "toy_text", "input": f"offline {i}", "idempotency_key": f"off-{i}"},
            )
            assert status == 202, task
            accepted.append(task["id"])
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            sent = await stub.Send(
                gateway_pb2.SendRequest(envelope=text_envelope("over grpc"), defer=True),
                metadata=bearer(token),
            )
        accepted.append(sent.reply.task_id)
        # Nobody can vouch for a caller never seen: refused, not accepted.
        status, refused = await asyncio.to_thread(
            _post, f"{base}/tasks", stranger, {"model": "toy_text", "input": "who?"}
        )
        assert status == 503, refused
        status, _ = await asyncio.to_thread(
            _post, f"{base}/embeddings", token, {"model": "toy_text", "input": "now"}
        )
        assert status == 503
        entries = sorted(outbox_dir.glob("*.entry"))
        assert len(entries) == 9
        # A crash after a replay's Submit but before its delete: the same entry twice.
        shutil.copy(entries[0], outbox_dir / f"{entries[0].stem}-again.entry")

        await asyncio.to_thread(stack.nats.start)

        async def emptied() -> bool | None:
            return True if not list(outbox_dir.glob("*.entry")) else None

        await eventually(emptied, timeout_s=60, what="the outbox to be replayed")
        async with stack.stub() as taskstore:
            tasks = await all_completed(
                taskstore, accepted, token, timeout_s=60, what="every accepted task to finish"
            )
        async with stack.bus() as bus:
            events = await _events(bus, TENANT, "alice")
    finally:
        await asyncio.to_thread(stack.stop)
    assert all(t.attempts == 1 for t in tasks)
    assert [events.count(task_id) for task_id in accepted] == [1] * len(accepted)
    assert not list((outbox_dir / "rejected").iterdir())


async def _events(bus: Any, tenant: str, user: str) -> list[str]:
    """The task ids of every event stored for the user, in order."""
    ids: list[str] = []
    subscription = await bus.js.subscribe(
        subjects.taskstore_events(tenant, user),
        stream=subjects.STREAM_TASK_EVENTS,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 1.0:
            try:
                message = await subscription.next_msg(timeout=0.2)
            except TimeoutError:
                continue
            ids.append(tpb.Task.FromString(message.data).id)
            quiet_since = time.monotonic()
    finally:
        await subscription.unsubscribe()
    return ids
