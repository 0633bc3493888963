"""Authorisation: may this principal do this action on this tenant's data?

Scopes (what a token grants) and actions (what a call needs) share one
grammar, `<verb>` or `<verb>:<target>`:

- `infer:<model>`: run inference on a model. In a scope the model part may be
  an fnmatch pattern (`infer:*`, `infer:all-MiniLM-*`); in an action it is a
  concrete model name. The pattern only ever matches the model part, so no
  scope grants a different verb.
- `tasks:read`, `tasks:write`: read or create/cancel async tasks.
- `admin`: everything, but only within the principal's own tenant.

The tenant check runs before any scope is looked at: a principal never reads
or changes another tenant's data, whatever ids a request names and whatever
scopes (`admin` included) its token carries.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from edgegate_common.errors import InvalidArgument, PermissionDenied
from edgegate_security.core.principal import Principal
from edgegate_security.core.reasons import Reason

ADMIN = "admin"
TASKS_READ = "tasks:read"
TASKS_WRITE = "tasks:write"
INFER_PREFIX = "infer:"

_FIXED = frozenset({ADMIN, TASKS_READ, TASKS_WRITE})
# The same alphabet as model names (edgegate_inference.core.spec), plus the
# fnmatch wildcards for scopes.
_MODEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_MODEL_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of `authorize`: `reason` says why not when `allowed` is false."""

    allowed: bool
    reason: Reason | None = None


ALLOWED = Decision(allowed=True)


def is_valid_scope(scope: str) -> bool:
    """The scope is one this version understands (wildcards allowed in the model part)."""
    if scope in _FIXED:
        return True
    return scope.startswith(INFER_PREFIX) and _is_model_pattern(scope[len(INFER_PREFIX) :])


def validate_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes to put in a new token; InvalidArgument names the first one that is not valid.

    Tokens from others may carry scopes we do not know (they are ignored);
    tokens we sign ourselves carry none.
    """
    result = frozenset(scopes)
    for scope in sorted(result):
        if not is_valid_scope(scope):
            raise InvalidArgument(
                f"{scope!r} is not a valid scope "
                "(expected admin, tasks:read, tasks:write or infer:<model pattern>)",
                details={"field": "scopes"},
            )
    return result


def validate_action(action: str) -> None:
    """Raise InvalidArgument unless `action` is a concrete scope: a caller's bug, not a denial."""
    if action in _FIXED:
        return
    if not action.startswith(INFER_PREFIX) or _MODEL.fullmatch(action[len(INFER_PREFIX) :]) is None:
        raise InvalidArgument(
            f"{action!r} is not a valid action "
            "(expected admin, tasks:read, tasks:write or infer:<model name>)",
            details={"field": "action"},
        )


def grants(scope: str, action: str) -> bool:
    """`scope` (from a token) allows `action` (already validated), tenants aside."""
    if scope in (ADMIN, action):
        return True
    if not (scope.startswith(INFER_PREFIX) and action.startswith(INFER_PREFIX)):
        return False
    pattern = scope[len(INFER_PREFIX) :]
    if not _is_model_pattern(pattern):
        return False  # not a scope we understand: ignored, never an error
    return fnmatch.fnmatchcase(action[len(INFER_PREFIX) :], pattern)


def authorize(principal: Principal, *, action: str, tenant: str) -> Decision:
    """Decide whether `principal` may do `action` on data that belongs to `tenant`."""
    validate_action(action)
    if not tenant:
        raise InvalidArgument(
            "the tenant the data belongs to is empty", details={"field": "tenant"}
        )
    if principal.tenant != tenant:
        return Decision(allowed=False, reason=Reason.TENANT_MISMATCH)
    if any(grants(scope, action) for scope in principal.scopes):
        return ALLOWED
    return Decision(allowed=False, reason=Reason.SCOPE_MISSING)


def require(principal: Principal, *, action: str, tenant: str) -> None:
    """`authorize`, raising PermissionDenied (reason in `details`) when it says no."""
    decision = authorize(principal, action=action, tenant=tenant)
    if not decision.allowed:
        raise denial(principal, action=action, decision=decision)


def denial(principal: Principal, *, action: str, decision: Decision) -> PermissionDenied:
    """The error for a refused `decision`, its reason in `details`."""
    if decision.reason is Reason.TENANT_MISMATCH:
        # Never name the other tenant back: the caller may be probing for it.
        message = f"the data does not belong to tenant {principal.tenant!r}"
    elif decision.reason is Reason.TOKEN_EXPIRED:
        message = f"the token of {principal.subject!r} has expired"
    else:
        message = f"no scope of {principal.subject!r} grants {action!r}"
    return PermissionDenied(message, details={"reason": str(decision.reason)})


def _is_model_pattern(pattern: str) -> bool:
    return _MODEL_PATTERN.fullmatch(pattern) is not None
