"""Audit records and their hash chain: the format, its canonical encoding, verification.

Pure code, no I/O: the JetStream writer and reader are in `audit.log`; an
auditor can check an exported stream with this module alone, or without it.

A record (format version 1) is one JSON object with exactly these keys:

    v           1, the format version (a later format gets a new number)
    seq         the record's position in the chain: 1, 2, 3 ... with no gaps
    time        when the decision was made, UTC, RFC 3339 with microseconds
                ("2025-05-01T12:00:00.000000Z"); a string, because epoch
                nanoseconds exceed 2**53 and tools that read JSON numbers as
                doubles (jq, JavaScript) would round them and get another hash
    event       what was decided: an `EventKind`
    reason      why: a `Reason` code
    tenant, subject, token_id, request_id
                who and which request ("" when not known); never a token itself
    replica     the security replica that wrote the record
    details     free string-to-string facts; never a secret or raw PII
    prev        the previous record's `hash`; 64 zeros (GENESIS_HASH) for seq 1
    hash        SHA-256, lowercase hex, of the canonical encoding of all other keys

The canonical encoding is JSON with keys sorted, no whitespace and non-ASCII
text as UTF-8 rather than \\u escapes. For these value types (strings, small
integers, one nested object of strings with ASCII keys) that is RFC 8785 (JCS),
so any JCS library recomputes a hash; in Python:

    hashlib.sha256(json.dumps({k: v for k, v in record.items() if k != "hash"},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()

or in a shell, `jq -cSj 'del(.hash)' record.json | sha256sum` (as long as no
text holds U+007F, which jq writes escaped).

A stored record is exactly the canonical encoding of all its keys, `hash`
included, so verification can demand that byte for byte: a changed byte is
found even where it would not change the parsed content (spacing, a key
given twice).

What the chain proves: a record altered, removed, inserted or moved breaks a
link, and `ChainVerifier` names the first one. It cannot prove that the newest
records were not rewritten with their hashes recomputed by someone who can
write the stream; keep a verified head (`Verification.head`) outside it and
verify later from there (`after=`) to cover that too.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edgegate_common.errors import InvalidArgument
from edgegate_security.encoding import canonical_json

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
# Far above any real record; keeps a record well inside the NATS max payload.
MAX_RECORD_BYTES = 16 * 1024

_STRING_KEYS = ("time", "event", "reason", "tenant", "subject", "token_id", "request_id", "replica")
_KEYS = frozenset({"v", "seq", "details", "prev", "hash", *_STRING_KEYS})
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_DETAIL_KEY = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII: sorts the same in every tool
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
# A JSON Web Token (base64url header starting `{"`, two more parts): the likeliest secret
# to leak into a record by accident, so records refuse it.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.")


class EventKind(enum.StrEnum):
    """What kind of decision a record files: the issue's four, fixed spellings."""

    AUTHN_FAILURE = "authn_failure"
    DENY = "deny"
    REDACTION = "redaction"
    ADMIN = "admin"


class Problem(enum.StrEnum):
    """What verification found wrong first; callers branch on it, people read `problem`."""

    UNREADABLE = "unreadable"  # the bytes are not a record at all
    ALTERED = "altered"  # a record's bytes do not match its hash (or are not canonical)
    BROKEN_LINK = "broken_link"  # a record's `prev` is not the previous record's hash
    MISSING = "missing"  # a record is absent from the middle of the chain
    OUT_OF_ORDER = "out_of_order"  # records are present but moved
    TRUNCATED = "truncated"  # the stream ends after its last readable record


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A position in the chain: record `seq` has hash `hash`. GENESIS stands before record 1."""

    seq: int
    hash: str


GENESIS = Checkpoint(seq=0, hash=GENESIS_HASH)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One decision as its caller reports it; `seq`, `prev` and `hash` come when it is written.

    The writer assigns the chain fields, not the caller, because only the
    writer knows the stream's tail at the moment the record is stored.
    """

    event: str
    reason: str
    time: str
    replica: str
    tenant: str = ""
    subject: str = ""
    token_id: str = ""
    request_id: str = ""
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """An entry sealed into the chain after the record at `seq - 1`."""

    seq: int
    prev: str
    hash: str
    entry: AuditEntry

    @classmethod
    def seal(cls, entry: AuditEntry, *, after: Checkpoint) -> AuditRecord:
        fields = _fields(entry, seq=after.seq + 1, prev=after.hash)
        return cls(seq=after.seq + 1, prev=after.hash, hash=content_hash(fields), entry=entry)

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(seq=self.seq, hash=self.hash)

    def to_json(self) -> dict[str, Any]:
        fields = _fields(self.entry, seq=self.seq, prev=self.prev)
        fields["hash"] = self.hash
        return fields

    def to_bytes(self) -> bytes:
        """The stored form: the canonical encoding of every key, `hash` included."""
        return canonical_json(self.to_json())


def _fields(entry: AuditEntry, *, seq: int, prev: str) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "seq": seq,
        "time": entry.time,
        "event": entry.event,
        "reason": entry.reason,
        "tenant": entry.tenant,
        "subject": entry.subject,
        "token_id": entry.token_id,
        "request_id": entry.request_id,
        "replica": entry.replica,
        "details": dict(entry.details),
        "prev": prev,
    }


def content_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical encoding of every key except `hash`."""
    content = canonical_json({key: value for key, value in fields.items() if key != "hash"})
    return hashlib.sha256(content).hexdigest()


def utc_text(at: datetime) -> str:
    """`at` as a record's `time`: UTC, microseconds, a `Z` suffix. Naive times are refused."""
    if at.tzinfo is None:
        raise InvalidArgument("an audit time needs a time zone; naive datetimes are ambiguous")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def check_entry(entry: AuditEntry) -> None:
    """Refuse an entry that could not be stored or verified, or that carries a token.

    Run when a caller appends, so the mistake surfaces where it was made and
    not later in the background writer.
    """
    if not entry.event or not entry.reason:
        raise InvalidArgument("an audit entry needs an event and a reason")
    for key, value in entry.details.items():
        if not isinstance(key, str) or not _DETAIL_KEY.fullmatch(key):
            raise InvalidArgument(f"audit detail key {key!r} must be 1-64 printable ASCII")
        if not isinstance(value, str):
            raise InvalidArgument(f"audit detail {key!r} must be a string")
    texts = [getattr(entry, key) for key in _STRING_KEYS]
    joined = "\n".join([*texts, *entry.details.values()])  # one pass of each check, not twenty
    if _JWT.search(joined):
        raise InvalidArgument("an audit entry must not carry a token; record its id instead")
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("an audit entry holds text that is not valid Unicode") from None
    # JSON escaping at most sextuples a character; keys, hashes and braces stay under 1 KiB.
    if 6 * len(joined) + 140 * len(entry.details) + 1024 <= MAX_RECORD_BYTES:
        return
    size = len(AuditRecord.seal(entry, after=GENESIS).to_bytes()) + 20  # 20: a longer seq
    if size > MAX_RECORD_BYTES:
        raise InvalidArgument(f"an audit record may hold {MAX_RECORD_BYTES} bytes, not {size}")


def parse_record(data: bytes) -> AuditRecord:
    """Read one stored record; InvalidArgument says why the bytes are not one.

    Checks the shape only; whether the record is intact is `ChainVerifier`'s job.
    """
    if len(data) > MAX_RECORD_BYTES:
        raise InvalidArgument(f"{len(data)} bytes, more than a record holds")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidArgument(f"not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise InvalidArgument("not a JSON object")
    if set(value) != _KEYS:
        missing, extra = sorted(_KEYS - set(value)), sorted(set(value) - _KEYS)
        raise InvalidArgument(f"wrong keys (missing {missing}, unexpected {extra})")
    if value["v"] != FORMAT_VERSION or type(value["v"]) is not int:
        raise InvalidArgument(f"format version {value['v']!r}, not {FORMAT_VERSION}")
    if type(value["seq"]) is not int or value["seq"] < 1:
        raise InvalidArgument(f"seq {value['seq']!r} is not a positive integer")
    for key in ("prev", "hash"):
        if not isinstance(value[key], str) or not _HEX_SHA256.fullmatch(value[key]):
            raise InvalidArgument(f"{key} is not a lowercase hex SHA-256")
    if not all(isinstance(value[key], str) for key in _STRING_KEYS):
        raise InvalidArgument(f"one of {list(_STRING_KEYS)} is not a string")
    details = value["details"]
    if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
        raise InvalidArgument("details is not an object of strings")
    try:
        if _ESCAPED_SURROGATE.search(data):  # the one way valid UTF-8 JSON yields bad text
            canonical_json(value)
    except UnicodeEncodeError:  # a lone surrogate, written as a \ud800 escape
        raise InvalidArgument("holds text that is not valid Unicode") from None
    entry = AuditEntry(**{key: value[key] for key in _STRING_KEYS}, details=details)
    return AuditRecord(seq=value["seq"], prev=value["prev"], hash=value["hash"], entry=entry)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """The outcome of walking a chain.

    `first_broken_seq` is the chain position where the stored chain first
    departs from an intact one (the record that is altered, missing or
    displaced); `first_broken_stream_seq` the stream message where that
    showed. Both are 0 when intact; the stream one is never 0 otherwise, the
    chain one only where the position is unknown (verifying with `after=None`,
    the very first message is unreadable). `head` is the last record that
    verified: the checkpoint to keep outside the stream.
    """

    intact: bool
    records_checked: int
    head: Checkpoint | None
    first_broken_seq: int = 0
    first_broken_stream_seq: int = 0
    kind: Problem | None = None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class _Break:
    seq: int
    stream_seq: int
    kind: Problem
    problem: str


@dataclass(slots=True)
class _Gap:
    """Record `expected` was due at `stream_seq`, which held `found`; it may turn up later."""

    expected: int
    found: int
    stream_seq: int
    later_stream_seq: int = 0


class ChainVerifier:
    """Checks a chain one stored message at a time, so a stream need not fit in memory.

    `after` is the trusted checkpoint before the first message: GENESIS for a
    whole stream, a kept head to verify only what came since, or None to trust
    the first record's `prev` (a stream whose oldest records a retention limit
    removed). Feeding never raises, whatever the bytes.
    """

    def __init__(self, *, after: Checkpoint | None = GENESIS) -> None:
        self._head = after
        self._checked = 0
        self._last_stream_seq = 0
        self._break: _Break | None = None
        self._gap: _Gap | None = None

    def feed(self, stream_seq: int, data: bytes) -> None:
        self._last_stream_seq = stream_seq
        if self._gap is not None:
            self._look_for_displaced(stream_seq, data)
            return
        if self._break is not None:
            return
        expected = self._next_seq
        try:
            record = parse_record(data)
        except InvalidArgument as exc:
            problem = f"stream message {stream_seq} is not an audit record: {exc.message}"
            self._break = _Break(expected, stream_seq, Problem.UNREADABLE, problem)
            return
        self._break = self._check(record, data, expected=expected, stream_seq=stream_seq)
        if self._break is None and self._gap is None:
            self._head = record.checkpoint
            self._checked += 1

    @property
    def _next_seq(self) -> int:
        """The chain position the next record must hold (0: any, nothing read yet)."""
        return 0 if self._head is None else self._head.seq + 1

    def _check(
        self, record: AuditRecord, data: bytes, *, expected: int, stream_seq: int
    ) -> _Break | None:
        where = f"stream message {stream_seq}"
        fields = record.to_json()
        if canonical_json(fields) != data:
            problem = f"record {expected} ({where}) was altered: its bytes are not canonical"
            return _Break(expected, stream_seq, Problem.ALTERED, problem)
        if content_hash(fields) != record.hash:
            problem = (
                f"record {expected} ({where}) was altered: its content does not match its hash"
            )
            return _Break(expected, stream_seq, Problem.ALTERED, problem)
        if self._head is None:
            return None  # the first record of a stream verified from its start: trusted
        if record.seq > expected:
            self._gap = _Gap(expected=expected, found=record.seq, stream_seq=stream_seq)
            return None
        if record.seq < expected:
            problem = (
                f"records are out of order: {where} holds record {record.seq}, "
                f"which belongs before record {expected}"
            )
            return _Break(expected, stream_seq, Problem.OUT_OF_ORDER, problem)
        if record.prev != self._head.hash:
            problem = (
                f"record {expected} ({where}) does not link to record {expected - 1}: "
                "one of the two was rewritten with its hash recomputed, or replaced"
            )
            return _Break(expected, stream_seq, Problem.BROKEN_LINK, problem)
        return None

    def _look_for_displaced(self, stream_seq: int, data: bytes) -> None:
        """After a gap, tell a missing record from a moved one: does the one due come later?"""
        gap = self._gap
        if gap is None or gap.later_stream_seq:
            return
        try:
            seq = parse_record(data).seq
        except InvalidArgument:
            return
        if seq == gap.expected:
            gap.later_stream_seq = stream_seq

    def finish(self, *, last_stream_seq: int | None = None) -> Verification:
        """The verdict. `last_stream_seq`, the stream's own last sequence, exposes a cut tail.

        Without it, removing the newest records leaves a shorter chain that is
        still intact: nothing after them links back to what is gone.
        """
        broken = self._break or self._gap_break()
        if broken is None and last_stream_seq is not None:
            broken = self._tail_break(last_stream_seq)
        if broken is None:
            return Verification(intact=True, records_checked=self._checked, head=self._head)
        return Verification(
            intact=False,
            records_checked=self._checked,
            head=self._head,
            first_broken_seq=broken.seq,
            first_broken_stream_seq=broken.stream_seq,
            kind=broken.kind,
            problem=broken.problem,
        )

    def _gap_break(self) -> _Break | None:
        gap = self._gap
        if gap is None:
            return None
        where = f"stream message {gap.stream_seq} holds record {gap.found}"
        if gap.later_stream_seq:
            problem = (
                f"records are out of order: {where} where record {gap.expected} belongs; "
                f"record {gap.expected} comes later, in stream message {gap.later_stream_seq}"
            )
            return _Break(gap.expected, gap.stream_seq, Problem.OUT_OF_ORDER, problem)
        if gap.found == gap.expected + 1:
            problem = f"record {gap.expected} is missing: {where}"
        else:
            problem = f"records {gap.expected} to {gap.found - 1} are missing: {where}"
        if self._checked == 0:
            problem += (
                " (if a retention limit removed the oldest records, verify from the first"
                " record or from a kept checkpoint)"
            )
        return _Break(gap.expected, gap.stream_seq, Problem.MISSING, problem)

    def _tail_break(self, last_stream_seq: int) -> _Break | None:
        seen = self._last_stream_seq
        if last_stream_seq <= seen:
            return None
        expected = self._next_seq
        left = f"the last one left is {seen}" if seen else "none is left"
        problem = (
            f"records from {expected} on are missing: the stream's last message is "
            f"{last_stream_seq}, {left}"
        )
        # With nothing read, where the stream began is unknown; its last message is surely gone.
        first_gone = seen + 1 if seen else last_stream_seq
        return _Break(expected, first_gone, Problem.TRUNCATED, problem)


def verify_chain(
    messages: Iterable[tuple[int, bytes]],
    *,
    after: Checkpoint | None = GENESIS,
    last_stream_seq: int | None = None,
) -> Verification:
    """Verify `(stream_seq, stored bytes)` pairs in stream order; see `ChainVerifier`."""
    verifier = ChainVerifier(after=after)
    for stream_seq, data in messages:
        verifier.feed(stream_seq, data)
    return verifier.finish(last_stream_seq=last_stream_seq)
