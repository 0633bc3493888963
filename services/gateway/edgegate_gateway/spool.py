"""The offline spool: what the gateway accepts while NATS is unreachable, and its replay.

Without NATS the security service cannot admit anything, so the gateway
keeps a short memory of the callers it admitted lately (bearer token →
principal, for at most `REMEMBER_CALLER_S` and never past the token's
expiry). While NATS is away, a message that may wait (a task, a deferrable
send) from such a caller is checked against what the taskstore would
refuse (`edgegate_common.tasks`), written to the disk outbox
(`adapters/outbox.py`), and the caller gets the task it will become: the
same id the taskstore gives it, because both derive it with the same rule.

Once NATS is back, `replay` has each entry admitted again in full (its
caller may have lost the right meanwhile; its rate was spent when it was
accepted) and hands it to the taskstore. Nothing here decides how a message
is admitted: the pipeline passes its admission in.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from edgegate_common import tasks
from edgegate_common.bus import Bus
from edgegate_common.credentials import bearer_token
from edgegate_common.errors import EdgegateError, ResourceExhausted, Unavailable
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.outbox import Outbox
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)

# How long an admitted caller may still leave messages in the outbox while NATS is away.
REMEMBER_CALLER_S = 3600.0
MAX_REMEMBERED_CALLERS = 10_000
MAX_REPLAY_REFUSALS = 30  # an outbox entry refused as too much this often is set aside

# Security's admission of a message accepted earlier (envelope, credential); raises its refusal.
Admit = Callable[[env.Envelope, str], Awaitable[None]]


class OfflineSpool:
    def __init__(self, outbox: Outbox, *, bus: Bus, taskstore: TaskstoreClient) -> None:
        self._outbox = outbox
        self._bus = bus
        self._taskstore = taskstore
        # Callers admitted lately (bearer token → principal, until when), oldest first.
        self._callers: dict[str, tuple[principal_pb2.Principal, float]] = {}
        self._replay_refusals: Counter[str] = Counter()  # outbox file → RESOURCE_EXHAUSTED seen

    @property
    def nats_away(self) -> bool:
        """NATS is unreachable: what may wait is kept here instead."""
        return not self._bus.connected

    def remember(self, credential: str, principal: principal_pb2.Principal) -> None:
        """`principal` was just admitted with `credential`: it may leave messages for a while."""
        token = bearer_token(credential)
        until = time.monotonic() + REMEMBER_CALLER_S
        if principal.HasField("expires_at"):
            until = min(until, time.monotonic() + principal.expires_at.ToSeconds() - time.time())
        self._callers.pop(token, None)
        self._callers[token] = (principal, until)
        while len(self._callers) > MAX_REMEMBERED_CALLERS:
            del self._callers[next(iter(self._callers))]

    async def keep(self, envelope: env.Envelope, *, credential: str) -> tpb.Task:
        """Keep the message in the outbox; the task it will become.

        Called when admission failed for want of NATS, after it gave the
        envelope its id and arrival time. UNAVAILABLE for a caller not
        admitted lately; INVALID_ARGUMENT for what the taskstore would refuse.
        """
        token = bearer_token(credential)
        principal = self._recent_caller(token)
        user = envelope.user or principal.subject
        envelope.tenant, envelope.user = principal.tenant, user
        task = tasks.new_task(envelope, tenant=principal.tenant, user=user)
        tasks.check_envelope(task.envelope)
        entry = gpb.OutboxEntry(envelope=envelope, credential=token, task_id=task.id)
        entry.accepted_at.CopyFrom(task.created_at)
        await asyncio.to_thread(self._outbox.put, entry)  # fsyncs: off the event loop
        log.warning("nats unreachable: message kept in the outbox", task=task.id)
        return task

    def _recent_caller(self, token: str) -> principal_pb2.Principal:
        known = self._callers.get(token)
        if known is None or known[1] < time.monotonic():
            raise Unavailable(
                "NATS is unreachable and this credential was not admitted lately; try again"
            )
        return known[0]

    async def replay(self, *, admit: Admit) -> int:
        """Hand what the outbox keeps to the taskstore, each admitted again by `admit`;
        how many went. Stops while NATS (or a service it needs) is away."""
        if not self._outbox.count():
            return 0
        replayed = 0
        for stored in self._outbox.pending():
            envelope, credential = stored.entry.envelope, stored.entry.credential
            try:
                await admit(envelope, credential)
                task = await self._taskstore.submit(envelope, credential=credential)
            except Unavailable as exc:
                log.info("outbox replay waits", why=exc.message, left=self._outbox.count())
                break
            except ResourceExhausted as exc:
                # The store is full (it frees up), or this message is too big for it (it
                # never will): the next ones go on, and a message refused too often is set aside.
                self._replay_refusals[stored.path.name] += 1
                if self._replay_refusals[stored.path.name] < MAX_REPLAY_REFUSALS:
                    log.info("outbox entry waits", task=stored.entry.task_id, why=exc.message)
                    continue
                self._outbox.reject(stored.path, f"{exc.code.name}: {exc.message}")
                continue
            except EdgegateError as exc:
                log.error(
                    "outbox entry refused on replay", task=stored.entry.task_id, why=exc.message
                )
                self._outbox.reject(stored.path, f"{exc.code.name}: {exc.message}")
                continue
            if task.id != stored.entry.task_id:
                log.error(
                    "outbox replay named another task", kept=stored.entry.task_id, got=task.id
                )
            self._outbox.done(stored.path)
            replayed += 1
        if replayed:
            log.info("outbox replayed", messages=replayed, left=self._outbox.count())
        return replayed
