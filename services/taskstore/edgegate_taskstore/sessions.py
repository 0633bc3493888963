"""Session state per conversation, in the KV bucket `edgegate-sessions`, merged with CRDTs.

MergeState reads the stored state, joins the device's state into it
(`core.crdt.merge`) and writes it back with compare-and-set, reading again on
a conflict; since merging is a join, concurrent merges from several devices
all land, in any order. State belongs to one user (the devices of one
person): the key is `<tenant>.<user>.<sha256 of the conversation>`, so
conversation ids are free-form and neither tenants nor users share state.
"""

from __future__ import annotations

import hashlib
import time

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from edgegate_common import subjects
from edgegate_common.bus import TRANSIENT, ensure_key_value
from edgegate_common.errors import FailedPrecondition, InvalidArgument, Unavailable
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.core import crdt


class SessionStates:
    def __init__(self, kv: KeyValue, *, max_bytes: int, max_skew_ms: int) -> None:
        self._kv = kv
        self._max_bytes = max_bytes
        self._max_skew_ms = max_skew_ms

    @classmethod
    async def open(
        cls, js: JetStreamContext, *, replicas: int, max_bytes: int, max_skew_ms: int
    ) -> SessionStates:
        kv = await ensure_key_value(
            js,
            KeyValueConfig(
                bucket=subjects.KV_SESSIONS,
                history=1,
                storage=StorageType.FILE,
                replicas=replicas,
                max_value_size=max_bytes,
            ),
        )
        return cls(kv, max_bytes=max_bytes, max_skew_ms=max_skew_ms)

    async def get(self, tenant: str, user: str, conversation: str) -> pb.SessionState:
        state, _ = await self._read(_key(tenant, user, conversation), conversation)
        return state

    async def merge(self, tenant: str, user: str, incoming: pb.SessionState) -> pb.SessionState:
        if not incoming.conversation:
            raise InvalidArgument("state.conversation is required", details={"field": "state"})
        if incoming.ByteSize() > self._max_bytes:
            raise InvalidArgument(
                f"state of {incoming.ByteSize()} bytes exceeds the limit of {self._max_bytes}"
            )
        theirs = from_proto(incoming)
        crdt.check(theirs, now_ms=time.time_ns() // 1_000_000, max_skew_ms=self._max_skew_ms)
        key = _key(tenant, user, incoming.conversation)
        while True:
            stored, revision = await self._read(key, incoming.conversation)
            merged = to_proto(crdt.merge(from_proto(stored), theirs), incoming.conversation)
            data = merged.SerializeToString(deterministic=True)
            if len(data) > self._max_bytes:
                raise FailedPrecondition(  # full until entries are removed; a retry fails alike
                    f"the merged state would be {len(data)} bytes; the limit is {self._max_bytes}"
                )
            try:
                if revision:
                    await self._kv.update(key, data, last=revision)
                else:
                    await self._kv.create(key, data)
                return merged
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another device merged in between: join with that too
            except TRANSIENT as exc:
                raise Unavailable(f"cannot store session state: {exc!r}") from exc

    async def _read(self, key: str, conversation: str) -> tuple[pb.SessionState, int]:
        try:
            entry = await self._kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return pb.SessionState(conversation=conversation), 0
        except TRANSIENT as exc:
            raise Unavailable(f"cannot read session state: {exc!r}") from exc
        return pb.SessionState.FromString(entry.value or b""), entry.revision or 0


def _key(tenant: str, user: str, conversation: str) -> str:
    if not conversation:
        raise InvalidArgument("conversation is required", details={"field": "conversation"})
    if not user:
        raise InvalidArgument("session state needs a user: the token names no subject")
    digest = hashlib.sha256(conversation.encode()).hexdigest()[:40]
    return f"{subjects.ident(tenant)}.{subjects.ident(user)}.{digest}"


def from_proto(state: pb.SessionState) -> crdt.State:
    return crdt.State(
        fields={
            k: crdt.Field(
                value_json=v.value_json,
                at=crdt.Hlc(v.at.wall_ms, v.at.counter, v.at.node),
                deleted=v.deleted,
            )
            for k, v in state.fields.items()
        },
        sets={
            name: {
                value: crdt.Element(adds=frozenset(e.add_tags), removes=frozenset(e.remove_tags))
                for value, e in s.elements.items()
            }
            for name, s in state.sets.items()
        },
        counters={
            name: crdt.Counter(increments=dict(c.increments), decrements=dict(c.decrements))
            for name, c in state.counters.items()
        },
    )


def to_proto(state: crdt.State, conversation: str) -> pb.SessionState:
    out = pb.SessionState(conversation=conversation)
    for key, written in state.fields.items():
        out.fields[key].CopyFrom(
            pb.LwwValue(
                value_json=written.value_json,
                deleted=written.deleted,
                at=pb.HlcTimestamp(
                    wall_ms=written.at.wall_ms, counter=written.at.counter, node=written.at.node
                ),
            )
        )
    for name, elements in state.sets.items():
        target = out.sets[name]
        for member, element in elements.items():
            target.elements[member].add_tags.extend(sorted(element.adds))
            target.elements[member].remove_tags.extend(sorted(element.removes))
    for name, counter in state.counters.items():
        out.counters[name].increments.update(counter.increments)
        out.counters[name].decrements.update(counter.decrements)
    return out
