"""Browsing the audit stream on a real nats-server: one tenant's records, newest first.

Each test writes to a stream of its own on the shared server, through the real
writer (`AuditLog`), and pages through it with `AuditLog.browse`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from edgegate_common.bus import Bus
from edgegate_common.errors import InvalidArgument
from edgegate_security.audit.browse import DEFAULT_LIMIT, MAX_LIMIT, AuditQuery
from edgegate_security.audit.chain import EventKind
from edgegate_security.audit.log import AuditLog, AuditStream
from edgegate_security.core.reasons import Reason

_names = itertools.count()


@pytest.fixture
def stream() -> AuditStream:
    n = next(_names)
    return AuditStream(name=f"AUDIT_B{n}", subject=f"test.audit.b{n}", protected=False)


@pytest.fixture
async def log(bus: Bus, stream: AuditStream) -> AsyncIterator[AuditLog]:
    audit = AuditLog(replica="security-0", stream=stream)
    await audit.start(bus)
    try:
        yield audit
    finally:
        assert await audit.close(timeout_s=10) == 0


async def _write(log: AuditLog, *tenants: str, event: EventKind = EventKind.ADMIN) -> None:
    for i, tenant in enumerate(tenants):
        await log.append(
            event=event,
            reason=Reason.CONSOLE_ACTION if event is EventKind.ADMIN else Reason.SCOPE_MISSING,
            tenant=tenant,
            subject="alice",
            request_id=f"{tenant}-{i}",
        )
    await log.flush(timeout_s=10)


def _query(**fields: object) -> AuditQuery:
    defaults: dict[str, object] = {"tenant": "acme", "before_stream_seq": 0, "limit": 0}
    return AuditQuery.checked(**{**defaults, "event": "", **fields})  # type: ignore[arg-type]


async def test_pages_hold_only_the_tenants_records_newest_first_and_join_up(
    log: AuditLog,
) -> None:
    await _write(log, "acme", "globex", "acme", "acme", "globex", "acme", "acme")
    seen: list[int] = []
    before = 0
    while True:
        page = await log.browse(_query(limit=2, before_stream_seq=before))
        assert all(listed.record.entry.tenant == "acme" for listed in page.records)
        seen += [listed.stream_seq for listed in page.records]
        if not page.next_before_stream_seq:
            break
        assert page.next_before_stream_seq == seen[-1]  # the next page starts below this one
        before = page.next_before_stream_seq
    assert seen == [7, 6, 4, 3, 1]  # every acme record once, newest first


async def test_a_long_run_of_other_tenants_records_gives_short_pages_not_a_long_call(
    log: AuditLog,
) -> None:
    await _write(log, "acme", "acme", *["globex"] * 8)
    query = AuditQuery(tenant="acme", limit=5, max_scan=4)
    first = await log.browse(query)
    assert (first.records, first.next_before_stream_seq) == ((), 7)  # read 10..7, none acme
    second = await log.browse(AuditQuery(tenant="acme", limit=5, max_scan=4, before_stream_seq=7))
    assert (second.records, second.next_before_stream_seq) == ((), 3)
    third = await log.browse(AuditQuery(tenant="acme", limit=5, max_scan=4, before_stream_seq=3))
    assert [listed.stream_seq for listed in third.records] == [2, 1]
    assert third.next_before_stream_seq == 0


async def test_the_event_filter_and_records_without_a_tenant(log: AuditLog) -> None:
    await _write(log, "acme", "acme")
    await _write(log, "acme", "", event=EventKind.DENY)  # "": an unreadable token's failure
    admin = await log.browse(_query(event="admin"))
    assert [listed.stream_seq for listed in admin.records] == [2, 1]
    denies = await log.browse(_query(event="deny"))
    assert [listed.record.entry.request_id for listed in denies.records] == ["acme-0"]
    nobody = await log.browse(_query(tenant=""))  # what the plane never asks: it has a tenant
    assert [listed.stream_seq for listed in nobody.records] == [4]


async def test_a_deleted_message_is_passed_over(
    log: AuditLog, bus: Bus, stream: AuditStream
) -> None:
    await _write(log, "acme", "acme", "acme")
    await bus.js.delete_msg(stream.name, 2)
    page = await log.browse(_query())
    assert [listed.stream_seq for listed in page.records] == [3, 1]


async def test_an_empty_stream_and_a_sequence_past_its_end(log: AuditLog) -> None:
    empty = await log.browse(_query())
    assert (empty.records, empty.next_before_stream_seq) == ((), 0)
    await _write(log, "acme", "acme")
    page = await log.browse(_query(before_stream_seq=1_000))
    assert [listed.stream_seq for listed in page.records] == [2, 1]
    assert page.next_before_stream_seq == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"limit": MAX_LIMIT + 1}, "limit"), ({"limit": -1}, "limit"), ({"event": "nope"}, "event")],
)
def test_queries_out_of_range_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        _query(**fields)
    assert refused.value.details["field"] == field


def test_limit_zero_means_the_default() -> None:
    assert _query(limit=0).limit == DEFAULT_LIMIT
    assert _query(limit=MAX_LIMIT).limit == MAX_LIMIT
