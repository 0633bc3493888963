"""Session state that several devices edit offline and merge in any order.

A conversation's state has three kinds of entries, each conflict-free: merging
is commutative, associative and idempotent, so every replica and device that
has seen the same edits holds the same state, whatever order they arrived in.

- **fields**: last-writer-wins registers. The write with the latest hybrid
  logical clock (HLC) timestamp wins; a delete is a write that leaves a
  tombstone, so an older write arriving later cannot resurrect the field.
- **sets**: add-wins (observed-remove) sets. Every add carries a unique tag;
  a remove cancels only the tags it saw, so an add made concurrently with a
  remove survives it.
- **counters**: per-device totals of increments and decrements; the value is
  their difference. A device only ever raises its own totals.

Why not pycrdt (Yjs)? Yjs orders concurrent writes to a map key by client
id, not by time: when a phone sets a field at 10:00 and a laptop at 10:05,
both offline, Yjs may keep the phone's value. People expect the later edit
to win, which is what an HLC gives (and within the clock skew the service
allows, it does). Yjs updates are also opaque bytes, which the service could
not check for size, clock skew or valid JSON before storing them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from edgegate_common.errors import InvalidArgument

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, order=True, slots=True)
class Hlc:
    """A hybrid logical clock reading: wall time, then a counter, then the device as tie-break."""

    wall_ms: int
    counter: int
    node: str


class HybridClock:
    """A device's clock: readings never go backwards, and follow what it has seen.

    `now()` stamps a local edit; `observe()` takes in a timestamp from merged
    state, so the device's next edit orders after everything it has seen even
    when its own wall clock is behind.
    """

    def __init__(self, node: str, *, wall_ms: Callable[[], int] | None = None) -> None:
        if not node:
            raise ValueError("a clock needs a non-empty node (device) id")
        self.node = node
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._last = Hlc(0, 0, node)

    def now(self) -> Hlc:
        wall = max(self._wall_ms(), self._last.wall_ms)
        counter = self._last.counter + 1 if wall == self._last.wall_ms else 0
        self._last = Hlc(wall, counter, self.node)
        return self._last

    def observe(self, seen: Hlc) -> None:
        if (seen.wall_ms, seen.counter) > (self._last.wall_ms, self._last.counter):
            self._last = Hlc(seen.wall_ms, seen.counter, self.node)


@dataclass(frozen=True, slots=True)
class Field:
    value_json: str
    at: Hlc
    deleted: bool = False

    def order(self) -> tuple[Hlc, bool, str]:
        # Two writes with the very same timestamp (a buggy device) still pick
        # one winner the same way everywhere.
        return (self.at, self.deleted, self.value_json)


@dataclass(frozen=True, slots=True)
class Element:
    adds: frozenset[str]
    removes: frozenset[str] = frozenset()

    @property
    def present(self) -> bool:
        return bool(self.adds - self.removes)


@dataclass(frozen=True, slots=True)
class Counter:
    increments: Mapping[str, int] = field(default_factory=dict)
    decrements: Mapping[str, int] = field(default_factory=dict)

    @property
    def value(self) -> int:
        return sum(self.increments.values()) - sum(self.decrements.values())


@dataclass(frozen=True, slots=True)
class State:
    fields: Mapping[str, Field] = field(default_factory=dict)
    sets: Mapping[str, Mapping[str, Element]] = field(default_factory=dict)
    counters: Mapping[str, Counter] = field(default_factory=dict)

    def view(self) -> dict[str, object]:
        """What the state says, as plain values: live fields, present set members, counts."""
        return {
            "fields": {
                k: json.loads(f.value_json) for k, f in self.fields.items() if not f.deleted
            },
            "sets": {k: sorted(v for v, e in s.items() if e.present) for k, s in self.sets.items()},
            "counters": {k: c.value for k, c in self.counters.items()},
        }


def merge(a: State, b: State) -> State:
    return State(
        fields=_join(a.fields, b.fields, _latest),
        sets=_join(a.sets, b.sets, lambda x, y: _join(x, y, _union)),
        counters=_join(a.counters, b.counters, _counter_max),
    )


def _join(a: Mapping[K, V], b: Mapping[K, V], pick: Callable[[V, V], V]) -> dict[K, V]:
    joined = dict(a)
    for key, value in b.items():
        joined[key] = pick(joined[key], value) if key in joined else value
    return joined


def _latest(x: Field, y: Field) -> Field:
    return x if x.order() >= y.order() else y


def _union(x: Element, y: Element) -> Element:
    return Element(adds=x.adds | y.adds, removes=x.removes | y.removes)


def _counter_max(x: Counter, y: Counter) -> Counter:
    return Counter(
        increments=_join(x.increments, y.increments, max),
        decrements=_join(x.decrements, y.decrements, max),
    )


def check(state: State, *, now_ms: int, max_skew_ms: int) -> None:
    """Refuse state no honest device sends: future timestamps, missing nodes, bad JSON.

    A timestamp further ahead of the service's clock than `max_skew_ms` would
    win every later merge; it is refused rather than stored.
    """
    limit = now_ms + max_skew_ms
    for key, value in state.fields.items():
        if value.at.wall_ms > limit:
            raise InvalidArgument(
                f"field {key!r} is stamped {value.at.wall_ms - now_ms} ms in the future; "
                f"clocks may differ by at most {max_skew_ms} ms",
                details={"field": f"fields.{key}"},
            )
        if not value.at.node:
            raise InvalidArgument(f"field {key!r} has no node in its timestamp")
        if not value.deleted:
            try:
                json.loads(value.value_json)
            except ValueError:
                raise InvalidArgument(f"field {key!r} is not valid JSON") from None
