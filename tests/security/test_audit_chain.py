"""The audit chain, pure: its encoding is what the docs say, and any single tampering shows.

Hypothesis builds random valid chains and damages one record (an altered
field, a changed byte, a removal, a swap, a replay); verification must call the
chain broken and name the first record that departs from the intact chain.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgegate_common.errors import InvalidArgument
from edgegate_security.audit.chain import (
    GENESIS,
    GENESIS_HASH,
    MAX_RECORD_BYTES,
    AuditEntry,
    AuditRecord,
    ChainVerifier,
    EventKind,
    Problem,
    canonical_json,
    check_entry,
    parse_record,
    utc_text,
    verify_chain,
)
from edgegate_security.core.reasons import Reason

_text = st.text(max_size=12)
_hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_details = st.dictionaries(
    st.text(alphabet=[chr(c) for c in range(0x21, 0x7F)], min_size=1, max_size=8),
    _text,
    max_size=3,
)
_entries = st.builds(
    AuditEntry,
    event=st.sampled_from([str(kind) for kind in EventKind]),
    reason=st.sampled_from([str(reason) for reason in Reason]),
    time=st.datetimes(timezones=st.just(UTC)).map(utc_text),
    replica=st.sampled_from(["security-0", "security-1"]),
    tenant=_text,
    subject=_text,
    token_id=_text,
    request_id=_text,
    details=_details,
)
Messages = list[tuple[int, bytes]]


def _seal_all(entries: list[AuditEntry]) -> list[AuditRecord]:
    records, after = [], GENESIS
    for entry in entries:
        records.append(AuditRecord.seal(entry, after=after))
        after = records[-1].checkpoint
    return records


@st.composite
def chains(draw: st.DrawFn, *, min_size: int = 1) -> tuple[list[AuditRecord], Messages]:
    """A valid chain and its stream messages (stream sequences need not start at 1)."""
    records = _seal_all(draw(st.lists(_entries, min_size=min_size, max_size=8)))
    first = draw(st.integers(min_value=1, max_value=10_000))
    return records, [(first + i, record.to_bytes()) for i, record in enumerate(records)]


def _other(data: st.DataObject, key: str, old: Any) -> Any:
    """A value of the same type as `old` that differs from it."""
    if key == "seq":
        new: Any = data.draw(st.integers(min_value=1, max_value=10**9), label="new seq")
        return new if new != old else old + 1
    if key in ("prev", "hash"):
        new = data.draw(_hex64, label=f"new {key}")
        return new if new != old else ("1" if old[0] == "0" else "0") + old[1:]
    if key == "details":
        new = data.draw(_details, label="new details")
        return new if new != old else {**old, "changed": old.get("changed", "") + "!"}
    new = data.draw(_text, label=f"new {key}")
    return new if new != old else old + "!"


@given(chains())
def test_an_untouched_chain_is_intact(chain: tuple[list[AuditRecord], Messages]) -> None:
    records, messages = chain
    result = verify_chain(messages, last_stream_seq=messages[-1][0])
    assert result.intact and result.kind is None and result.problem == ""
    assert result.records_checked == len(records)
    assert result.head == records[-1].checkpoint
    assert (result.first_broken_seq, result.first_broken_stream_seq) == (0, 0)


@given(chains(), st.data())
def test_altering_any_field_of_any_record_is_found(
    chain: tuple[list[AuditRecord], Messages], data: st.DataObject
) -> None:
    records, messages = chain
    i = data.draw(st.integers(0, len(records) - 1), label="record")
    fields = records[i].to_json()
    key = data.draw(st.sampled_from(sorted(set(fields) - {"v"})), label="field")
    fields[key] = _other(data, key, fields[key])
    messages[i] = (messages[i][0], canonical_json(fields))
    result = verify_chain(messages)
    assert not result.intact and result.kind is Problem.ALTERED
    assert result.first_broken_seq == i + 1
    assert result.first_broken_stream_seq == messages[i][0]
    assert result.records_checked == i
    assert f"record {i + 1} " in result.problem and "altered" in result.problem


@given(chains(), st.data())
def test_any_changed_byte_is_found(
    chain: tuple[list[AuditRecord], Messages], data: st.DataObject
) -> None:
    records, messages = chain
    i = data.draw(st.integers(0, len(records) - 1), label="record")
    stream_seq, stored = messages[i]
    at = data.draw(st.integers(0, len(stored) - 1), label="byte")
    mask = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(stored)
    changed[at] ^= mask
    messages[i] = (stream_seq, bytes(changed))
    result = verify_chain(messages)
    assert not result.intact and result.kind in (Problem.ALTERED, Problem.UNREADABLE)
    assert (result.first_broken_seq, result.first_broken_stream_seq) == (i + 1, stream_seq)


@given(chains(min_size=2), st.data())
def test_removing_any_record_from_the_middle_is_found(
    chain: tuple[list[AuditRecord], Messages], data: st.DataObject
) -> None:
    records, messages = chain
    i = data.draw(st.integers(0, len(records) - 2), label="record")
    del messages[i]
    result = verify_chain(messages)
    assert not result.intact and result.kind is Problem.MISSING
    assert (result.first_broken_seq, result.first_broken_stream_seq) == (i + 1, messages[i][0])
    assert f"record {i + 1} is missing" in result.problem


@given(chains())
def test_removing_the_newest_record_shows_against_the_streams_last_sequence(
    chain: tuple[list[AuditRecord], Messages],
) -> None:
    records, messages = chain
    last_stream_seq = messages[-1][0]
    messages.pop()
    # Nothing links back to a removed newest record: the chain alone cannot tell ...
    assert verify_chain(messages).intact
    # ... the stream's own last sequence can.
    result = verify_chain(messages, last_stream_seq=last_stream_seq)
    assert not result.intact and result.kind is Problem.TRUNCATED
    assert result.first_broken_seq == len(records)
    assert result.first_broken_stream_seq == last_stream_seq


@given(chains(min_size=2), st.data())
def test_swapping_any_two_records_is_found(
    chain: tuple[list[AuditRecord], Messages], data: st.DataObject
) -> None:
    records, messages = chain
    i = data.draw(st.integers(0, len(records) - 2), label="first")
    j = data.draw(st.integers(i + 1, len(records) - 1), label="second")
    (seq_i, data_i), (seq_j, data_j) = messages[i], messages[j]
    messages[i], messages[j] = (seq_i, data_j), (seq_j, data_i)
    result = verify_chain(messages)
    assert not result.intact and result.kind is Problem.OUT_OF_ORDER
    assert (result.first_broken_seq, result.first_broken_stream_seq) == (i + 1, seq_i)
    assert f"record {i + 1} comes later, in stream message {seq_j}" in result.problem


@given(chains(), st.data())
def test_a_replayed_record_is_found(
    chain: tuple[list[AuditRecord], Messages], data: st.DataObject
) -> None:
    records, messages = chain
    i = data.draw(st.integers(0, len(records) - 1), label="replayed")
    j = data.draw(st.integers(i + 1, len(records)), label="inserted before")
    stream_seqs = [seq for seq, _ in messages] + [messages[-1][0] + 1]
    payloads = [stored for _, stored in messages]
    payloads.insert(j, payloads[i])
    result = verify_chain(list(zip(stream_seqs, payloads, strict=True)))
    assert not result.intact and result.kind is Problem.OUT_OF_ORDER
    assert result.first_broken_seq == j + 1


@given(chains(), st.data(), st.binary(max_size=64))
def test_garbage_between_records_is_unreadable(
    chain: tuple[list[AuditRecord], Messages], data: st.DataObject, garbage: bytes
) -> None:
    records, messages = chain
    i = data.draw(st.integers(0, len(records) - 1), label="record")
    messages[i] = (messages[i][0], garbage)
    result = verify_chain(messages)
    assert not result.intact and result.kind is Problem.UNREADABLE
    assert result.first_broken_seq == i + 1
    assert f"stream message {messages[i][0]} is not an audit record" in result.problem


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@given(st.lists(st.binary(max_size=200) | _json.map(json.dumps).map(str.encode), min_size=1))
def test_garbage_never_crashes_verification(payloads: list[bytes]) -> None:
    result = verify_chain(enumerate(payloads, start=1))
    assert not result.intact and result.kind is Problem.UNREADABLE
    assert (result.first_broken_seq, result.first_broken_stream_seq) == (1, 1)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("seq", True),
        ("seq", 1.0),
        ("seq", "1"),
        ("seq", 0),
        ("v", 2),
        ("prev", "0" * 63),
        ("hash", "A" * 64),
        ("details", {"nested": {"a": "b"}}),
        ("tenant", None),
        ("extra", "x"),
    ],
)
def test_a_record_of_the_wrong_shape_is_unreadable(key: str, value: object) -> None:
    fields = _golden_record().to_json() | {key: value}
    result = verify_chain([(1, json.dumps(fields).encode())])
    assert result.kind is Problem.UNREADABLE and result.first_broken_seq == 1


def test_a_lone_surrogate_is_unreadable_not_a_crash() -> None:
    stored = _golden_record().to_bytes().replace(b'"acme"', b'"\\ud800"')
    assert b"ud800" in stored
    result = verify_chain([(1, stored)])
    assert result.kind is Problem.UNREADABLE and "not valid Unicode" in result.problem


def test_a_key_given_twice_is_an_alteration() -> None:
    stored = _golden_record().to_bytes()
    doubled = stored[:-1] + b',"tenant":"evil"}'
    result = verify_chain([(1, doubled)])
    assert result.kind is Problem.ALTERED and "not canonical" in result.problem


@given(chains(min_size=2), st.data())
def test_a_forged_record_with_its_hash_recomputed_breaks_the_next_link(
    chain: tuple[list[AuditRecord], Messages], data: st.DataObject
) -> None:
    records, messages = chain
    i = data.draw(st.integers(0, len(records) - 2), label="record")
    forged = AuditRecord.seal(
        AuditEntry(
            event="admin",
            reason="token_issued",
            time=utc_text(datetime.now(UTC)),
            replica="attacker",
        ),
        after=GENESIS if i == 0 else records[i - 1].checkpoint,
    )
    messages[i] = (messages[i][0], forged.to_bytes())
    result = verify_chain(messages)
    assert not result.intact and result.kind is Problem.BROKEN_LINK
    assert (result.first_broken_seq, result.first_broken_stream_seq) == (i + 2, messages[i + 1][0])


def test_a_rewritten_newest_record_changes_the_head_a_kept_checkpoint_names() -> None:
    """What the chain alone cannot see, comparing heads does: keep a verified head."""
    records = _seal_all([_golden_entry(), _golden_entry()])
    kept = verify_chain([(1, records[0].to_bytes()), (2, records[1].to_bytes())]).head
    forged = AuditRecord.seal(_golden_entry(tenant="someone-else"), after=records[0].checkpoint)
    later = verify_chain([(1, records[0].to_bytes()), (2, forged.to_bytes())])
    assert later.intact and later.head is not None and kept is not None
    assert later.head.seq == kept.seq and later.head != kept


@given(chains(min_size=2), st.data())
def test_verifying_from_a_checkpoint_or_from_the_first_record(
    chain: tuple[list[AuditRecord], Messages], data: st.DataObject
) -> None:
    """A stream whose oldest records a retention limit removed still verifies."""
    records, messages = chain
    k = data.draw(st.integers(1, len(records) - 1), label="records gone")
    rest = messages[k:]
    from_checkpoint = verify_chain(rest, after=records[k - 1].checkpoint)
    assert from_checkpoint.intact and from_checkpoint.records_checked == len(records) - k
    trusting_first = verify_chain(rest, after=None)
    assert trusting_first.intact and trusting_first.head == records[-1].checkpoint
    from_genesis = verify_chain(rest)
    assert from_genesis.kind is Problem.MISSING and from_genesis.first_broken_seq == 1
    assert "retention limit" in from_genesis.problem
    wrong_checkpoint = verify_chain(rest, after=records[k].checkpoint)
    assert wrong_checkpoint.kind is Problem.OUT_OF_ORDER


def test_the_verifier_takes_one_message_at_a_time() -> None:
    records = _seal_all([_golden_entry(), _golden_entry()])
    verifier = ChainVerifier()
    verifier.feed(1, records[0].to_bytes())
    verifier.feed(2, records[1].to_bytes())
    assert verifier.finish(last_stream_seq=2).records_checked == 2


# -- the encoding, as the module docstring promises it to auditors ------------


def _golden_entry(**changes: str) -> AuditEntry:
    fields = {
        "event": "deny",
        "reason": "scope_missing",
        "time": "2025-05-01T12:00:00.000000Z",
        "replica": "security-0",
        "tenant": "acme",
        "subject": "alice",
        "token_id": "jti-1",
        "request_id": "req-1",
    } | changes
    return AuditEntry(**fields, details={"scope": "infer", "note": "café"})


def _golden_record() -> AuditRecord:
    return AuditRecord.seal(_golden_entry(), after=GENESIS)


GOLDEN_CONTENT = (
    '{"details":{"note":"café","scope":"infer"},"event":"deny",'
    '"prev":"0000000000000000000000000000000000000000000000000000000000000000",'
    '"reason":"scope_missing","replica":"security-0","request_id":"req-1","seq":1,'
    '"subject":"alice","tenant":"acme","time":"2025-05-01T12:00:00.000000Z",'
    '"token_id":"jti-1","v":1}'
).encode()
GOLDEN_HASH = "bab4d1dce4132cafd70c189253e566145bcb579bbe3b47cea334bcaed176a525"


def test_the_hash_is_sha256_of_sorted_compact_utf8_json_without_the_hash() -> None:
    record = _golden_record()
    assert record.prev == GENESIS_HASH == "0" * 64
    assert record.hash == hashlib.sha256(GOLDEN_CONTENT).hexdigest() == GOLDEN_HASH
    stored = GOLDEN_CONTENT.replace(
        b'"event":"deny",', b'"event":"deny","hash":"%s",' % record.hash.encode()
    )
    assert record.to_bytes() == stored
    assert parse_record(stored) == record


def test_the_recipe_in_the_docs_recomputes_the_hash() -> None:
    record = json.loads(_golden_record().to_bytes())
    recomputed = hashlib.sha256(
        json.dumps(
            {k: v for k, v in record.items() if k != "hash"},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
    ).hexdigest()
    assert recomputed == record["hash"]


def test_times_are_utc_with_microseconds() -> None:
    at = datetime(2025, 5, 1, 14, 0, 0, 123, tzinfo=timezone(timedelta(hours=2)))
    assert utc_text(at) == "2025-05-01T12:00:00.000123Z"
    with pytest.raises(InvalidArgument, match="time zone"):
        utc_text(datetime(2025, 5, 1))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"details": {"token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"}}, "token"),
        ({"subject": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"}, "token"),
        ({"details": {"clé": "x"}}, "printable ASCII"),
        ({"details": {"": "x"}}, "printable ASCII"),
        ({"details": {"n": 1}}, "must be a string"),
        ({"tenant": chr(0xD800)}, "not valid Unicode"),
        ({"details": {"big": "x" * MAX_RECORD_BYTES}}, "may hold"),
        ({"reason": ""}, "needs an event and a reason"),
    ],
)
def test_entries_that_may_not_be_stored_are_refused(
    changes: dict[str, object], message: str
) -> None:
    fields = {"event": "deny", "reason": "scope_missing", "time": "t", "replica": "r"} | changes
    with pytest.raises(InvalidArgument, match=message):
        check_entry(AuditEntry(**fields))  # type: ignore[arg-type]
