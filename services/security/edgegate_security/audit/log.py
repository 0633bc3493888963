"""The audit log on JetStream: an ordered background writer (reading: `reader.py`).

Writing. `AuditLog.append` checks an entry and queues it, so a request never
waits for JetStream; it waits only while `max_pending` entries are already
queued, because an audit log that drops records when its store is slow is not
one. A single background task writes the queue in order, in bursts: it seals
each entry after the stream's tail and publishes the whole burst before
awaiting any ack (pipelining is what makes it several times faster than one
round trip per record).

Two replicas appending at once cannot fork the chain, because the server
checks every publish before storing it:
- `Nats-Expected-Last-Sequence`: stored only if the stream still ends where
  the writer sealed against;
- `Nats-Expected-Last-Msg-Id` on all but the first of a burst (every record's
  `Nats-Msg-Id` is its hash): stored only if the previous record of the burst
  is the last message. The sequence alone would not do: once a rival's message
  slipped in and one record was refused, the next one's expected sequence
  would match again, and it would land with a `prev` naming a refused record.
A refused publish means a rival got there first: the writer re-reads the tail,
re-seals what is left and tries again, at once a few times and then after a
growing, jittered pause; it never gives a record up. A publish whose ack never
came (a timeout, a NATS restart) is looked up at the one stream sequence it
could occupy before anything else is written, so it is neither lost nor
written twice.

The stream holds the audit subject alone (the expectations are on the stream's
last sequence, and verification reads every message), and is created with
`deny_delete` and `deny_purge`: the server then refuses to delete records
through its API, and refuses a later configuration that would drop the flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    Header,
    StorageType,
    StreamConfig,
)

from edgegate_common import subjects
from edgegate_common.bus import TRANSIENT, Bus, ensure_stream
from edgegate_common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
)
from edgegate_common.logging import get_logger
from edgegate_security.audit.acks import Acks, Refusal
from edgegate_security.audit.browse import AuditPage, AuditQuery, browse
from edgegate_security.audit.chain import (
    GENESIS,
    AuditEntry,
    AuditRecord,
    Checkpoint,
    EventKind,
    Verification,
    check_entry,
    parse_record,
    utc_text,
)
from edgegate_security.audit.reader import verify_stream
from edgegate_security.core.reasons import Reason

log = get_logger(__name__)

_QUICK_RETRIES = 3  # conflicts retried at once before the writer starts to pause
_MAX_PAUSE_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditStream:
    """Where the log lives. `protected=False` only for tests that must delete records."""

    name: str = subjects.STREAM_AUDIT
    subject: str = subjects.SECURITY_AUDIT
    protected: bool = True
    num_replicas: int = 1

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=[self.subject],
            storage=StorageType.FILE,
            num_replicas=self.num_replicas,
            deny_delete=self.protected,
            deny_purge=self.protected,
            # Message ids exist for Nats-Expected-Last-Msg-Id, not for de-duplication;
            # the shortest window keeps the server from remembering millions of them.
            duplicate_window=0.1,
        )


@dataclass(frozen=True, slots=True)
class _Tail:
    """The stream's last message and the chain position it holds."""

    stream_seq: int
    head: Checkpoint


@dataclass(frozen=True, slots=True)
class _Link:
    js: JetStreamContext
    acks: Acks


def _pause_s(failures: int) -> float:
    """Exponential, jittered: two replicas that collided do not collide again in step."""
    return min(_MAX_PAUSE_S, 0.005 * 2.0**failures) * (0.5 + random.random() / 2)  # noqa: S311


class AuditLog:
    """Appends decisions to the hash-chained audit stream; one per process.

    `replica` names this process in every record it writes (a pod name, say).
    """

    def __init__(
        self,
        *,
        replica: str,
        stream: AuditStream | None = None,
        max_pending: int = 10_000,
        max_burst: int = 256,
        ack_timeout_s: float = 5.0,
    ) -> None:
        self._link: _Link | None = None  # the NATS connection, from start()
        self._replica = replica
        self._stream = stream or AuditStream()
        self._queue: asyncio.Queue[AuditEntry] = asyncio.Queue(maxsize=max_pending)
        self._max_burst = max_burst
        self._ack_timeout_s = ack_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._tail: _Tail | None = None  # None: read it before the next publish
        self._doubt: tuple[list[AuditRecord], int] | None = None  # acks lost; where they'd be
        self._unwritten: list[AuditEntry] = []  # taken from the queue, not yet stored
        self._queued_total = 0  # entries appended; the nth is stored once written_total >= n
        self._progress: list[asyncio.Future[None]] = []  # flushes waiting for the writer
        self.written_total = 0  # records stored by this process
        self.conflicts_total = 0  # bursts refused because another writer got there first

    @property
    def _nats(self) -> _Link:
        if self._link is None:
            raise FailedPrecondition("the audit log is not running: start() it first")
        return self._link

    @property
    def pending(self) -> int:
        """Entries appended and not yet stored."""
        return self._queue.qsize() + len(self._unwritten)

    async def start(self, bus: Bus) -> None:
        """Declare the stream (idempotent) and start the writer on `bus`.

        The connection comes here, not to the constructor, so that whoever
        records decisions can hold the log before the service has connected.
        """
        if self._task is not None:
            return
        link = _Link(js=bus.js, acks=Acks(bus))
        await ensure_stream(link.js, self._stream.config())
        self._link = link
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def append(
        self,
        *,
        event: EventKind,
        reason: Reason,
        tenant: str = "",
        subject: str = "",
        token_id: str = "",
        request_id: str = "",
        details: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Queue one record. InvalidArgument for an entry that may not be stored (a token in it)."""
        if self._task is None or self._closed:
            raise FailedPrecondition("the audit log is not running: start() it, and not close()")
        entry = AuditEntry(
            event=str(event),
            reason=str(reason),
            time=utc_text(at or datetime.now(UTC)),
            replica=self._replica,
            tenant=tenant,
            subject=subject,
            token_id=token_id,
            request_id=request_id,
            details=dict(details or {}),
        )
        check_entry(entry)
        await self._queue.put(entry)
        self._queued_total += 1  # no await since the put: numbered in queue order

    async def flush(self, *, timeout_s: float | None = None) -> None:
        """Wait until everything appended so far is stored.

        Only that far: records appended meanwhile, which a busy service never
        stops doing, do not keep the caller waiting.
        """
        target = self._queued_total
        try:
            await asyncio.wait_for(self._written(target), timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self.pending} audit records still unwritten after {timeout_s:g}s"
            ) from None

    async def close(self, *, timeout_s: float = 5.0) -> int:
        """Stop taking entries, write the queue for up to `timeout_s`, stop; return how many
        entries were left unwritten (0 is the only good answer; they are logged too)."""
        if self._closed:
            return self.pending
        self._closed = True
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout_s)
            self._task.cancel()
            await asyncio.wait([self._task])
        if self._link is not None:
            await self._link.acks.close()
        if self.pending:
            log.error("audit records lost at shutdown", count=self.pending)
        return self.pending

    async def verify(
        self, *, after: Checkpoint | None = GENESIS, from_stream_seq: int = 1
    ) -> Verification:
        """Verify this log's stream; see `verify_stream`."""
        return await verify_stream(
            self._nats.js, stream=self._stream.name, after=after, from_stream_seq=from_stream_seq
        )

    async def browse(self, query: AuditQuery) -> AuditPage:
        """One page of this log's records, newest first; see `browse.browse`."""
        return await browse(self._nats.js, query, stream=self._stream.name)

    async def _written(self, count: int) -> None:
        while self.written_total < count:
            future = asyncio.get_running_loop().create_future()
            self._progress.append(future)
            await future

    # -- the writer ------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_burst and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._unwritten = batch
            try:
                await self._write()
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self) -> None:
        """Store `self._unwritten` in order; return only once all of it is stored."""
        failures = 0
        while self._unwritten:
            stored = 0
            try:
                stored = await self._attempt(self._unwritten)
            except FailedPrecondition as exc:
                log.error("audit log cannot extend its chain", problem=exc.message)
                failures = max(failures, 8)  # a person has to look: retry slowly meanwhile
            except TRANSIENT as exc:
                log.warning("audit write failed; retrying", error=repr(exc))
                self._tail = None
            except Exception:
                log.exception("audit writer failed; retrying")
                self._tail = None
            self._unwritten = self._unwritten[stored:]
            self.written_total += stored
            if stored:
                self._wake_flushes()
                failures = 0  # progress (a conflict may still leave some): go on at once
                continue
            failures += 1
            if failures > _QUICK_RETRIES:
                await asyncio.sleep(_pause_s(failures))

    def _wake_flushes(self) -> None:
        for future in self._progress:
            if not future.done():
                future.set_result(None)
        self._progress.clear()

    async def _attempt(self, entries: list[AuditEntry]) -> int:
        """One try at storing a prefix of `entries`; return its length (0 after a conflict)."""
        if self._doubt is not None:
            doubted, stream_seq = self._doubt
            found = await self._find_stored(doubted, stream_seq=stream_seq)
            self._doubt, self._tail = None, None
            return found
        tail = self._tail or await self._read_tail()
        records: list[AuditRecord] = []
        after = tail.head
        for entry in entries:
            records.append(AuditRecord.seal(entry, after=after))
            after = records[-1].checkpoint
        try:
            acked, stopped = await self._publish(records, after_stream_seq=tail.stream_seq)
        except BaseException:
            self._doubt, self._tail = (records, tail.stream_seq + 1), None
            raise
        self._tail = None
        if stopped is None:
            self._tail = _Tail(tail.stream_seq + acked, records[-1].checkpoint)
        elif stopped is Refusal.NO_ACK:
            log.info("audit acks missing; looking the records up", count=len(records) - acked)
            self._doubt = (records[acked:], tail.stream_seq + acked + 1)
        elif stopped is Refusal.CONFLICT:
            self.conflicts_total += 1
        return acked

    async def _publish(
        self, records: list[AuditRecord], *, after_stream_seq: int
    ) -> tuple[int, Refusal | None]:
        """Publish pipelined; return how many were stored, and what stopped the rest."""
        futures = []
        try:
            for i, record in enumerate(records):
                headers: dict[str, str] = {
                    Header.EXPECTED_LAST_SEQUENCE: str(after_stream_seq + i),
                    Header.MSG_ID: record.hash,
                }
                if i:
                    headers[Header.EXPECTED_LAST_MSG_ID] = records[i - 1].hash
                data = record.to_bytes()
                futures.append(await self._nats.acks.publish(self._stream.subject, data, headers))
            await asyncio.wait(futures, timeout=self._ack_timeout_s)
            acked = 0
            for future in futures:
                result = future.result() if future.done() else Refusal.NO_ACK
                if isinstance(result, Refusal):
                    return acked, result  # refused: so is everything after it (or unknown)
                acked += 1
            return acked, None
        finally:
            self._nats.acks.forget()

    async def _find_stored(self, records: list[AuditRecord], *, stream_seq: int) -> int:
        """How many of `records` were stored, despite lost acks, at `stream_seq` onwards.

        Each could only land at one sequence (its expected last sequence plus one),
        and only after the one before it, so the answer is a prefix.
        """
        found = 0
        for record in records:
            try:
                msg = await self._nats.js.get_msg(self._stream.name, seq=stream_seq + found)
            except nats.js.errors.NotFoundError:
                break
            if msg.data != record.to_bytes():
                break
            found += 1
        return found

    async def _read_tail(self) -> _Tail:
        info = await self._nats.js.stream_info(self._stream.name)
        last = info.state.last_seq or 0
        if last == 0:
            return _Tail(0, GENESIS)
        where = f"the audit stream's last message ({self._stream.name} #{last})"
        try:
            msg = await self._nats.js.get_msg(self._stream.name, seq=last)
        except nats.js.errors.NotFoundError:
            raise FailedPrecondition(
                f"{where} is gone, so the chain cannot go on from it: run `edgegate audit verify`"
            ) from None
        try:
            record = parse_record(msg.data or b"")
        except InvalidArgument as exc:
            raise FailedPrecondition(f"{where} is not an audit record: {exc.message}") from None
        return _Tail(last, record.checkpoint)
