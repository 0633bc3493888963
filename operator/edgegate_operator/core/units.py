"""Durations and timestamps as the ModelDeployment resource writes them.

Times inside the core are whole epoch milliseconds: a status written as
RFC 3339 text and read back after a restart gives the very same number, so a
resumed operator compares exactly what the one before it compared (floats of
epoch seconds do not survive that round trip bit for bit).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h)$")
_MS_PER_UNIT = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def parse_duration_ms(text: object, *, field: str) -> int:
    """`"30s"` -> 30000; ValueError naming `field` for anything else."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"{field}: {text!r} is not a duration (a whole number and ms, s, m or h, e.g. '30s')"
        )
    return int(match.group(1)) * _MS_PER_UNIT[match.group(2)]


def to_ms(now_s: float) -> int:
    return round(now_s * 1000)


def format_time(at_ms: int) -> str:
    """RFC 3339 in UTC with milliseconds: `2025-01-02T03:04:05.678Z`."""
    moment = _EPOCH + at_ms * _ONE_MS
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at_ms % 1000:03d}Z"


def parse_time(text: object, *, field: str) -> int:
    """An RFC 3339 time (as written by `format_time`, or by Kubernetes) -> epoch ms."""
    if not isinstance(text, str):
        raise ValueError(f"{field}: {text!r} is not an RFC 3339 time")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MS
