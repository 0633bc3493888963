"""Session state CRDTs: merges commute, associate and are idempotent; the semantics users expect."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegate_common.errors import InvalidArgument
from edgegate_taskstore.core import crdt
from edgegate_taskstore.sessions import from_proto, to_proto

NODES = ("phone", "laptop", "tablet")
hlcs = st.builds(
    crdt.Hlc,
    wall_ms=st.integers(0, 50),
    counter=st.integers(0, 3),
    node=st.sampled_from(NODES),
)
fields = st.builds(
    crdt.Field,
    value_json=st.sampled_from(['"a"', '"b"', "1", "null", '{"x": [1]}']),
    at=hlcs,
    deleted=st.booleans(),
)
elements = st.builds(
    crdt.Element,
    adds=st.frozensets(st.sampled_from(["t1", "t2", "t3", "t4"])),
    removes=st.frozensets(st.sampled_from(["t1", "t2", "t3", "t4"])),
)
counters = st.builds(
    crdt.Counter,
    increments=st.dictionaries(st.sampled_from(NODES), st.integers(0, 9)),
    decrements=st.dictionaries(st.sampled_from(NODES), st.integers(0, 9)),
)
states = st.builds(
    crdt.State,
    fields=st.dictionaries(st.sampled_from(["title", "lang", "mode"]), fields),
    sets=st.dictionaries(
        st.sampled_from(["tags", "pinned"]),
        st.dictionaries(st.sampled_from(["x", "y", "z"]), elements),
    ),
    counters=st.dictionaries(st.sampled_from(["unread", "likes"]), counters),
)


@settings(max_examples=300)
@given(states, states)
def test_merge_commutes(a: crdt.State, b: crdt.State) -> None:
    assert crdt.merge(a, b) == crdt.merge(b, a)


@settings(max_examples=300)
@given(states, states, states)
def test_merge_associates(a: crdt.State, b: crdt.State, c: crdt.State) -> None:
    assert crdt.merge(crdt.merge(a, b), c) == crdt.merge(a, crdt.merge(b, c))


@settings(max_examples=300)
@given(states, states)
def test_merge_is_idempotent(a: crdt.State, b: crdt.State) -> None:
    ab = crdt.merge(a, b)
    assert crdt.merge(a, a) == a
    assert crdt.merge(ab, b) == ab


@settings(max_examples=200)
@given(states)
def test_state_survives_the_wire(state: crdt.State) -> None:
    assert from_proto(to_proto(state, "c")) == state


def test_the_later_edit_wins_even_from_a_device_with_a_lower_id() -> None:
    # Yjs would order these by client id; an HLC orders them by time.
    phone = crdt.State(fields={"title": crdt.Field('"early"', crdt.Hlc(1000, 0, "zz-phone"))})
    laptop = crdt.State(fields={"title": crdt.Field('"late"', crdt.Hlc(2000, 0, "aa-laptop"))})
    assert crdt.merge(phone, laptop).view()["fields"] == {"title": "late"}


def test_an_older_write_cannot_resurrect_a_deleted_field() -> None:
    deleted = crdt.State(fields={"mode": crdt.Field("null", crdt.Hlc(20, 0, "a"), deleted=True)})
    older = crdt.State(fields={"mode": crdt.Field('"dark"', crdt.Hlc(10, 0, "b"))})
    assert crdt.merge(older, deleted).view()["fields"] == {}


def test_an_add_concurrent_with_a_remove_wins() -> None:
    base = crdt.State(sets={"tags": {"x": crdt.Element(adds=frozenset({"t1"}))}})
    removed = crdt.State(
        sets={"tags": {"x": crdt.Element(adds=frozenset({"t1"}), removes=frozenset({"t1"}))}}
    )
    re_added = crdt.State(sets={"tags": {"x": crdt.Element(adds=frozenset({"t1", "t2"}))}})
    assert crdt.merge(base, removed).view()["sets"] == {"tags": []}
    assert crdt.merge(removed, re_added).view()["sets"] == {"tags": ["x"]}


def test_counters_add_up_across_devices() -> None:
    phone = crdt.State(counters={"unread": crdt.Counter({"phone": 3}, {"phone": 1})})
    laptop = crdt.State(counters={"unread": crdt.Counter({"laptop": 2})})
    later_phone = crdt.State(counters={"unread": crdt.Counter({"phone": 5}, {"phone": 1})})
    merged = crdt.merge(crdt.merge(phone, laptop), later_phone)
    assert merged.view()["counters"] == {"unread": 6}


def test_a_hybrid_clock_never_goes_back_and_follows_what_it_saw() -> None:
    wall = [1000]
    clock = crdt.HybridClock("phone", wall_ms=lambda: wall[0])
    first = clock.now()
    second = clock.now()
    assert second > first and second.wall_ms == 1000 and second.counter == 1
    wall[0] = 900  # the device's clock jumps back
    assert clock.now() > second
    clock.observe(crdt.Hlc(5000, 7, "laptop"))
    after = clock.now()
    assert (after.wall_ms, after.counter, after.node) == (5000, 8, "phone")


def test_state_from_the_future_or_with_bad_json_is_refused() -> None:
    future = crdt.State(fields={"t": crdt.Field('"x"', crdt.Hlc(200_000, 0, "a"))})
    with pytest.raises(InvalidArgument, match="in the future"):
        crdt.check(future, now_ms=100_000, max_skew_ms=60_000)
    broken = crdt.State(fields={"t": crdt.Field("{not json", crdt.Hlc(1, 0, "a"))})
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        crdt.check(broken, now_ms=100_000, max_skew_ms=60_000)
    nameless = crdt.State(fields={"t": crdt.Field('"x"', crdt.Hlc(1, 0, ""))})
    with pytest.raises(InvalidArgument, match="no node"):
        crdt.check(nameless, now_ms=100_000, max_skew_ms=60_000)
