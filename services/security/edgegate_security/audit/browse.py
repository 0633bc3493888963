"""Browsing the audit stream newest first, one tenant's records, a page at a time.

The stream holds every tenant's records in one chain, so a page is found by
reading stored messages by stream sequence, backwards from where the last
page stopped, and keeping the tenant's. Lookups go out a few at a time
(`batch`) to save round trips. One call reads at most `max_scan` messages, so
a tenant with few records in a long stream gets short (even empty) pages that
still say where to go on, instead of a call that reads the whole stream.
Nothing here writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import nats.js.errors
from nats.js import JetStreamContext

from edgegate_common import subjects
from edgegate_common.bus import TRANSIENT
from edgegate_common.errors import InvalidArgument, Unavailable
from edgegate_security.audit.chain import AuditRecord, EventKind, parse_record
from edgegate_security.audit.reader import stream_state

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
DEFAULT_MAX_SCAN = 5_000
_BATCH = 32
_EVENTS = frozenset(e.value for e in EventKind)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """Which records a page holds: `tenant`'s, of kind `event` ("" for all), stored
    before stream sequence `before_stream_seq` (0: from the newest)."""

    tenant: str
    limit: int
    before_stream_seq: int = 0
    event: str = ""
    max_scan: int = DEFAULT_MAX_SCAN

    @classmethod
    def checked(cls, *, tenant: str, before_stream_seq: int, limit: int, event: str) -> AuditQuery:
        """A query as a caller asks it (`limit` 0: the default), or InvalidArgument naming
        the field (details `field`) that is out of range."""
        if limit < 0 or limit > MAX_LIMIT:
            raise InvalidArgument(
                f"limit must be between 0 and {MAX_LIMIT}", details={"field": "limit"}
            )
        if event and event not in _EVENTS:
            raise InvalidArgument(
                f"event must be one of {sorted(_EVENTS)}, or empty for all",
                details={"field": "event"},
            )
        return cls(
            tenant=tenant,
            limit=limit or DEFAULT_LIMIT,
            before_stream_seq=before_stream_seq,
            event=event,
        )


@dataclass(frozen=True, slots=True)
class Listed:
    """A record and where it is stored."""

    stream_seq: int
    record: AuditRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditPage:
    """Records newest first; `next_before_stream_seq` 0 when nothing older is left."""

    records: tuple[Listed, ...]
    next_before_stream_seq: int


async def browse(
    js: JetStreamContext,
    query: AuditQuery,
    *,
    stream: str = subjects.STREAM_AUDIT,
    batch: int = _BATCH,
) -> AuditPage:
    """One page of `query`'s records. NotFound or Unavailable when the stream cannot be read.

    A message that is not a record (only tampering makes one) is passed over:
    verification is the place that reports it.
    """
    first, last = await _bounds(js, stream)
    seq = last if query.before_stream_seq == 0 else min(last, query.before_stream_seq - 1)
    floor = max(first, seq - query.max_scan + 1)
    found: list[Listed] = []
    while seq >= floor and len(found) < query.limit:
        seqs = range(seq, max(floor, seq - batch + 1) - 1, -1)
        datas = await asyncio.gather(*(_get(js, stream, s) for s in seqs))
        for s, data in zip(seqs, datas, strict=True):
            seq = s - 1
            record = _readable(data)
            if record is not None and _matches(record, query):
                found.append(Listed(s, record))
                if len(found) == query.limit:
                    break
    return AuditPage(records=tuple(found), next_before_stream_seq=seq + 1 if seq >= first else 0)


def _matches(record: AuditRecord, query: AuditQuery) -> bool:
    entry = record.entry
    return entry.tenant == query.tenant and (not query.event or entry.event == query.event)


def _readable(data: bytes | None) -> AuditRecord | None:
    if data is None:
        return None
    try:
        return parse_record(data)
    except InvalidArgument:
        return None


async def _bounds(js: JetStreamContext, stream: str) -> tuple[int, int]:
    """The stream's first and last sequences; (1, 0) when it is empty."""
    state = await stream_state(js, stream)
    last = state.last_seq or 0
    return (max(1, state.first_seq or 1), last)


async def _get(js: JetStreamContext, stream: str, seq: int) -> bytes | None:
    """The message at `seq`, or None where there is none (deleted: only test streams allow it)."""
    try:
        msg = await js.get_msg(stream, seq=seq)
    except nats.js.errors.NotFoundError:
        return None
    except TRANSIENT as exc:
        raise Unavailable(f"cannot read the audit stream {stream}: {exc!r}") from exc
    return msg.data or b""
