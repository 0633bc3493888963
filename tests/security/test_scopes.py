"""Authorisation: scopes grant actions, and never across tenants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegate_common.errors import InvalidArgument, PermissionDenied
from edgegate_security.core.principal import Principal
from edgegate_security.core.reasons import Reason
from edgegate_security.core.scopes import (
    authorize,
    is_valid_scope,
    require,
    validate_action,
    validate_scopes,
)

EXPIRES_AT = datetime(2030, 1, 1, tzinfo=UTC)


def principal(*scopes: str, tenant: str = "acme") -> Principal:
    return Principal(
        tenant=tenant,
        subject="alice",
        scopes=frozenset(scopes),
        expires_at=EXPIRES_AT,
        token_id="jti-1",
    )


@pytest.mark.parametrize(
    ("scope", "action", "allowed"),
    [
        ("infer:*", "infer:all-MiniLM-L6-v2", True),
        ("infer:all-MiniLM-*", "infer:all-MiniLM-L6-v2", True),
        ("infer:all-MiniLM-*", "infer:bge-small", False),
        ("infer:all-MiniLM-L6-v?", "infer:all-MiniLM-L6-v2", True),
        ("infer:bge-small", "infer:bge-small", True),
        ("infer:bge-small", "infer:bge-small-v2", False),
        ("infer:BGE-small", "infer:bge-small", False),  # model names are case-sensitive
        ("infer:*", "tasks:read", False),  # a wildcard never crosses to another verb
        ("infer:*", "admin", False),
        ("tasks:read", "tasks:read", True),
        ("tasks:read", "tasks:write", False),
        ("tasks:write", "tasks:read", False),
        ("tasks:write", "infer:bge-small", False),
        ("admin", "infer:bge-small", True),
        ("admin", "tasks:write", True),
        ("admin", "admin", True),
        ("tasks:read", "admin", False),
    ],
)
def test_a_scope_grants_exactly_its_actions(scope: str, action: str, allowed: bool) -> None:
    decision = authorize(principal(scope), action=action, tenant="acme")

    assert decision.allowed is allowed
    assert decision.reason is (None if allowed else Reason.SCOPE_MISSING)


def test_no_scopes_grant_nothing() -> None:
    decision = authorize(principal(), action="tasks:read", tenant="acme")

    assert not decision.allowed
    assert decision.reason is Reason.SCOPE_MISSING


@pytest.mark.parametrize(
    "unknown",
    ["tasks:delete", "*", "infer*", "*:*", "infer:", "infer:a/b", "Admin", "", "billing:read"],
)
def test_scopes_this_version_does_not_know_are_ignored(unknown: str) -> None:
    assert not is_valid_scope(unknown)
    decision = authorize(principal(unknown), action="infer:bge-small", tenant="acme")
    assert decision.reason is Reason.SCOPE_MISSING

    # ... and they do not spoil the scopes next to them.
    assert authorize(principal(unknown, "tasks:read"), action="tasks:read", tenant="acme").allowed


def test_admin_does_not_reach_another_tenant() -> None:
    decision = authorize(principal("admin", tenant="acme"), action="tasks:read", tenant="globex")

    assert not decision.allowed
    assert decision.reason is Reason.TENANT_MISMATCH


def test_the_tenant_check_comes_before_the_scopes() -> None:
    # No scope at all: the answer is still "not your tenant", not "scope missing".
    decision = authorize(principal(tenant="acme"), action="tasks:read", tenant="globex")

    assert decision.reason is Reason.TENANT_MISMATCH


@given(
    scopes=st.frozensets(
        st.sampled_from(["admin", "tasks:read", "tasks:write", "infer:*", "infer:bge-*", "junk"])
    ),
    action=st.sampled_from(["admin", "tasks:read", "tasks:write", "infer:bge-small"]),
    tenants=st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=2, unique=True),
)
@settings(database=None, max_examples=200)
def test_no_scopes_ever_reach_another_tenant(
    scopes: frozenset[str], action: str, tenants: list[str]
) -> None:
    own, other = tenants
    decision = authorize(principal(*scopes, tenant=own), action=action, tenant=other)

    assert decision == authorize(principal(tenant=own), action=action, tenant=other)
    assert decision.reason is Reason.TENANT_MISMATCH


@pytest.mark.parametrize(
    "action",
    ["infer:*", "infer:bge-*", "infer:", "infer", "tasks:delete", "tasks", "", "Admin", "x:y"],
)
def test_an_action_that_is_not_a_concrete_scope_is_a_caller_bug(action: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        authorize(principal("admin"), action=action, tenant="acme")

    assert caught.value.details == {"field": "action"}
    with pytest.raises(InvalidArgument):
        validate_action(action)


def test_an_empty_tenant_is_a_caller_bug() -> None:
    with pytest.raises(InvalidArgument):
        authorize(principal("admin"), action="admin", tenant="")


def test_a_principal_expires_at_an_unambiguous_time() -> None:
    with pytest.raises(InvalidArgument):
        Principal(
            tenant="acme",
            subject="alice",
            scopes=frozenset(),
            expires_at=datetime(2030, 1, 1),  # naive: the mistake under test
            token_id="",
        )


def test_require_raises_permission_denied_with_the_reason() -> None:
    with pytest.raises(PermissionDenied) as caught:
        require(principal("tasks:read"), action="tasks:write", tenant="acme")
    assert caught.value.details == {"reason": "scope_missing"}

    with pytest.raises(PermissionDenied) as caught:
        require(principal("admin"), action="tasks:read", tenant="globex")
    assert caught.value.details == {"reason": "tenant_mismatch"}
    assert "globex" not in caught.value.message  # no confirmation that the other tenant exists

    require(principal("tasks:read"), action="tasks:read", tenant="acme")  # allowed: no error


def test_validate_scopes_refuses_what_it_does_not_understand() -> None:
    assert validate_scopes(["infer:bge-*", "tasks:read", "tasks:read"]) == {
        "infer:bge-*",
        "tasks:read",
    }
    with pytest.raises(InvalidArgument, match="'tasks:delete'"):
        validate_scopes(["tasks:read", "tasks:delete"])
