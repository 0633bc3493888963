"""The console's two audit calls on the running service: RecordAction and ListAudit.

A person's action is filed as the caller whose token came with the call, and
the audit page shows an admin their own tenant's records only, newest first,
page after page without overlap. Both calls answer alike over NATS and gRPC.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping

import grpc
import pytest
from google.protobuf.message import Message
from support.security_service import (
    OTHER_TENANT,
    TENANT,
    SecurityService,
    audit_tail,
    running_service,
    wait_for_record,
)

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import EdgegateError
from edgegate_common.rpc import error_details
from edgegate_protos.security.v1 import security_pb2 as pb

pytestmark = pytest.mark.slow

TRANSPORTS = ["nats", "grpc"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurityService]:
    with running_service(tmp_path_factory.mktemp("security-console")) as svc:
        yield svc


@pytest.fixture(scope="module")
def tokens(service: SecurityService) -> dict[str, str]:
    return {
        "admin": service.issue("admin", sub="carol"),
        "user": service.issue("tasks:read", sub="bob"),
        "other_admin": service.issue("admin", tenant=OTHER_TENANT, sub="mallory"),
    }


@pytest.fixture
async def bus(service: SecurityService) -> AsyncIterator[Bus]:
    async with service.bus() as connected:
        yield connected


class Refused(Exception):
    def __init__(self, code: str, details: Mapping[str, str]) -> None:
        super().__init__(code, dict(details))
        self.code, self.details = code, dict(details)


async def _call(
    service: SecurityService, bus: Bus, transport: str, request: Message, token: str
) -> Message:
    """RecordAction or ListAudit (by the request's type) as `token`; Refused when refused."""
    name, subject, reply_type = {
        pb.RecordActionRequest: (
            "RecordAction",
            subjects.SECURITY_RECORD_ACTION,
            pb.RecordActionResponse,
        ),
        pb.ListAuditRequest: ("ListAudit", subjects.SECURITY_LIST_AUDIT, pb.ListAuditResponse),
    }[type(request)]
    if transport == "nats":
        try:
            return await bus.request(
                subject, request, reply_type, headers={"Authorization": f"Bearer {token}"}
            )
        except EdgegateError as exc:
            raise Refused(exc.code.name, exc.details) from None
    async with service.stub() as stub:
        try:
            response: Message = await getattr(stub, name)(
                request, metadata=(("authorization", f"Bearer {token}"),), timeout=10
            )
            return response
        except grpc.aio.AioRpcError as exc:
            raise Refused(exc.code().name, error_details(exc.trailing_metadata())) from None


async def _record(
    service: SecurityService, bus: Bus, transport: str, token: str, **fields: object
) -> None:
    request = pb.RecordActionRequest(**{"action": "task.cancel", "outcome": "ok", **fields})  # type: ignore[arg-type]
    await _call(service, bus, transport, request, token)


async def _list(
    service: SecurityService, bus: Bus, transport: str, token: str, **fields: object
) -> pb.ListAuditResponse:
    response = await _call(service, bus, transport, pb.ListAuditRequest(**fields), token)  # type: ignore[arg-type]
    assert isinstance(response, pb.ListAuditResponse)
    return response


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_recorded_action_is_listed_first_as_the_caller_who_took_it(
    service: SecurityService, bus: Bus, tokens: dict[str, str], transport: str
) -> None:
    task = f"task-{uuid.uuid4().hex}"
    await _record(
        service,
        bus,
        transport,
        tokens["admin"],
        target=task,
        details={"reason_text": "stuck for an hour", "note": "x" * 500},
    )
    # Answered once stored: the very next page shows it, first.
    newest = (await _list(service, bus, transport, tokens["admin"], limit=1)).records[0]
    assert (newest.event, newest.reason) == ("admin", "console_action")
    assert (newest.tenant, newest.subject) == (TENANT, "carol")  # from the token, nothing else
    assert newest.token_id and newest.time.endswith("Z")
    assert newest.details["action"] == "task.cancel"
    assert newest.details["target"] == task
    assert newest.details["outcome"] == "ok"
    assert newest.details["reason_text"] == "stuck for an hour"
    assert len(newest.details["note"]) == 200  # clipped, not refused
    assert len(newest.hash) == 64 and len(newest.prev) == 64 and newest.seq >= 1
    assert newest.stream_sequence == await audit_tail(bus)


@pytest.mark.parametrize("key", ["subject", "tenant", "action", "outcome"])
async def test_details_cannot_speak_for_the_records_own_fields(
    service: SecurityService, bus: Bus, tokens: dict[str, str], key: str
) -> None:
    before = await audit_tail(bus)
    with pytest.raises(Refused) as refused:
        await _record(service, bus, "nats", tokens["admin"], details={key: "root"})
    assert refused.value.code == "INVALID_ARGUMENT"
    assert refused.value.details == {"field": "details", "reason": "invalid_request"}
    record = await wait_for_record(bus, after=before, match=lambda r: r.entry.event == "deny")
    assert (record.entry.reason, record.entry.subject) == ("invalid_request", "carol")
    newest = (await _list(service, bus, "nats", tokens["admin"], limit=5)).records
    assert all(r.subject != "root" and r.details.get(key) != "root" for r in newest)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "Task.Cancel"}, "action"),
        ({"action": ""}, "action"),
        ({"action": "task cancel; drop"}, "action"),
        ({"outcome": ""}, "outcome"),
        ({"target": "t" * 257}, "target"),
        ({"target": "line\nbreak"}, "target"),
        ({"details": {f"k{i}": "v" for i in range(17)}}, "details"),
    ],
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_malformed_action_is_refused_naming_its_field_and_filed(
    service: SecurityService,
    bus: Bus,
    tokens: dict[str, str],
    transport: str,
    fields: dict[str, object],
    field: str,
) -> None:
    before = await audit_tail(bus)
    with pytest.raises(Refused) as refused:
        await _record(service, bus, transport, tokens["admin"], **fields)
    assert refused.value.code == "INVALID_ARGUMENT"
    assert refused.value.details["field"] == field
    record = await wait_for_record(bus, after=before, match=lambda r: r.entry.event == "deny")
    assert record.entry.reason == "invalid_request" and record.entry.tenant == TENANT
    assert field in record.entry.details["message"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("call", ["record", "list"])
async def test_only_admins_may_record_or_list(
    service: SecurityService, bus: Bus, tokens: dict[str, str], transport: str, call: str
) -> None:
    cases = [
        (tokens["user"], "PERMISSION_DENIED", "scope_missing"),
        ("", "UNAUTHENTICATED", "token_missing"),
    ]
    for token, code, reason in cases:
        request = pb.RecordActionRequest(action="task.cancel", outcome="ok")
        listing = pb.ListAuditRequest()
        with pytest.raises(Refused) as refused:
            await _call(service, bus, transport, request if call == "record" else listing, token)
        assert (refused.value.code, refused.value.details["reason"]) == (code, reason)


async def test_an_admin_sees_only_their_own_tenants_records(
    service: SecurityService, bus: Bus, tokens: dict[str, str]
) -> None:
    marker = f"globex-{uuid.uuid4().hex}"
    await _record(service, bus, "nats", tokens["other_admin"], target=marker)
    ours = await _list(service, bus, "nats", tokens["admin"], limit=200)
    assert ours.records and all(r.tenant == TENANT for r in ours.records)
    assert all(r.details.get("target") != marker for r in ours.records)
    theirs = await _list(service, bus, "grpc", tokens["other_admin"], limit=200)
    assert all(r.tenant == OTHER_TENANT for r in theirs.records)
    assert theirs.records[0].details["target"] == marker
    assert theirs.records[0].subject == "mallory"


async def test_paging_goes_back_in_time_without_overlap_or_gaps(
    service: SecurityService, bus: Bus, tokens: dict[str, str]
) -> None:
    run = uuid.uuid4().hex
    for i in range(7):
        await _record(service, bus, "nats", tokens["admin"], target=f"{run}-{i}")
    seen: list[pb.AuditRecordView] = []
    before = 0
    while len(seen) < 7:
        page = await _list(service, bus, "grpc", tokens["admin"], limit=3, before_sequence=before)
        assert page.records and page.next_before_sequence
        seen += page.records
        before = page.next_before_sequence
    sequences = [r.stream_sequence for r in seen]
    assert sequences == sorted(set(sequences), reverse=True)  # newest first, nothing twice
    assert [r.details["target"] for r in seen[:7]] == [f"{run}-{i}" for i in reversed(range(7))]
    assert [r.seq for r in seen[:7]] == list(range(seen[0].seq, seen[0].seq - 7, -1))  # no gaps


async def test_the_event_filter_and_a_bad_filter(
    service: SecurityService, bus: Bus, tokens: dict[str, str]
) -> None:
    with pytest.raises(Refused):  # leaves a deny record of this tenant
        await _record(service, bus, "nats", tokens["admin"], action="BAD")
    denies = await _list(service, bus, "nats", tokens["admin"], event="deny")
    assert denies.records and {r.event for r in denies.records} == {"deny"}
    with pytest.raises(Refused) as refused:
        await _list(service, bus, "nats", tokens["admin"], event="everything")
    assert (refused.value.code, refused.value.details["field"]) == ("INVALID_ARGUMENT", "event")
    with pytest.raises(Refused) as refused:
        await _list(service, bus, "grpc", tokens["admin"], limit=201)
    assert (refused.value.code, refused.value.details["field"]) == ("INVALID_ARGUMENT", "limit")


async def test_the_chain_still_verifies_after_recorded_actions(
    service: SecurityService, bus: Bus, tokens: dict[str, str]
) -> None:
    for i in range(3):
        await _record(service, bus, "grpc", tokens["admin"], target=f"verify-{i}", outcome="ok")
    result = await bus.request(
        subjects.SECURITY_VERIFY_AUDIT,
        pb.VerifyAuditRequest(),
        pb.VerifyAuditResponse,
        headers={"Authorization": f"Bearer {tokens['admin']}"},
    )
    assert result.intact, result.problem
    assert result.head_sequence >= 3 and result.first_broken_sequence == 0
