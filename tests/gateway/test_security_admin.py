"""The gateway's client for the security service's admin calls, against the real service.

What the console relies on: an action it records is stored as the person whose
token it passed, before the call returns; the audit page it reads is that
person's tenant's, newest first; refusals come back typed; and a security
service that is not there is UNAVAILABLE, not a hang.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from support.security_service import TENANT, SecurityService, running_service

from edgegate_common.bus import Bus
from edgegate_common.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable
from edgegate_gateway.adapters.security_admin import SecurityAdmin

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurityService]:
    with running_service(tmp_path_factory.mktemp("security-admin")) as svc:
        yield svc


@pytest.fixture(scope="module")
def tokens(service: SecurityService) -> dict[str, str]:
    return {
        "admin": "Bearer " + service.issue("admin", sub="carol"),
        "user": "Bearer " + service.issue("tasks:read", sub="bob"),
    }


@pytest.fixture
async def admin(service: SecurityService) -> AsyncIterator[SecurityAdmin]:
    async with service.bus() as connected:
        yield SecurityAdmin(connected, timeout_s=10)


async def test_a_recorded_action_is_on_the_audit_page_as_its_person_at_once(
    admin: SecurityAdmin, tokens: dict[str, str]
) -> None:
    task = f"task-{uuid.uuid4().hex}"
    await admin.record_action(
        credential=tokens["admin"],
        action="task.cancel",
        target=task,
        details={"previous_status": "pending"},
    )
    page = await admin.list_audit(credential=tokens["admin"], limit=1, event="admin")
    newest = page.records[0]
    assert (newest.reason, newest.tenant, newest.subject) == ("console_action", TENANT, "carol")
    assert dict(newest.details) == {
        "action": "task.cancel",
        "target": task,
        "outcome": "ok",
        "previous_status": "pending",
    }
    assert page.next_before_sequence == newest.stream_sequence  # older records are left


async def test_pages_follow_on_and_the_chain_verifies(
    admin: SecurityAdmin, tokens: dict[str, str]
) -> None:
    run = uuid.uuid4().hex
    for i in range(4):
        await admin.record_action(
            credential=tokens["admin"], action="breaker.force_open", target=f"{run}/{i}"
        )
    first = await admin.list_audit(credential=tokens["admin"], limit=2, event="admin")
    second = await admin.list_audit(
        credential=tokens["admin"],
        limit=2,
        event="admin",
        before_sequence=first.next_before_sequence,
    )
    targets = [r.details["target"] for r in [*first.records, *second.records]]
    assert targets == [f"{run}/3", f"{run}/2", f"{run}/1", f"{run}/0"]
    result = await admin.verify_audit(credential=tokens["admin"])
    assert result.intact, result.problem
    assert result.records_checked >= 4


async def test_refusals_come_back_typed(admin: SecurityAdmin, tokens: dict[str, str]) -> None:
    with pytest.raises(PermissionDenied):
        await admin.list_audit(credential=tokens["user"])
    with pytest.raises(PermissionDenied):
        await admin.verify_audit(credential=tokens["user"])
    with pytest.raises(Unauthenticated):
        await admin.record_action(credential="", action="task.cancel", target="t")
    with pytest.raises(InvalidArgument) as refused:
        await admin.record_action(credential=tokens["admin"], action="Task Cancel", target="t")
    assert refused.value.details["field"] == "action"


async def test_no_security_service_is_unavailable(bus: Bus) -> None:
    """`bus` is the suite's shared nats-server, where no security service listens."""
    admin = SecurityAdmin(bus, timeout_s=2)
    with pytest.raises(Unavailable, match="security service is not answering"):
        await admin.record_action(credential="Bearer x.y.z", action="task.cancel", target="t")
    with pytest.raises(Unavailable):
        await admin.list_audit(credential="Bearer x.y.z")
