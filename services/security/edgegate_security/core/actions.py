"""What an admin tool may file as an action a person took, checked before it is recorded.

The console reports actions (`task.cancel` on a task id, `breaker.force_open`
on "model/version") and the security service files them as `admin` records.
Who acted is never part of the report: the record names the caller's verified
token. So the report may not carry the keys a record uses for who and what
(`subject`, `action`, ...) in its details either, where a reader could mistake
them for the record's own. Everything else the caller chose is short, plain
text and never shaped like a token, so that the record is always stored whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgegate_common.errors import InvalidArgument

MAX_TARGET_CHARS = 256
MAX_DETAILS = 16
# 16 values of 200 characters, even 4-byte ones, stay well inside a 16 KiB record.
MAX_DETAIL_VALUE_CHARS = 200
# The keys an action's record sets itself, and the record's own fields.
RESERVED_DETAILS = frozenset(
    {"action", "target", "outcome", "tenant", "subject", "token_id", "request_id"}
)

_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_OUTCOME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The start of a JSON Web Token: broader than what the audit chain refuses, so an
# action is refused here, with its field named, rather than filed without its words.
_TOKEN_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One action a person took; build it with `Action.checked`."""

    action: str
    target: str
    outcome: str
    details: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def checked(
        cls, *, action: str, target: str, outcome: str, details: Mapping[str, str]
    ) -> Action:
        """The action, or InvalidArgument naming the field (details `field`) that is wrong."""
        if not _NAME.fullmatch(action):
            raise _invalid("action", "must match [a-z][a-z0-9_.]{0,63}, e.g. task.cancel")
        if not _OUTCOME.fullmatch(outcome):
            raise _invalid("outcome", 'must be "ok" or an error code (a letter, then 0-63 more)')
        if len(target) > MAX_TARGET_CHARS:
            raise _invalid("target", f"may hold {MAX_TARGET_CHARS} characters, not {len(target)}")
        _check_text("target", target)
        if len(details) > MAX_DETAILS:
            raise _invalid("details", f"may hold {MAX_DETAILS} entries, not {len(details)}")
        clipped: dict[str, str] = {}
        for key, value in sorted(details.items()):
            if not _NAME.fullmatch(key):
                raise _invalid("details", f"key {key[:64]!r} must match [a-z][a-z0-9_.]{{0,63}}")
            if key in RESERVED_DETAILS:
                raise _invalid("details", f"key {key!r} is the record's own; name it otherwise")
            clipped[key] = value[:MAX_DETAIL_VALUE_CHARS]
            _check_text("details", clipped[key])
        return cls(action=action, target=target, outcome=outcome, details=clipped)

    def record_details(self) -> dict[str, str]:
        """The record's details: the caller's, then the action's own keys."""
        return {
            **self.details,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
        }


def _check_text(name: str, text: str) -> None:
    if _CONTROL.search(text):
        raise _invalid(name, "must not hold control characters")
    if _TOKEN_LIKE.search(text):
        raise _invalid(name, "must not carry a token; name it by its id")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(name, "holds text that is not valid Unicode") from None


def _invalid(name: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{name} {problem}", details={"field": name})
