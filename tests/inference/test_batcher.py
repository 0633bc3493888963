"""The dynamic batcher: how requests are combined, ordered, timed out and failed.

The model instances here are plain Python callables on the batcher's instance
threads. `Model` doubles its input and records the items of every call; an item
equal to HOLD keeps its call (and so its instance) busy until the test releases
it, so that requests pile up in the queue deterministically, without relying on
sleeps being long enough.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from support.waiting import eventually

from edgegate_common.errors import (
    DeadlineExceeded,
    EdgegateError,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from edgegate_inference.core.batcher import DynamicBatcher, Runner, Tensors
from edgegate_inference.core.spec import DynamicBatching, QueuePolicy
from edgegate_inference.core.stats import VersionStats
from edgegate_inference.core.types import Array

HOLD = -1.0  # an item that blocks its call until Model.release()
POISON = 13.0  # an item that makes the model raise
HOLD_LIMIT_S = 3.0  # a held call gives up by itself, so a failing test cannot hang


class Model:
    """y = 2x, recording each call's items (x has shape [batch, 1])."""

    def __init__(self, *, sleep_s: float = 0.0) -> None:
        self.calls: list[list[float]] = []
        self.held_returned = False
        self.sleep_s = sleep_s
        self._release = threading.Event()

    def __call__(self, inputs: Tensors) -> dict[str, Array]:
        items = [float(v) for v in inputs["x"][:, 0]]
        self.calls.append(items)
        if POISON in items:
            raise ValueError("poisoned input")
        if HOLD in items:
            self._release.wait(HOLD_LIMIT_S)
            self.held_returned = True
        time.sleep(self.sleep_s)  # the model's compute time
        return {"y": inputs["x"] * 2}

    def release(self) -> None:
        self._release.set()

    async def wait_calls(self, count: int) -> None:
        """Until the model has been called `count` times."""
        await until(lambda: len(self.calls) >= count)

    def items(self) -> list[float]:
        return [v for call in self.calls for v in call]


async def until(condition: Callable[[], bool], *, timeout_s: float = 2.0) -> None:
    """Poll a condition that a model thread makes true."""
    await eventually(condition, timeout_s=timeout_s, interval_s=0.001, what=str(condition))


def x(*values: float) -> dict[str, Array]:
    """A request of len(values) items."""
    return {"x": np.array(values, dtype=np.float32).reshape(-1, 1)}


@asynccontextmanager
async def serving(
    model: Model,
    *,
    max_batch_size: int = 8,
    config: DynamicBatching | None = None,
    instances: int = 1,
    stats: VersionStats | None = None,
) -> AsyncIterator[DynamicBatcher]:
    runners: Sequence[Runner] = [model] * instances
    batcher = DynamicBatcher(
        name="m/1",
        runners=runners,
        max_batch_size=max_batch_size,
        config=config,
        stats=stats or VersionStats(),
    )
    try:
        yield batcher
    finally:
        model.release()
        await batcher.close(drain_timeout_s=HOLD_LIMIT_S)


def submit(
    batcher: DynamicBatcher, *values: float, **options: Any
) -> asyncio.Task[dict[str, Array]]:
    return asyncio.ensure_future(batcher.infer(x(*values), size=len(values), **options))


async def hold(batcher: DynamicBatcher, model: Model) -> asyncio.Task[dict[str, Array]]:
    """Occupy one instance until model.release()."""
    task = submit(batcher, HOLD)
    await model.wait_calls(len(model.calls) + 1)
    return task


async def settle() -> None:
    """Let the scheduler react to what was just queued."""
    for _ in range(5):
        await asyncio.sleep(0)


def y_of(task: asyncio.Task[dict[str, Array]]) -> list[float]:
    return [float(v) for v in task.result()["y"][:, 0]]


def batching(**options: Any) -> DynamicBatching:
    return DynamicBatching(**options)


# -- combining requests -------------------------------------------------------


async def test_requests_queued_while_busy_share_one_call_without_splitting() -> None:
    model = Model()
    async with serving(model, max_batch_size=4, config=batching()) as batcher:
        held = await hold(batcher, model)
        requests = [submit(batcher, *vals) for vals in ((1, 2, 3), (4, 5), (6,), (7, 8))]
        await settle()
        model.release()
        await asyncio.gather(held, *requests)

    # Oldest first, as many whole requests as fit in 4 items: 3+1, then 2+2.
    assert model.calls[1:] == [[1, 2, 3, 6], [4, 5, 7, 8]]
    assert all(len(call) <= 4 for call in model.calls)
    # Each caller gets exactly its own items back, in its own shape.
    assert [y_of(t) for t in requests] == [[2, 4, 6], [8, 10], [12], [14, 16]]
    assert [t.result()["y"].shape for t in requests] == [(3, 1), (2, 1), (1, 1), (2, 1)]


async def test_a_lone_request_waits_max_queue_delay_for_company() -> None:
    model = Model()
    async with serving(model, config=batching(max_queue_delay_us=50_000)) as batcher:
        started = time.perf_counter()
        await submit(batcher, 1)
        waited_s = time.perf_counter() - started
    assert 0.045 <= waited_s < 1.0
    assert model.calls == [[1]]


async def test_a_full_batch_goes_at_once_despite_the_delay() -> None:
    model = Model()
    async with serving(model, max_batch_size=4, config=batching(max_queue_delay_us=5_000_000)) as b:
        async with asyncio.timeout(1):
            await asyncio.gather(submit(b, 1, 2), submit(b, 3), submit(b, 4))
    assert model.calls == [[1, 2, 3, 4]]


async def test_companions_arriving_within_the_delay_join_the_batch() -> None:
    model = Model()
    async with serving(model, config=batching(max_queue_delay_us=100_000)) as batcher:
        first = submit(batcher, 1)
        await asyncio.sleep(0.01)  # the behaviour: the companion arrives later, within the delay
        await asyncio.gather(first, submit(batcher, 2))
    assert model.calls == [[1, 2]]


@pytest.mark.parametrize("sizes", [(1, 1), (2, 2)])
async def test_any_preferred_batch_size_goes_at_once(sizes: tuple[int, int]) -> None:
    # Triton: "If a batch of one of these sizes can be formed it will be executed
    # immediately" -- not only the largest one.
    model = Model()
    config = batching(max_queue_delay_us=5_000_000, preferred_batch_sizes=(2, 4))
    async with serving(model, max_batch_size=8, config=config) as batcher:
        values = iter(range(1, 10))
        async with asyncio.timeout(1):
            await asyncio.gather(
                *(submit(batcher, *[next(values) for _ in range(n)]) for n in sizes)
            )
    assert [len(call) for call in model.calls] == [sum(sizes)]


async def test_different_keys_never_share_a_call() -> None:
    model = Model()
    async with serving(model, config=batching()) as batcher:
        held = await hold(batcher, model)
        a = submit(batcher, 1, key=("x", (3,)))
        b = submit(batcher, 2, key=("x", (5,)))
        c = submit(batcher, 3, key=("x", (3,)))
        await settle()
        model.release()
        await asyncio.gather(held, a, b, c)
    assert model.calls[1:] == [[1, 3], [2]]


async def test_without_batching_every_request_is_its_own_call() -> None:
    model = Model()
    async with serving(model, max_batch_size=8, config=None) as batcher:
        held = await hold(batcher, model)
        requests = [submit(batcher, 1, 2), submit(batcher, 3), submit(batcher, 4)]
        await settle()
        model.release()
        await asyncio.gather(held, *requests)
    assert model.calls[1:] == [[1, 2], [3], [4]]
    assert [y_of(t) for t in requests] == [[2, 4], [6], [8]]


async def test_a_model_without_batch_dimension_gets_its_outputs_whole() -> None:
    def scalar_sum(inputs: Tensors) -> dict[str, Array]:
        return {"sum": np.array(inputs["x"].sum())}

    batcher = DynamicBatcher(
        name="m/1", runners=[scalar_sum], max_batch_size=0, config=None, stats=VersionStats()
    )
    try:
        result = await batcher.infer({"x": np.arange(6.0).reshape(2, 3)}, size=1)
    finally:
        await batcher.close(drain_timeout_s=1)
    assert result["sum"].shape == ()
    assert float(result["sum"]) == 15.0


# -- queue policies -----------------------------------------------------------


async def test_a_full_queue_rejects_at_once() -> None:
    model = Model()
    config = batching(queue_policy=QueuePolicy(max_queue_size=2))
    async with serving(model, config=config) as batcher:
        held = await hold(batcher, model)  # running, so no longer in the queue
        queued = [submit(batcher, 1), submit(batcher, 2)]
        await settle()
        async with asyncio.timeout(0.5):  # refused now, not after a wait
            with pytest.raises(ResourceExhausted, match="queue full"):
                await batcher.infer(x(3), size=1)
        model.release()
        await asyncio.gather(held, *queued)
        await batcher.infer(x(4), size=1)  # room again once the queue drained
    assert 3.0 not in model.items()


async def test_queue_size_is_per_priority_level() -> None:
    model = Model()
    config = batching(
        priority_levels=2,
        default_priority_level=2,
        priority_queue_policy={2: QueuePolicy(max_queue_size=1)},
    )
    async with serving(model, max_batch_size=1, config=config) as batcher:
        held = await hold(batcher, model)
        low = submit(batcher, 1)
        await settle()
        with pytest.raises(ResourceExhausted):
            await batcher.infer(x(2), size=1)
        high = submit(batcher, 3, priority=1)  # level 1 has no limit
        await settle()
        model.release()
        await asyncio.gather(held, low, high)
    assert model.calls[1:] == [[3], [1]]


async def test_queue_timeout_with_reject_fails_the_request() -> None:
    model = Model()
    config = batching(queue_policy=QueuePolicy(default_timeout_us=20_000))
    async with serving(model, config=config) as batcher:
        held = await hold(batcher, model)
        started = time.perf_counter()
        with pytest.raises(DeadlineExceeded, match="timed out"):
            await submit(batcher, 1)
        assert time.perf_counter() - started >= 0.015
        assert not model.held_returned  # it expired in the queue, not behind a finished call
        model.release()
        await held
    assert 1.0 not in model.items()


async def test_queue_timeout_with_delay_serves_the_request_after_the_others() -> None:
    model = Model()
    config = batching(queue_policy=QueuePolicy(timeout_action="delay"))
    async with serving(model, max_batch_size=1, config=config) as batcher:
        held = await hold(batcher, model)
        late = submit(batcher, 1, timeout_us=20_000)
        await asyncio.sleep(0.06)  # `late` outlives its timeout in the queue
        fresh = submit(batcher, 2)
        await settle()
        model.release()
        await asyncio.gather(held, late, fresh)
    assert model.calls[1:] == [[2], [1]]
    assert y_of(late) == [2]


@pytest.mark.parametrize(
    ("allow", "expired"),
    [(True, True), (False, False)],
)
async def test_a_request_timeout_applies_only_when_overrides_are_allowed(
    allow: bool, expired: bool
) -> None:
    model = Model()
    config = batching(queue_policy=QueuePolicy(allow_timeout_override=allow))
    async with serving(model, config=config) as batcher:
        held = await hold(batcher, model)
        request = submit(batcher, 1, timeout_us=20_000)
        await asyncio.sleep(0.06)  # the behaviour: the request outlives its 20 ms timeout
        model.release()
        await held
        if expired:
            with pytest.raises(DeadlineExceeded):
                await request
        else:
            await request
            assert y_of(request) == [2]
    assert (1.0 in model.items()) is not expired


async def test_a_request_may_shorten_the_queue_timeout_but_not_lengthen_it() -> None:
    # Triton: "individual requests can set a timeout that is less than the
    # default timeout value but may not increase the timeout".
    model = Model()
    config = batching(
        queue_policy=QueuePolicy(default_timeout_us=80_000, allow_timeout_override=True)
    )
    async with serving(model, config=config) as batcher:
        held = await hold(batcher, model)
        started = time.perf_counter()
        shorter = submit(batcher, 1, timeout_us=10_000)
        longer = submit(batcher, 2, timeout_us=60_000_000)
        with pytest.raises(DeadlineExceeded):
            await shorter
        shorter_s = time.perf_counter() - started
        async with asyncio.timeout(1.5):
            with pytest.raises(DeadlineExceeded):
                await longer
        longer_s = time.perf_counter() - started
        model.release()
        await held
    assert shorter_s < longer_s
    assert longer_s >= 0.07


# -- priorities ---------------------------------------------------------------


async def test_a_higher_priority_request_queued_later_is_served_first() -> None:
    model = Model()
    config = batching(priority_levels=3, default_priority_level=2)
    async with serving(model, max_batch_size=1, config=config) as batcher:
        held = await hold(batcher, model)
        low = submit(batcher, 3, priority=3)
        default = submit(batcher, 2)
        high = submit(batcher, 1, priority=1)
        await settle()
        model.release()
        await asyncio.gather(held, low, default, high)
    assert model.calls[1:] == [[1], [2], [3]]


@pytest.mark.parametrize("priority", [3, 99])
async def test_an_unknown_priority_means_the_default_level(priority: int) -> None:
    """As in Triton: a level the model does not have is the default level, not an error."""
    model = Model()
    config = batching(priority_levels=2, default_priority_level=1)
    async with serving(model, max_batch_size=1, config=config) as batcher:
        held = await hold(batcher, model)
        low = submit(batcher, 2, priority=2)
        unknown = submit(batcher, 1, priority=priority)
        await settle()
        model.release()
        await asyncio.gather(held, low, unknown)
    assert model.calls[1:] == [[1], [2]]  # the default level (1) went first


async def test_a_request_larger_than_max_batch_size_is_invalid() -> None:
    model = Model()
    async with serving(model, max_batch_size=2, config=batching()) as batcher:
        with pytest.raises(InvalidArgument, match="max_batch_size 2"):
            await batcher.infer(x(1, 2, 3), size=3)
    assert model.calls == []


# -- ordering across instances ------------------------------------------------


async def _finish_order(*, preserve_ordering: bool) -> list[str]:
    model = Model()
    stats = VersionStats()
    config = batching(preserve_ordering=preserve_ordering)
    finished: list[str] = []
    async with serving(model, config=config, instances=2, stats=stats) as batcher:
        slow = await hold(batcher, model)  # instance A, busy until released
        slow.add_done_callback(lambda _: finished.append("slow"))
        fast = submit(batcher, 2)  # instance B, done at once
        fast.add_done_callback(lambda _: finished.append("fast"))
        await until(lambda: stats.execution_count == 1)  # the fast call has returned
        await asyncio.sleep(0.02)  # the behaviour: room for its answer to go out (or be held)
        model.release()
        await asyncio.gather(slow, fast)
    assert model.calls == [[HOLD], [2]]
    return finished


async def test_preserve_ordering_answers_in_arrival_order() -> None:
    finished = await _finish_order(preserve_ordering=True)
    assert finished == ["slow", "fast"]


async def test_without_preserve_ordering_a_fast_request_overtakes() -> None:
    finished = await _finish_order(preserve_ordering=False)
    assert finished == ["fast", "slow"]


# -- failures and callers leaving ---------------------------------------------


async def test_a_poisoned_request_fails_alone() -> None:
    model = Model()
    stats = VersionStats()
    async with serving(model, config=batching(), stats=stats) as batcher:
        held = await hold(batcher, model)
        good1 = submit(batcher, 1, 2)
        bad = submit(batcher, POISON)
        good2 = submit(batcher, 3)
        await settle()
        model.release()
        await asyncio.wait([held, good1, bad, good2])
    assert y_of(good1) == [2, 4]
    assert y_of(good2) == [6]
    with pytest.raises(Internal, match="poisoned input"):
        bad.result()
    assert model.calls[1] == [1, 2, POISON, 3]  # the batch was tried once
    assert stats.errors == Counter({"INTERNAL": 1})
    assert stats.success.count == 3


async def test_a_cancelled_request_never_reaches_the_model() -> None:
    model = Model()
    stats = VersionStats()
    async with serving(model, config=batching(), stats=stats) as batcher:
        held = await hold(batcher, model)
        leaving = submit(batcher, 1)
        staying = submit(batcher, 2)
        await settle()
        assert batcher.queued == 2
        leaving.cancel()
        await settle()
        assert batcher.queued == 1
        model.release()
        await asyncio.gather(held, staying)
    assert leaving.cancelled()
    assert model.calls[1:] == [[2]]
    assert stats.errors == Counter({"CANCELLED": 1})


async def test_a_cancelled_request_does_not_stall_ordered_responses() -> None:
    model = Model()
    config = batching(preserve_ordering=True)
    async with serving(model, config=config) as batcher:
        held = await hold(batcher, model)
        leaving = submit(batcher, 1)
        staying = submit(batcher, 2)
        await settle()
        leaving.cancel()
        model.release()
        async with asyncio.timeout(1):
            await asyncio.gather(held, staying)
    assert y_of(staying) == [4]
    assert 1.0 not in model.items()


# -- statistics ---------------------------------------------------------------


async def test_statistics_count_items_calls_and_outcomes() -> None:
    model = Model()
    stats = VersionStats()
    config = batching(queue_policy=QueuePolicy(max_queue_size=2))
    async with serving(model, config=config, stats=stats) as batcher:
        held = await hold(batcher, model)
        pair = [submit(batcher, 1, 2), submit(batcher, 3)]
        await settle()
        with pytest.raises(ResourceExhausted):
            await batcher.infer(x(4), size=1)
        model.release()
        await asyncio.gather(held, *pair)

    assert stats.inference_count == 4  # items: 1 held + 2 + 1
    assert stats.execution_count == 2  # model calls
    assert stats.batch_sizes == Counter({1: 1, 3: 1})
    assert stats.success.count == 3
    assert stats.queue.count == 3
    # Refused requests count as failed requests, by status code (what
    # edgegate_inference_requests_total{code} reports).
    assert stats.fail.count == 1
    assert stats.errors == Counter({"RESOURCE_EXHAUSTED": 1})
    assert sum(stats.latency_buckets) == 4


# -- closing ------------------------------------------------------------------


async def test_close_drains_queued_requests_then_refuses_new_ones() -> None:
    model = Model()
    batcher = DynamicBatcher(
        name="m/1", runners=[model], max_batch_size=8, config=batching(), stats=VersionStats()
    )
    held = await hold(batcher, model)
    queued = submit(batcher, 1)
    await settle()
    closing = asyncio.ensure_future(batcher.close(drain_timeout_s=10))
    await settle()
    with pytest.raises(Unavailable, match="unloading"):
        await batcher.infer(x(2), size=1)
    assert not closing.done()
    model.release()
    started = time.perf_counter()
    async with asyncio.timeout(2):  # done when the work is, not at the drain timeout
        await closing
    assert time.perf_counter() - started < 1.5
    assert y_of(queued) == [2]
    assert held.done()
    assert 2.0 not in model.items()


async def test_close_with_nothing_in_flight_returns_at_once() -> None:
    model = Model()
    batcher = DynamicBatcher(
        name="m/1", runners=[model], max_batch_size=8, config=batching(), stats=VersionStats()
    )
    await batcher.infer(x(1), size=1)
    async with asyncio.timeout(1):
        await batcher.close(drain_timeout_s=10)


async def test_close_past_the_drain_timeout_fails_the_queue_without_blocking() -> None:
    model = Model()
    batcher = DynamicBatcher(
        name="m/1", runners=[model], max_batch_size=1, config=batching(), stats=VersionStats()
    )
    held = await hold(batcher, model)
    queued = submit(batcher, 1)
    await settle()
    closing = asyncio.ensure_future(batcher.close(drain_timeout_s=0.05))
    try:
        with pytest.raises(Unavailable, match="unloaded"):
            await _within(queued, 1.0)
        # The event loop answered while the stuck call still runs: close()
        # waits for the instance threads without blocking everyone else.
        assert not model.held_returned
        assert not closing.done()
    finally:
        model.release()
    await _within(closing, 2.0)
    assert y_of(held) == [HOLD * 2]


async def _within(awaitable: Awaitable[Any], timeout_s: float) -> Any:
    async with asyncio.timeout(timeout_s):
        return await awaitable


async def test_a_full_queue_is_cut_to_the_largest_preferred_size() -> None:
    model = Model()
    config = batching(preferred_batch_sizes=(4,))
    async with serving(model, max_batch_size=8, config=config) as batcher:
        held = await hold(batcher, model)
        waiting = [submit(batcher, float(i)) for i in range(6)]
        await settle()
        model.release()
        await asyncio.gather(held, *waiting)
    assert [len(call) for call in model.calls[1:]] == [4, 2]


# -- admission: refuse at once what cannot be served within the queue timeout --


async def _measured(batcher: DynamicBatcher) -> None:
    """One full call, so that the batcher knows the model's rate."""
    await batcher.infer(x(0, 0, 0, 0), size=4)


async def _burst(
    batcher: DynamicBatcher, count: int, *, rows: int = 4
) -> list[tuple[float, dict[str, Array] | EdgegateError]]:
    """`count` requests of `rows` items at once: (seconds until answered, outputs or error)."""
    started = time.perf_counter()

    async def one(value: float) -> tuple[float, dict[str, Array] | EdgegateError]:
        outcome: dict[str, Array] | EdgegateError
        try:
            outcome = await batcher.infer(x(*[value] * rows), size=rows)
        except EdgegateError as exc:
            outcome = exc
        return time.perf_counter() - started, outcome

    return await asyncio.gather(*(one(float(i + 20)) for i in range(count)))


def _kinds(outcomes: list[tuple[float, dict[str, Array] | EdgegateError]]) -> list[str]:
    return [type(o).__name__ if isinstance(o, EdgegateError) else "served" for _, o in outcomes]


async def test_a_burst_beyond_the_queue_timeout_is_refused_at_once_with_a_retry_hint() -> None:
    # 40 requests of 4 rows on a model that serves 4 rows per 50 ms: 2 s of work
    # against a 0.5 s queue timeout.
    model = Model(sleep_s=0.05)
    config = batching(queue_policy=QueuePolicy(default_timeout_us=500_000))
    async with serving(model, max_batch_size=4, config=config) as batcher:
        await _measured(batcher)
        outcomes = await _burst(batcher, 40)
        refused = [(at, o) for at, o in outcomes if isinstance(o, ResourceExhausted)]
        served = [(at, o) for at, o in outcomes if not isinstance(o, EdgegateError)]
        # Nothing admitted timed out in the queue: each was refused or served.
        assert set(_kinds(outcomes)) == {"served", "ResourceExhausted"}
        assert 2 <= len(served) <= 12
        assert all(at < 0.2 for at, _ in refused)  # at once, not after a wait
        for _, exc in refused:
            assert "overloaded" in exc.message and "queue timeout" in exc.message
            assert 0.2 <= float(exc.details["retry_after_s"]) <= 3.0
        # Served within the queue timeout plus their own call.
        assert all(at <= 0.5 + 0.1 for at, _ in served)
        assert all(o["y"].shape == (4, 1) for _, o in served)
        await batcher.infer(x(1), size=1)  # drained: admitted again


async def test_admission_counts_rows_not_requests() -> None:
    # 5 requests of 32 rows, and the model's batch is 32: 0.3 s a request. Counted in
    # requests, the queue would look short; counted in rows, it holds 1.5 s of work.
    model = Model(sleep_s=0.3)
    config = batching(queue_policy=QueuePolicy(default_timeout_us=1_000_000))
    async with serving(model, max_batch_size=32, config=config) as batcher:
        await batcher.infer(x(*[0] * 32), size=32)
        outcomes = await _burst(batcher, 5, rows=32)
    # Waits of 0 and 0.3 s are admitted (within half the 1 s timeout); 0.6 s and more not.
    assert _kinds(outcomes) == ["served"] * 2 + ["ResourceExhausted"] * 3


async def test_a_higher_priority_request_is_admitted_past_a_full_lower_level() -> None:
    model = Model(sleep_s=0.05)
    config = batching(
        priority_levels=2,
        default_priority_level=2,
        queue_policy=QueuePolicy(default_timeout_us=300_000),
    )
    async with serving(model, max_batch_size=4, config=config) as batcher:
        await _measured(batcher)
        held = await hold(batcher, model)
        low = [submit(batcher, float(i)) for i in range(20, 60)]  # 40 rows queued at level 2
        await settle()
        with pytest.raises(ResourceExhausted, match="overloaded"):
            await batcher.infer(x(99), size=1)  # level 2: behind them
        high = submit(batcher, 100, priority=1)  # level 1: nothing ahead of it
        await settle()
        model.release()
        await asyncio.wait([held, high, *low])
    assert y_of(high) == [200]
    assert 100.0 in model.calls[2]  # the first call after the held one (and the measured one)


async def test_a_request_may_wait_as_long_as_the_work_ahead_allows_with_delay_or_no_timeout() -> (
    None
):
    model = Model(sleep_s=0.02)
    for policy in (QueuePolicy(default_timeout_us=0), QueuePolicy(timeout_action="delay")):
        async with serving(model, max_batch_size=1, config=batching(queue_policy=policy)) as b:
            await b.infer(x(0), size=1)
            outcomes = await _burst(b, 20, rows=1)  # 0.4 s of work
            assert _kinds(outcomes) == ["served"] * 20


async def test_without_a_configured_timeout_a_request_is_admitted_for_a_2_s_wait_at_most() -> None:
    # 40 requests of 4 rows, 0.1 s each: 4 s of work against the default 2 s timeout.
    model = Model(sleep_s=0.1)
    async with serving(model, max_batch_size=4, config=batching()) as batcher:
        await _measured(batcher)
        outcomes = await _burst(batcher, 40)
    assert set(_kinds(outcomes)) == {"served", "ResourceExhausted"}
    assert 6 <= _kinds(outcomes).count("served") <= 16
    assert max(at for at, o in outcomes if not isinstance(o, EdgegateError)) <= 2.0 + 0.2


async def test_served_requests_report_their_queue_and_compute_time() -> None:
    model = Model(sleep_s=0.05)
    async with serving(model, config=batching()) as batcher:
        held = await hold(batcher, model)
        queued = asyncio.ensure_future(batcher.serve(x(1), size=1))
        await asyncio.sleep(0.1)  # the behaviour: 0.1 s queued behind the held call
        model.release()
        await held
        served = await queued
    assert served.queue_s >= 0.09  # behind the held call
    assert 0.045 <= served.compute_s < 0.09  # its own call, not the wait
    assert [float(v) for v in served.outputs["y"][:, 0]] == [2]


async def test_a_request_that_rides_in_the_next_batch_waits_only_for_the_running_call() -> None:
    # A call takes 0.3 s whatever its size (32 rows at most): a request joining 24 queued
    # rows starts with them, when the running call ends; one that does not fit waits a
    # whole batch more. The queue timeout is 0.4 s: admitted up to 0.2 s of estimated wait.
    model = Model(sleep_s=0.3)
    config = batching(queue_policy=QueuePolicy(default_timeout_us=400_000))
    async with serving(model, max_batch_size=32, config=config) as batcher:
        await batcher.infer(x(*[0] * 32), size=32)  # ~107 rows/s
        held = await hold(batcher, model)
        queued = submit(batcher, *[1] * 24)
        await settle()
        joining = submit(batcher, *[2] * 8)  # 24 + 8 rows: the same next batch
        await settle()
        with pytest.raises(ResourceExhausted, match="overloaded"):
            await batcher.infer(x(3), size=1)  # the batch after: 0.3 s more
        model.release()
        await asyncio.gather(held, queued, joining)
    assert model.calls[2] == [1] * 24 + [2] * 8
