"""Which replica acts: kopf's peering rule, for the work the operator does outside kopf.

Replicas of the operator share a kopf peering object (`ClusterKopfPeering`,
or a `KopfPeering` per watched namespace). Each writes its own record into
its `status`, `{identity: {priority, lifetime, lastseen}}`, and kopf pauses
its handlers on a replica that sees another live record with a higher or the
same priority (`kopf._core.engines.peering.process_peering_event`). The
resync loop is ours, not a kopf handler, so it asks the same question of the
same object, here: a replica acts only when no other live peer has a priority
of its own or above. On a tie both pause, as kopf does: nothing acts twice.

Records are read as kopf reads them: a missing `priority` is 0, a missing
`lifetime` 60 s, a missing `lastseen` is now (alive); a record is dead once
`lastseen + lifetime` has passed. A record that cannot be read at all (kopf
itself would fail on it) counts as a live peer that outranks us: doing
nothing is the side that cannot act twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

DEFAULT_LIFETIME_S: Final = 60
"""kopf's lifetime for a record that names none."""
MAX_PRIORITY: Final = 32767
"""Priorities drawn at random are in 1..MAX_PRIORITY; 0 is "draw one"."""


@dataclass(frozen=True)
class Standing:
    """Whether this replica acts, and why not when it does not."""

    acts: bool
    reason: str = ""

    @classmethod
    def paused(cls, reason: str) -> Standing:
        return cls(acts=False, reason=reason)


ACTS: Final = Standing(acts=True)


def standing(
    status: Mapping[str, Any] | None, *, identity: str, priority: int, now: datetime
) -> Standing:
    """This replica's standing among the records of one peering object's `status`.

    Our own record (`identity`) is ignored, dead records too; any other live
    record with a priority >= `priority` pauses us.
    """
    blockers: list[str] = []
    for peer, record in sorted((status or {}).items()):
        if peer == identity:
            continue
        try:
            their_priority, deadline = _read(record, now=now)
        except (TypeError, ValueError, OverflowError):
            blockers.append(f"{peer} (unreadable record)")
            continue
        if deadline > now and their_priority >= priority:
            blockers.append(f"{peer} (priority {their_priority})")
    if blockers:
        return Standing.paused(f"live peers of priority >= {priority}: {', '.join(blockers)}")
    return ACTS


def listed(status: Mapping[str, Any] | None, *, identity: str, now: datetime) -> bool:
    """Whether our own record is in `status` and alive: whether peers can see us.

    kopf does not ask this; the gate does, so that a replica whose keep-alives do
    not land (at start, or when it may read but not patch the object) never acts
    unseen beside one that does.
    """
    record = (status or {}).get(identity)
    try:
        return _read(record, now=now)[1] > now
    except (TypeError, ValueError, OverflowError):
        return False


def _read(record: object, *, now: datetime) -> tuple[float, datetime]:
    """A record's priority and the moment it is dead from; TypeError/ValueError if unreadable."""
    if not isinstance(record, Mapping):
        raise TypeError(f"a peer record is a mapping, not {type(record).__name__}")
    priority = record.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int | float):
        raise TypeError(f"priority {priority!r} is not a number")
    lastseen = record.get("lastseen")
    seen = now if lastseen is None else datetime.fromisoformat(str(lastseen))
    if seen.tzinfo is None:  # kopf (iso8601) reads a time without a zone as UTC
        seen = seen.replace(tzinfo=UTC)
    lifetime_s = int(record.get("lifetime", DEFAULT_LIFETIME_S))  # as kopf: "60" and 60.5 too
    return priority, seen + timedelta(seconds=lifetime_s)
