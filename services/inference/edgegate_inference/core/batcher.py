"""The dynamic batcher: many small requests in, few large model calls out.

One batcher serves one model version. Requests wait in one queue per
priority level (1 is the highest, as in Triton); a batch is formed when
requests arrive (once per event-loop pass, so requests that arrive together
batch together) and when a model instance comes free:

- the head is the oldest request of the highest non-empty level; the batch
  takes further requests of the same *key* (the shape bucket: requests whose
  non-batch dimensions differ cannot share a call) in priority order, as long
  as the total stays within `max_batch_size`. A request is never split;
- the batch goes out at once when it is full or reaches a preferred size (then
  cut to the largest preferred size it holds), else when its head has waited
  `max_queue_delay_us`;
- a full level answers RESOURCE_EXHAUSTED at once, and so does a request
  that would wait longer than its queue timeout (`reject`), as estimated from
  the rows ahead of it and the measured service rate (see `admission`), with
  the estimated wait as a retry hint; a request that outlives its queue
  timeout anyway answers DEADLINE_EXCEEDED (`reject`) or drops behind every
  other request (`delay`); a request may shorten its level's timeout, never
  lengthen it; a request whose caller left is skipped;
- if a batch fails, each of its requests is run again alone, so one bad
  request cannot fail the others;
- with `preserve_ordering`, responses are released in arrival order.

Model calls run on one thread per instance (ONNX Runtime releases the GIL),
so the event loop keeps accepting requests while a batch computes.

With batching off (`config=None`) every request is its own model call, through
the same queue, instances and statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgegate_common.errors import (
    DeadlineExceeded,
    EdgegateError,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from edgegate_inference.core.admission import Admission
from edgegate_inference.core.spec import DynamicBatching, QueuePolicy
from edgegate_inference.core.stats import VersionStats

Array = npt.NDArray[np.generic]
Tensors = Mapping[str, Array]
# One model instance: inputs with the batch as their first dimension -> outputs.
Runner = Callable[[Tensors], dict[str, Array]]
# A batch's result: each request's outputs, and the input/infer/output nanoseconds.
_Outcome = tuple[list[dict[str, Array]], tuple[int, int, int]]

_QUEUED, _DISPATCHED, _DROPPED = range(3)


@dataclass(slots=True, eq=False)
class _Pending:
    inputs: Tensors
    size: int
    key: Hashable
    level: int
    enqueued_ns: int
    future: asyncio.Future[dict[str, Array]]
    state: int = _QUEUED
    delayed: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    dispatched_ns: int = 0
    compute_ns: int = 0  # its model call's input + infer + output time


@dataclass(frozen=True, slots=True)
class Served:
    """A request's outputs, and where its time went: callers judge the model on
    `compute_s`, since `queue_s` grows with the load, not with a fault."""

    outputs: dict[str, Array]
    queue_s: float
    compute_s: float


class DynamicBatcher:
    def __init__(
        self,
        *,
        name: str,
        runners: Sequence[Runner],
        max_batch_size: int,
        config: DynamicBatching | None,
        stats: VersionStats,
    ) -> None:
        if not runners:
            raise ValueError("a batcher needs at least one runner")
        self.name = name
        self._runners = list(runners)
        self._batching = config is not None and max_batch_size > 0
        self._max_batch = max(max_batch_size, 1)
        self._config = config or DynamicBatching()
        preferred = [s for s in self._config.preferred_batch_sizes if s <= self._max_batch]
        self._preferred = frozenset(preferred)
        self._target = max(preferred) if preferred else self._max_batch
        self._delay_ns = self._config.max_queue_delay_us * 1000
        self._stats = stats
        levels = self._config.levels
        self._queues: dict[int, deque[_Pending]] = {lv: deque() for lv in range(1, levels + 1)}
        self._queued: dict[int, int] = dict.fromkeys(self._queues, 0)
        self._delayed: deque[_Pending] = deque()
        self._admission = Admission(
            name=name,
            instances=len(runners),
            levels=self._queues,
            max_batch=self._max_batch if self._batching else None,
        )
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-instance{i}")
            for i in range(len(self._runners))
        ]
        self._free = list(range(len(self._runners)))
        self._dispatch_soon = False  # a _dispatch call is scheduled
        self._retries: set[asyncio.Task[None]] = set()
        self._order_tail: asyncio.Future[dict[str, Array]] | None = None
        self._loop = asyncio.get_running_loop()
        self._delay_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._drained = asyncio.Event()
        self._stopped = False  # the instance threads are shut down

    # -- the caller's side -------------------------------------------------

    async def infer(
        self,
        inputs: Tensors,
        *,
        size: int,
        key: Hashable = None,
        priority: int = 0,
        timeout_us: int = 0,
    ) -> dict[str, Array]:
        """Queue one request (`size` items along the batch dimension); await its outputs."""
        served = await self.serve(
            inputs, size=size, key=key, priority=priority, timeout_us=timeout_us
        )
        return served.outputs

    async def serve(
        self,
        inputs: Tensors,
        *,
        size: int,
        key: Hashable = None,
        priority: int = 0,
        timeout_us: int = 0,
    ) -> Served:
        """As `infer`, with the time the request spent queued and in its model call."""
        started = time.perf_counter()
        error: str | None = "CANCELLED"
        try:
            # Refusals (queue full, unloading) are failed requests too: they count.
            pending = self._enqueue(
                inputs, size=size, key=key, priority=priority, timeout_us=timeout_us
            )
            if self._config.preserve_ordering:
                result = await self._in_order(pending)
            else:
                result = await pending.future
            error = None
            return Served(
                outputs=result,
                queue_s=(pending.dispatched_ns - pending.enqueued_ns) / 1e9,
                compute_s=pending.compute_ns / 1e9,
            )
        except EdgegateError as exc:
            error = exc.code.name
            raise
        finally:
            self._stats.observe_request(seconds=time.perf_counter() - started, error=error)

    def _enqueue(
        self, inputs: Tensors, *, size: int, key: Hashable, priority: int, timeout_us: int
    ) -> _Pending:
        if self._closed:
            raise Unavailable(f"{self.name} is unloading; retry to reach its successor")
        if size > self._max_batch:
            raise InvalidArgument(
                f"{self.name}: batch of {size} exceeds max_batch_size {self._max_batch}"
            )
        level = self._level(priority)
        policy = self._config.policy(level)
        if policy.max_queue_size and self._queued[level] >= policy.max_queue_size:
            raise ResourceExhausted(
                f"{self.name}: queue full ({policy.max_queue_size} requests waiting at "
                f"priority {level}); retry later"
            )
        timeout = self._timeout_us(policy, timeout_us)
        now = time.monotonic_ns()
        if policy.timeout_action == "reject":  # `delay` serves late requests: no refusal
            self._admission.admit(level=level, rows=size, timeout_us=timeout, now_ns=now)
        loop = self._loop
        pending = _Pending(
            inputs=inputs,
            size=size,
            key=key,
            level=level,
            enqueued_ns=now,
            future=loop.create_future(),
        )
        pending.future.add_done_callback(lambda _: self._left(pending))
        if timeout:
            pending.timer = loop.call_later(timeout / 1e6, self._expire, pending, policy)
        self._queues[level].append(pending)
        self._queued[level] += 1
        self._admission.queued(level=level, rows=size)
        if not self._dispatch_soon:
            # At the end of this loop pass, so requests that arrive together batch together.
            self._dispatch_soon = True
            loop.call_soon(self._dispatch)
        return pending

    def _level(self, priority: int) -> int:
        # As Triton: 0 or a level the model does not have means the default level,
        # so a client written for one model's levels still works with another's.
        if 1 <= priority <= self._config.levels:
            return priority
        return self._config.default_level

    def _timeout_us(self, policy: QueuePolicy, requested_us: int) -> int:
        # As in Triton, a request may shorten the level's timeout but never lengthen
        # it (0 is no timeout, so with no default any request timeout applies).
        default_us = policy.default_timeout_us
        if not (requested_us and policy.allow_timeout_override):
            return default_us
        return min(requested_us, default_us) if default_us else requested_us

    async def _in_order(self, pending: _Pending) -> dict[str, Array]:
        # Each request's gate opens after the previous request's gate: a chain of
        # tasks that the callers only watch, so a caller leaving cannot break it.
        previous = self._order_tail
        gate = asyncio.ensure_future(_after(previous, pending.future))
        # If the caller left, nobody awaits the gate: mark its outcome as seen.
        gate.add_done_callback(lambda g: g.cancelled() or g.exception())
        self._order_tail = gate
        try:
            return await asyncio.shield(gate)
        except asyncio.CancelledError:
            pending.future.cancel()
            raise

    def _left(self, pending: _Pending) -> None:
        """The request's future is done: answered, failed, expired or abandoned."""
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.state == _QUEUED:
            pending.state = _DROPPED
            self._queued[pending.level] -= 1
            self._admission.left_queue(level=pending.level, rows=pending.size)
            self._check_drained()

    def _expire(self, pending: _Pending, policy: QueuePolicy) -> None:
        if pending.state != _QUEUED or pending.future.done():
            return
        if policy.timeout_action == "delay":
            pending.delayed = True
            self._delayed.append(pending)
            return
        waited_us = (time.monotonic_ns() - pending.enqueued_ns) // 1000
        pending.future.set_exception(
            DeadlineExceeded(f"{self.name}: request timed out after {waited_us} µs in the queue")
        )

    # -- the scheduler -----------------------------------------------------

    def _dispatch(self) -> None:
        """Start batches on free instances while the queues can make them."""
        self._dispatch_soon = False
        while self._free and not self._stopped:
            batch = self._next_batch()
            if not batch:
                return
            # The lowest free instance: under light load one instance serves
            # everything and its weights stay in the CPU caches.
            instance = min(self._free)
            self._free.remove(instance)
            now = time.monotonic_ns()
            for pending in batch:
                pending.dispatched_ns = now
                self._stats.observe_queue(now - pending.enqueued_ns)
            self._admission.started(instance=instance, rows=sum(p.size for p in batch), now_ns=now)
            self._executors[instance].submit(self._call, instance, batch)

    def _next_batch(self) -> list[_Pending]:
        """Take the next batch off the queues, or nothing if it should wait."""
        candidates = self._waiting()
        head = next(candidates, None)
        if head is None:
            return []
        batch, total = [head], head.size
        if self._batching:
            for pending in candidates:
                if total >= self._max_batch:
                    break
                if pending.key == head.key and total + pending.size <= self._max_batch:
                    batch.append(pending)
                    total += pending.size
            full = total >= self._target or total >= self._max_batch or self._more_than(batch)
            due_ns = head.enqueued_ns + self._delay_ns
            if full and self._preferred and total not in self._preferred:
                # As Triton: the largest preferred size the queue can make, if any.
                batch = self._preferred_head(batch) or batch
            elif not full and self._delay_ns and time.monotonic_ns() < due_ns:
                batch = self._preferred_head(batch)
                if not batch:
                    self._wake_at(due_ns)
                    return []
        for pending in batch:
            pending.state = _DISPATCHED
            self._queued[pending.level] -= 1
            self._admission.left_queue(level=pending.level, rows=pending.size)
            if pending.timer is not None:
                pending.timer.cancel()
        return batch

    def _waiting(self) -> Iterator[_Pending]:
        """Queued requests in service order: levels 1..N, then the delayed ones."""
        for queue in self._queues.values():
            while queue and queue[0].state != _QUEUED:
                queue.popleft()  # dispatched or dropped: forget it
            for pending in queue:
                if pending.state == _QUEUED and not pending.delayed:
                    yield pending
        while self._delayed and self._delayed[0].state != _QUEUED:
            self._delayed.popleft()
        for pending in self._delayed:
            if pending.state == _QUEUED:
                yield pending

    def _preferred_head(self, batch: list[_Pending]) -> list[_Pending]:
        """The longest head of `batch` that makes a preferred size, or nothing.

        Triton runs a batch of any preferred size at once, not only of the largest.
        """
        best, total = 0, 0
        for count, pending in enumerate(batch, start=1):
            total += pending.size
            if total in self._preferred:
                best = count
        return batch[:best]

    def _more_than(self, batch: list[_Pending]) -> bool:
        """True when requests are waiting that this batch could not take."""
        return self.queued > len(batch)

    def _wake_at(self, due_ns: int) -> None:
        if self._delay_timer is not None:
            self._delay_timer.cancel()
        delay_s = max(due_ns - time.monotonic_ns(), 0) / 1e9
        self._delay_timer = self._loop.call_later(delay_s, self._dispatch)

    # -- running a batch ---------------------------------------------------

    def _call(self, instance: int, batch: list[_Pending]) -> None:
        """On the instance's thread: run the batch, hand the outcome to the event loop."""
        outcome: _Outcome | Exception
        try:
            outcome = self._run(self._runners[instance], batch)
        except Exception as exc:  # answered on the loop: see _finish
            outcome = exc
        # Straight back to the loop, without a task or future in between.
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            self._loop.call_soon_threadsafe(self._finish, instance, batch, outcome)

    def _finish(self, instance: int, batch: list[_Pending], outcome: _Outcome | Exception) -> None:
        """On the loop: answer the batch's requests and free the instance."""
        self._admission.finished(
            instance=instance, now_ns=time.monotonic_ns(), ok=not isinstance(outcome, Exception)
        )
        if isinstance(outcome, Exception) and len(batch) > 1:
            # One bad request must not fail the others: run each alone again.
            task = self._loop.create_task(self._run_singly(instance, batch))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return
        self._answer(batch, outcome)
        self._release(instance)

    async def _run_singly(self, instance: int, batch: list[_Pending]) -> None:
        try:
            for pending in batch:
                outcome: _Outcome | Exception
                try:
                    outcome = await self._loop.run_in_executor(
                        self._executors[instance], self._run, self._runners[instance], [pending]
                    )
                except Exception as exc:
                    outcome = exc
                self._answer([pending], outcome)
        finally:
            self._release(instance)

    def _answer(self, batch: list[_Pending], outcome: _Outcome | Exception) -> None:
        if isinstance(outcome, Exception):
            for pending in batch:
                _settle(pending, outcome)
            return
        results, (input_ns, infer_ns, output_ns) = outcome
        self._stats.observe_execution(
            batch_size=sum(p.size for p in batch),
            requests=len(batch),
            input_ns=input_ns,
            infer_ns=infer_ns,
            output_ns=output_ns,
        )
        for pending, result in zip(batch, results, strict=True):
            pending.compute_ns = input_ns + infer_ns + output_ns
            _settle(pending, result)

    def _release(self, instance: int) -> None:
        self._free.append(instance)
        self._dispatch()
        self._check_drained()

    def _run(self, runner: Runner, batch: list[_Pending]) -> _Outcome:
        """On the instance's thread: concatenate, call the model, split."""
        t0 = time.perf_counter_ns()
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {
                name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs
            }
        t1 = time.perf_counter_ns()
        outputs = runner(inputs)
        t2 = time.perf_counter_ns()
        if not self._batching:  # one request per call; a model without a batch dim stays whole
            results = [outputs]
        else:
            results, offset = [], 0
            for pending in batch:
                end = offset + pending.size
                results.append({name: value[offset:end] for name, value in outputs.items()})
                offset = end
        t3 = time.perf_counter_ns()
        return results, (t1 - t0, t2 - t1, t3 - t2)

    # -- lifecycle ---------------------------------------------------------

    @property
    def queued(self) -> int:
        """Requests waiting now (not yet in a model call)."""
        return sum(self._queued.values())

    @property
    def idle(self) -> bool:
        # An instance that is not free is in a model call (or re-running a failed batch).
        busy = len(self._free) < len(self._runners)
        return not busy and not any(self._queued.values())

    def _check_drained(self) -> None:
        if self._closed and self.idle:
            self._drained.set()

    async def close(self, *, drain_timeout_s: float = 30.0) -> None:
        """Refuse new requests, let queued and running ones finish, stop the threads."""
        self._closed = True
        self._check_drained()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), drain_timeout_s)
        finally:  # even when cancelled: nothing may stay queued, no thread may linger
            for queue in (*self._queues.values(), self._delayed):
                for pending in queue:
                    # Requests in a model call still get its answer: the threads finish it.
                    if pending.state == _QUEUED and not pending.future.done():
                        pending.future.set_exception(Unavailable(f"{self.name} unloaded"))
            self._stopped = True
            if self._delay_timer is not None:
                self._delay_timer.cancel()
            for executor in self._executors:
                executor.shutdown(wait=False)  # each thread exits after its current call
        # A call still running past the drain timeout must not block the event loop
        # (and with it every other model): wait for the threads on a thread.
        await asyncio.gather(
            *(asyncio.to_thread(executor.shutdown, wait=True) for executor in self._executors)
        )


async def _after(
    previous: asyncio.Future[dict[str, Array]] | None, own: asyncio.Future[dict[str, Array]]
) -> dict[str, Array]:
    if previous is not None:
        await asyncio.wait([previous])
    return await own


def _settle(pending: _Pending, outcome: dict[str, Array] | BaseException) -> None:
    if pending.future.done():
        return  # the caller left meanwhile
    if isinstance(outcome, EdgegateError):
        pending.future.set_exception(outcome)
    elif isinstance(outcome, BaseException):
        pending.future.set_exception(Internal(f"model call failed: {outcome}"))
    else:
        pending.future.set_result(outcome)
