"""Workers: take queued tasks, run them through inference, finish each exactly once.

One scheduler per replica keeps up to `concurrency` tasks running. It takes
from the high, then normal, then low queue; when all are empty it waits for
something to be queued (or a one-second tick, for delayed redeliveries).

Running one delivery of a task:

1. Read the record. A finished one (a redelivery after a crash) is reported
   if nobody reported it yet (`events.report`) and acknowledged.
2. A round that another queue message is running (its `claim`) is left to it.
   A record security never admitted (no `admitted_by` of its tenant: written
   straight into the stream, not by Submit) is failed, never run.
3. No replica is known to serve the model: hand it back with a delay; not an
   attempt.
4. Out of attempts: dead-letter, then `failed`, report, ack.
5. Compare-and-set to `processing` with one more attempt, claimed by this
   queue message, then call inference, telling JetStream "in progress"
   while it runs.
6. Success: compare-and-set to `completed` with the reply, report, ack.
   Failure: a permanent one (or the last attempt) goes to dead-letter;
   a transient one comes back after a jittered backoff.

The record's compare-and-set is what makes it exactly once. A round is
claimed by one queue message: its redeliveries (after a crash, or a slow
worker's lapsed ack wait) may run it again, and whichever finishes first
wins the write; the loser sees a finished record and drops its result. A
second queue message for the same round (a Submit repeated after the queue's
duplicate window) does not run it while the claim is fresh. Each finish is
reported once (`events.report`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from edgegate_common import subjects
from edgegate_common.bus import TRANSIENT, Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import (
    EdgegateError,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)
from edgegate_common.logging import get_logger
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.adapters.queue import Puller, WorkQueue
from edgegate_taskstore.adapters.records import TaskRecords
from edgegate_taskstore.core import status
from edgegate_taskstore.core.retry import Backoff, Outcome, classify, overload_delay_s
from edgegate_taskstore.events import report

log = get_logger(__name__)

# A delivery that failed this often without reaching a decision is stopped (terminated).
POISON_DELIVERIES = 25
# A queue message whose record has not appeared after this many deliveries (a second
# apart) belongs to a Submit or Retry that failed after queueing: dropped.
ORPHAN_DELIVERIES = 5


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    concurrency: int = 16
    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    infer_timeout_s: float = 30.0
    heartbeat_s: float = 10.0  # well inside the consumer's ack wait
    model_wait_s: float = 5.0  # redelivery delay while no replica serves the model
    tick_s: float = 1.0
    # Another delivery may take over a round whose record nobody wrote for this long.
    claim_lease_s: float = 120.0
    max_record_bytes: int = 1024 * 1024 - 8 * 1024


class Workers:
    def __init__(
        self,
        *,
        bus: Bus,
        records: TaskRecords,
        queue: WorkQueue,
        readiness: ModelReadiness,
        settings: WorkerSettings,
    ) -> None:
        self._bus = bus
        self._records = records
        self._queue = queue
        self._readiness = readiness
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._pullers: list[Puller] = []

    async def start(self) -> None:
        self._pullers = [await self._queue.puller(p) for p in subjects.TASK_PRIORITIES]
        self._wake_subscription = await self._queue.wake_on_publish(self._wake)
        self._scheduler = asyncio.get_running_loop().create_task(self._schedule())

    async def stop(self, *, timeout_s: float) -> None:
        """Take nothing more; give running tasks `timeout_s` (the rest are redelivered)."""
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)
        for task in self._running:
            task.cancel()
        await self._bus.unsubscribe(self._wake_subscription, drain=False)
        for puller in self._pullers:
            await puller.stop()

    async def _schedule(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                msg = await self._next()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception:
                # The scheduler must outlive anything the connection throws at it.
                self._slots.release()
                log.exception("taking tasks failed; trying again in a second")
                await asyncio.sleep(1.0)
                continue
            task = asyncio.get_running_loop().create_task(self._run(msg))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _next(self) -> Msg:
        """The next delivery, highest priority first; waits while every queue is empty.

        A message that arrived after its pull gave up comes first, whatever its
        priority: it is ours already, and its ack wait is running.
        """
        while True:
            self._wake.clear()
            for puller in self._pullers:
                late = puller.leftover()
                if late is not None:
                    return late
            for puller in self._pullers:
                try:
                    taken = await puller.take(1)
                except EdgegateError as exc:
                    log.warning("cannot pull tasks", error=exc.message)
                    taken = []
                if taken:
                    return taken[0]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.tick_s)

    async def _run(self, msg: Msg) -> None:
        try:
            await self._deliver(msg)
            return
        except asyncio.CancelledError:
            raise
        except EdgegateError as exc:
            # The store or bus failed us (NATS restarting, say): JetStream redelivers.
            log.warning("task delivery failed; it will come back", error=exc.message)
        except TRANSIENT as exc:
            log.warning("task delivery failed; it will come back", error=repr(exc))
        except Exception:
            log.exception("task delivery failed; it will come back")
        if msg.metadata.num_delivered >= POISON_DELIVERIES:
            # Failing the same way delivery after delivery: stop the loop, keep the evidence.
            log.error("task delivery keeps failing; no more redeliveries", subject=msg.subject)
            with contextlib.suppress(*TRANSIENT):
                await msg.term()

    async def _deliver(self, msg: Msg) -> None:
        try:
            queued = pb.Task.FromString(msg.data)
        except DecodeError:
            log.error("unreadable queue message dropped", subject=msg.subject)
            await msg.term()
            return
        try:
            task = await self._records.get(queued.tenant, queued.id)
        except NotFound:
            await self._not_yet(msg, queued, "has no record (not yet, or expired)")
            return
        if queued.retries > task.retries:
            await self._not_yet(msg, queued, "is for a round the record has not started")
            return
        if task.retries != queued.retries or task.status in status.FINISHED:
            # An older round, or a finish whose ack was lost: report it if nobody did.
            if task.retries == queued.retries:
                await report(task, queue=self._queue, records=self._records)
            await msg.ack()
            return
        seq = msg.metadata.sequence.stream
        if task.status == status.PROCESSING and task.claim != seq and not self._lapsed(task):
            # A second queue message for a round another delivery is running
            # (a Submit repeated after the duplicate window): that one finishes it.
            await msg.ack()
            return
        if not _admitted(task):
            refused = PermissionDenied(
                "the task was never admitted by the security service (it has no admitted_by "
                "of its tenant): it is not run"
            )
            await self._give_up(msg, task, reason=refused.message, error=refused)
            return
        model = task.envelope.route.model
        version = self._readiness.version_to_run(model, task.envelope.route.version)
        if version is None:
            if self._readiness.ask_due():
                await self._readiness.ask()
            await msg.nak(delay=self._settings.model_wait_s)
            return
        if task.attempts >= self._settings.max_attempts:
            await self._give_up(msg, task, reason=f"gave up after {task.attempts} attempts")
            return
        started = await self._start_attempt(task, f"{model}/{version}", claim=seq)
        if started is None:
            await msg.ack()  # cancelled, finished or claimed by another delivery meanwhile
            return
        await self._attempt(msg, started, model=model, version=version)

    async def _not_yet(self, msg: Msg, queued: pb.Task, why: str) -> None:
        """The record lags the queue message (it is written second): wait a little, then drop."""
        if msg.metadata.num_delivered < ORPHAN_DELIVERIES:
            await msg.nak(delay=1.0)
            return
        log.warning(f"queued task {why}; dropped", task=queued.id, round=queued.retries)
        await msg.ack()

    def _lapsed(self, task: pb.Task) -> bool:
        """Nobody has written the record for a long time: its claim has lapsed."""
        idle_s = time.time() - task.updated_at.ToNanoseconds() / 1e9
        return idle_s > self._settings.claim_lease_s

    async def _start_attempt(self, task: pb.Task, model: str, *, claim: int) -> pb.Task | None:
        won = False

        def begin(record: pb.Task) -> pb.Task | None:
            nonlocal won
            if record.status in status.FINISHED or record.retries != task.retries:
                return None
            taken = record.status == status.PROCESSING and record.claim != claim
            if taken and not self._lapsed(record):
                return None
            record.status = status.PROCESSING
            record.attempts += 1
            record.model = model
            record.claim = claim
            won = True
            return record

        record = await self._records.change(task.tenant, task.id, begin)
        return record if won else None

    async def _attempt(self, msg: Msg, task: pb.Task, *, model: str, version: str) -> None:
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(msg))
        try:
            reply = await self._infer(task, model=model, version=version)
        except EdgegateError as exc:
            await self._failed(msg, task, exc, model=model, version=version)
            return
        finally:
            heartbeat.cancel()
        reply.task_id = task.id
        if task.ByteSize() + reply.ByteSize() > self._settings.max_record_bytes:
            too_big = FailedPrecondition(  # the same input makes the same result: final
                f"the result is {reply.ByteSize()} bytes; a task record holds at most "
                f"{self._settings.max_record_bytes} bytes with its envelope"
            )
            await self._give_up(msg, task, reason=too_big.message, error=too_big)
            return
        await self._finish(msg, task, status.COMPLETED, result=reply)

    async def _infer(self, task: pb.Task, *, model: str, version: str) -> env.Reply:
        """The model's reply. While the model refuses for overload (RESOURCE_EXHAUSTED) the
        worker keeps the task, heartbeating, and asks again after the wait the model gave:
        an overload slows the workers down to what the model serves, and uses no attempt."""
        while True:
            try:
                return await self._bus.request(
                    subjects.inference_infer(model, version),
                    task.envelope,
                    env.Reply,
                    timeout_s=self._settings.infer_timeout_s,
                )
            except EdgegateError as exc:
                if classify(exc) is not Outcome.OVERLOADED:
                    raise
                delay_s = overload_delay_s(exc)
                log.info("model overloaded; the task waits", task=task.id, in_s=round(delay_s, 3))
                await asyncio.sleep(delay_s)

    async def _failed(
        self, msg: Msg, task: pb.Task, error: EdgegateError, *, model: str, version: str
    ) -> None:
        outcome = classify(error)
        described = f"{error.code.name}: {error.message}"
        if outcome is Outcome.WAIT_FOR_MODEL:
            self._readiness.mark_down(model, version)
        if outcome is Outcome.GIVE_UP or task.attempts >= self._settings.max_attempts:
            await self._give_up(msg, task, reason=described, error=error)
            return
        delay_s = self._settings.backoff.delay_s(task.attempts)
        log.info("task attempt failed; retrying", task=task.id, error=described, in_s=delay_s)

        def note(record: pb.Task) -> pb.Task | None:
            if record.status != status.PROCESSING or record.attempts != task.attempts:
                return None
            record.error.code = error.code.value  # type: ignore[assignment]
            record.error.message = error.message
            return record

        with contextlib.suppress(FailedPrecondition):
            await self._records.change(task.tenant, task.id, note)
        await msg.nak(delay=delay_s)

    async def _give_up(
        self, msg: Msg, task: pb.Task, *, reason: str, error: EdgegateError | None = None
    ) -> None:
        failed = pb.Task()
        failed.CopyFrom(task)
        failed.status = status.FAILED
        if error is not None:
            failed.error.code = error.code.value  # type: ignore[assignment]
            failed.error.message = error.message
        elif not failed.error.message:
            failed.error.code = env.ERROR_CODE_ABORTED
            failed.error.message = reason
        # Dead-letter first: a crash before the record says failed redoes this step.
        await self._queue.dead_letter(failed, reason=reason)
        log.warning("task dead-lettered", task=task.id, reason=reason)
        await self._finish(msg, task, status.FAILED, error=failed.error)

    async def _finish(
        self,
        msg: Msg,
        task: pb.Task,
        outcome: int,
        *,
        result: env.Reply | None = None,
        error: env.Error | None = None,
    ) -> None:
        won = False

        def finish(record: pb.Task) -> pb.Task | None:
            nonlocal won
            if record.status in status.FINISHED or record.retries != task.retries:
                return None  # cancelled, or another worker finished it first
            record.status = outcome  # type: ignore[assignment]
            if result is not None:
                record.result.CopyFrom(result)
                record.ClearField("error")
            if error is not None:
                record.error.CopyFrom(error)
            won = True
            return record

        record = await self._records.change(task.tenant, task.id, finish)
        if record.retries == task.retries:  # ours, or a finish (a Cancel) not reported yet
            await report(record, queue=self._queue, records=self._records)
        await msg.ack()

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_s)
            try:
                await msg.in_progress()
            except nats.errors.Error as exc:
                # The task runs on; past the ack wait the queue hands it to another worker.
                log.warning("task heartbeat not sent", subject=msg.subject, error=repr(exc))


def _admitted(task: pb.Task) -> bool:
    """Whether Submit stored this task after security admitted it for its tenant."""
    if not task.HasField("admitted_by"):
        return False
    return task.admitted_by.tenant == task.tenant and bool(task.admitted_by.subject)
