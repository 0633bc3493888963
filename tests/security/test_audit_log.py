"""The audit log on a real nats-server: concurrent writers, tampering, restarts.

Each test writes to a stream of its own on the shared server. Tampering is done
for real: deleting a message from a stream created without `deny_delete`, and
rewriting an exported copy of a stream into a new one with one record changed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import nats.js.errors
import pytest
from nats.js.api import Header
from support.harness import NatsLike

from edgegate_common.bus import Bus
from edgegate_common.errors import DeadlineExceeded, InvalidArgument, NotFound
from edgegate_security.audit.chain import (
    GENESIS,
    AuditEntry,
    AuditRecord,
    EventKind,
    Problem,
    parse_record,
)
from edgegate_security.audit.log import AuditLog, AuditStream
from edgegate_security.audit.reader import read_stream, verify_stream
from edgegate_security.core.reasons import Reason

_names = itertools.count()


def _stream(*, protected: bool = True) -> AuditStream:
    n = next(_names)
    return AuditStream(name=f"AUDIT_T{n}", subject=f"test.audit.t{n}", protected=protected)


@asynccontextmanager
async def _running(
    bus: Bus, stream: AuditStream, *, replica: str = "security-0", ack_timeout_s: float = 5
) -> AsyncIterator[AuditLog]:
    log = AuditLog(replica=replica, stream=stream, ack_timeout_s=ack_timeout_s)
    await log.start(bus)
    try:
        yield log
    finally:
        assert await log.close(timeout_s=10) == 0


async def _append(log: AuditLog, count: int, *, first: int = 0, replica: str = "r") -> None:
    for i in range(first, first + count):
        await log.append(
            event=EventKind.DENY,
            reason=Reason.SCOPE_MISSING,
            tenant="acme",
            subject="alice",
            token_id=f"jti-{i}",
            request_id=f"{replica}-{i}",
            details={"action": "infer"},
        )
        if i % 7 == 0:
            await asyncio.sleep(0)  # let the other writer in


async def _stored(bus: Bus, stream: AuditStream) -> list[tuple[int, bytes]]:
    return [message async for message in read_stream(bus.js, stream=stream.name)]


async def test_two_concurrent_writers_make_one_intact_contiguous_chain(
    bus: Bus, shared_nats: NatsLike
) -> None:
    stream, count = _stream(), 400
    other = await Bus.connect(servers=[shared_nats.url], name="test-2", connect_timeout_s=5)
    try:
        async with (
            _running(bus, stream, replica="security-0") as first,
            _running(other, stream, replica="security-1") as second,
        ):
            await asyncio.gather(
                _append(first, count, replica="security-0"),
                _append(second, count, replica="security-1"),
            )
    finally:
        await other.close()
    result = await verify_stream(bus.js, stream=stream.name)
    assert result.intact, result.problem
    assert result.records_checked == 2 * count
    records = [(seq, parse_record(data)) for seq, data in await _stored(bus, stream)]
    assert [record.seq for _, record in records] == list(range(1, 2 * count + 1))
    assert [seq for seq, _ in records] == list(range(1, 2 * count + 1))
    for replica in ("security-0", "security-1"):
        mine = [r.entry.request_id for _, r in records if r.entry.replica == replica]
        assert mine == [f"{replica}-{i}" for i in range(count)]  # each in its append order


class _RivalInTheMiddle:
    """A bus that slips a rival's record in after the first record of a burst.

    All on one connection, so the server sees: record 1, the rival's record
    (sealed after record 1, expecting its sequence), records 2, 3, ...
    """

    def __init__(self, bus: Bus, subject: str) -> None:
        self._bus, self._subject, self._done = bus, subject, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def publish(self, subject: str, payload: bytes, **options: Any) -> None:
        await self._bus.publish(subject, payload, **options)
        if subject == self._subject and not self._done:
            self._done = True
            first = parse_record(payload)
            stored_at = int(options["headers"][Header.EXPECTED_LAST_SEQUENCE]) + 1
            entry = AuditEntry(event="admin", reason="key_rotated", time="t", replica="rival")
            rival = AuditRecord.seal(entry, after=first.checkpoint)
            headers = {Header.EXPECTED_LAST_SEQUENCE: str(stored_at), Header.MSG_ID: rival.hash}
            await self._bus.publish(subject, rival.to_bytes(), headers=headers)


async def test_a_rival_record_inside_a_burst_cannot_fork_the_chain(bus: Bus) -> None:
    """The record after a refused one must be refused too, though its sequence would fit."""
    stream = _stream()
    rival = cast(Bus, _RivalInTheMiddle(bus, stream.subject))
    async with _running(rival, stream) as log:
        for i in range(3):  # no await yields in between: the writer takes all three at once
            await log.append(event=EventKind.DENY, reason=Reason.SCOPE_MISSING, request_id=f"{i}")
        await log.flush(timeout_s=10)
        assert log.conflicts_total >= 1
    result = await verify_stream(bus.js, stream=stream.name)
    assert result.intact, result.problem
    records = [parse_record(data) for _, data in await _stored(bus, stream)]
    assert [(r.entry.replica, r.entry.request_id) for r in records] == [
        ("security-0", "0"),
        ("rival", ""),
        ("security-0", "1"),
        ("security-0", "2"),
    ]


async def test_append_queues_and_close_writes_the_queue(bus: Bus) -> None:
    stream = _stream()
    log = AuditLog(replica="security-0", stream=stream)
    await log.start(bus)
    await log.append(event=EventKind.ADMIN, reason=Reason.KEY_ROTATED, details={"kid": "k2"})
    assert log.pending == 1  # queued: append did not wait for JetStream
    with pytest.raises(InvalidArgument, match="token"):
        await log.append(
            event=EventKind.AUTHN_FAILURE,
            reason=Reason.SIGNATURE_INVALID,
            details={"header": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"},
        )
    await _append(log, 99)
    assert await log.close() == 0
    assert log.written_total == 100
    result = await verify_stream(bus.js, stream=stream.name)
    assert result.intact and result.records_checked == 100
    first = parse_record((await _stored(bus, stream))[0][1])
    assert (first.entry.event, first.entry.reason, first.entry.details) == (
        "admin",
        "key_rotated",
        {"kid": "k2"},
    )


async def test_the_audit_stream_refuses_deletes_purges_and_unprotecting(bus: Bus) -> None:
    stream = _stream()
    async with _running(bus, stream) as log:
        await _append(log, 5)
    with pytest.raises(nats.js.errors.APIError, match="delete not permitted"):
        await bus.js.delete_msg(stream.name, 3)
    with pytest.raises(nats.js.errors.APIError, match="purge not permitted"):
        await bus.js.purge_stream(stream.name)
    unprotected = AuditStream(name=stream.name, subject=stream.subject, protected=False)
    with pytest.raises(nats.js.errors.APIError, match="can not cancel deny"):
        await bus.js.update_stream(unprotected.config())
    assert (await verify_stream(bus.js, stream=stream.name)).intact


@pytest.mark.parametrize(
    ("deleted", "kind", "first_broken_seq", "first_broken_stream_seq"),
    [
        (1, Problem.MISSING, 1, 2),
        (7, Problem.MISSING, 7, 8),
        (20, Problem.TRUNCATED, 20, 20),
    ],
)
async def test_a_record_deleted_from_the_stream_is_found(
    bus: Bus, deleted: int, kind: Problem, first_broken_seq: int, first_broken_stream_seq: int
) -> None:
    stream = _stream(protected=False)  # the only way to delete through the API
    async with _running(bus, stream) as log:
        await _append(log, 20)
    assert await bus.js.delete_msg(stream.name, deleted)
    result = await verify_stream(bus.js, stream=stream.name)
    assert not result.intact and result.kind is kind, result.problem
    assert result.first_broken_seq == first_broken_seq
    assert result.first_broken_stream_seq == first_broken_stream_seq


def _alter_record_12(messages: list[bytes]) -> None:
    messages[11] = messages[11].replace(b'"tenant":"acme"', b'"tenant":"evil"')


def _swap_records_5_and_9(messages: list[bytes]) -> None:
    messages[4], messages[8] = messages[8], messages[4]


def _drop_record_3(messages: list[bytes]) -> None:
    del messages[2]


@pytest.mark.parametrize(
    ("tamper", "kind", "first_broken_seq"),
    [
        (_alter_record_12, Problem.ALTERED, 12),
        (_swap_records_5_and_9, Problem.OUT_OF_ORDER, 5),
        (_drop_record_3, Problem.MISSING, 3),
    ],
)
async def test_a_stream_rewritten_with_one_record_tampered_is_found(
    bus: Bus, tamper: Callable[[list[bytes]], None], kind: Problem, first_broken_seq: int
) -> None:
    """Export the stream, change one record, write the copy into a new stream: verify sees it."""
    original = _stream()
    async with _running(bus, original) as log:
        await _append(log, 20)
    exported = [data for _, data in await _stored(bus, original)]
    tamper(exported)
    copy = _stream(protected=False)
    await bus.js.add_stream(copy.config())
    for data in exported:
        await bus.js.publish(copy.subject, data)
    result = await verify_stream(bus.js, stream=copy.name)
    assert not result.intact and result.kind is kind, result.problem
    assert result.first_broken_seq == first_broken_seq
    assert result.records_checked == first_broken_seq - 1


async def test_verifying_what_came_since_a_kept_head(bus: Bus) -> None:
    stream = _stream()
    async with _running(bus, stream) as log:
        await _append(log, 10)
        await log.flush(timeout_s=10)
        kept = await log.verify()
        await _append(log, 5, first=10)
    assert kept.intact and kept.head is not None and kept.head.seq == 10
    since = await verify_stream(bus.js, stream=stream.name, after=kept.head, from_stream_seq=11)
    assert since.intact and since.records_checked == 5
    assert since.head is not None and since.head.seq == 15


async def test_records_deleted_after_a_kept_head_are_found(bus: Bus) -> None:
    stream = _stream(protected=False)
    async with _running(bus, stream) as log:
        await _append(log, 10)
    kept = parse_record((await _stored(bus, stream))[7][1]).checkpoint
    for seq in (9, 10):
        await bus.js.delete_msg(stream.name, seq)
    result = await verify_stream(bus.js, stream=stream.name, after=kept, from_stream_seq=9)
    assert result.kind is Problem.TRUNCATED and result.first_broken_seq == 9, result.problem
    assert result.first_broken_stream_seq == 10  # nothing read: the last one is surely gone


async def test_a_tail_that_is_not_a_record_stops_the_writer_and_shows_in_verify(bus: Bus) -> None:
    stream = _stream()
    log = AuditLog(replica="security-0", stream=stream)
    await log.start(bus)
    await _append(log, 3)
    await log.flush(timeout_s=10)
    await bus.js.publish(stream.subject, b"not a record")
    await log.append(event=EventKind.DENY, reason=Reason.TENANT_MISMATCH)
    with pytest.raises(DeadlineExceeded, match="1 audit records still unwritten"):
        await log.flush(timeout_s=0.5)
    assert await log.close(timeout_s=0.1) == 1  # never chained onto garbage, never dropped quietly
    result = await verify_stream(bus.js, stream=stream.name)
    assert result.kind is Problem.UNREADABLE and result.first_broken_seq == 4


async def test_verifying_a_stream_that_does_not_exist(bus: Bus) -> None:
    with pytest.raises(NotFound, match="AUDIT_NOWHERE"):
        await verify_stream(bus.js, stream="AUDIT_NOWHERE")
    empty = _stream()
    await bus.js.add_stream(empty.config())
    result = await verify_stream(bus.js, stream=empty.name, after=GENESIS)
    assert result.intact and result.records_checked == 0


async def test_the_writer_survives_a_nats_restart(nats_server: NatsLike) -> None:
    bus = await Bus.connect(servers=[nats_server.url], name="test", connect_timeout_s=5)
    stream = _stream()
    try:
        async with _running(bus, stream, ack_timeout_s=1) as log:
            await _append(log, 50)
            await log.flush(timeout_s=10)
            nats_server.kill()
            await _append(log, 50, first=50)  # queued while NATS is down
            await asyncio.sleep(0.3)  # the behaviour: the writer tries (and fails) while it is down
            nats_server.start()
            await log.flush(timeout_s=30)
        result = await verify_stream(bus.js, stream=stream.name)
    finally:
        await bus.close()
    assert result.intact, result.problem
    assert result.records_checked == 100


async def test_flush_waits_for_what_came_before_it_not_for_what_keeps_coming(bus: Bus) -> None:
    """A busy service never stops appending; a flush (RecordAction's) must still return.

    The queue here is never empty (each round appends more than a burst holds),
    so a flush that waited for an empty queue would wait for ever.
    """
    stream = _stream()
    log = AuditLog(replica="security-0", stream=stream, max_pending=1_000, max_burst=64)
    await log.start(bus)
    stop = asyncio.Event()

    async def keep_appending() -> None:
        while not stop.is_set():
            for _ in range(100):
                await log.append(event=EventKind.DENY, reason=Reason.SCOPE_MISSING)
            await asyncio.sleep(0)

    busy = asyncio.create_task(keep_appending())
    try:
        await asyncio.sleep(0.2)  # the queue fills up
        await log.append(event=EventKind.ADMIN, reason=Reason.CONSOLE_ACTION, request_id="mine")
        await log.flush(timeout_s=20)
        assert log.pending > 0  # still busy: the flush did not wait for the queue to empty
    finally:
        stop.set()
        await busy
        assert await log.close(timeout_s=30) == 0
    stored = [parse_record(data) for _, data in await _stored(bus, stream)]
    assert [r.entry.request_id for r in stored].count("mine") == 1
