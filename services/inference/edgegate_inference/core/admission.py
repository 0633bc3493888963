"""Admission control: refuse at once what the model cannot start within its queue timeout.

A queue that takes everything turns overload into latency: every caller
waits behind everyone else, the waits grow past what anyone would wait for,
and a caller that times out has cost the model its work for nothing. So a
request whose queue timeout (the policy's, or a shorter one of its own)
would pass before the model could start it (with half the timeout as room
for the estimate's error) is refused now, with
RESOURCE_EXHAUSTED and the wait it would have seen as a retry hint
(`details["retry_after_s"]`), while the requests already admitted keep
within their timeouts.

The wait a newcomer would see is what is left of the model calls running
now, plus the batches that will go before the one it joins. Work is counted
in rows, the items along the batch dimension, not in requests: a request of
32 sentences is 32 rows. Ahead of a request are the rows queued at its own
and higher priority levels; with `max_batch` rows to a call, the first
batches go before it, and it rides in the next with what fits beside it
(the rows in that batch with it do not delay it: they start together). A
batch takes `max_batch` rows divided by the rate; without batching, every
request is its own call and the rows ahead are the work ahead. The rate is an exponentially
weighted moving average of rows per second of recent model calls (dispatch
to answer), so it follows the batch sizes that load brings (larger batches
serve more rows per second) and a machine that gets slower. Until the first
call has been measured, nothing is refused on an estimate. Rows are an
estimate of work, not a measure: a batch of long sentences costs more than
one of short ones, so when the inputs change the rate lags for a few calls,
and the queue timeout still bounds what was admitted on the old figure.

Only a queue policy that rejects late requests admits this way: with
`timeout_action: delay` a late request is still served, so it is admitted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from edgegate_common.errors import RETRY_AFTER_KEY, ResourceExhausted

# How much the newest model call counts in the rate. 0.2: about the last ten
# calls make the figure, so one odd call cannot swing it, and a change of load
# shows within a second or two of calls.
RATE_WEIGHT = 0.2
# A request is admitted while its estimated wait is within this share of its timeout.
# The rest is room for the estimate's error, so that what is admitted does not time out
# in the queue after all: on a shared 2-core machine a batch's time swings by up to 2x
# within a second, faster than any average follows. It costs no throughput as long as
# half the timeout holds a few batches: the model still never waits for work.
ADMIT_SHARE = 0.5


@dataclass(slots=True)
class ServiceRate:
    """Rows per second one model instance serves: an EWMA over its calls, except that a
    slower call counts at once. Slower at once, faster on average: a machine that
    slows down (other work on its cores) must stop admission before the requests
    admitted on the old figure time out; one that speeds up costs only a few
    early refusals."""

    rows_per_s: float | None = None  # None until a call has been measured

    def observe(self, *, rows: int, seconds: float) -> None:
        if rows <= 0 or seconds <= 0:
            return
        rate = rows / seconds
        if self.rows_per_s is None or rate < self.rows_per_s:
            self.rows_per_s = rate
        else:
            self.rows_per_s += RATE_WEIGHT * (rate - self.rows_per_s)


class Admission:
    """The rows waiting and running in one batcher, and the wait they mean for a newcomer."""

    def __init__(
        self, *, name: str, instances: int, levels: Iterable[int], max_batch: int | None
    ) -> None:
        """`max_batch`: rows per model call, None without batching."""
        self._name = name
        self._instances = max(instances, 1)
        self._max_batch = max_batch
        self._queued_rows = dict.fromkeys(levels, 0)
        self._running: dict[int, tuple[int, int]] = {}  # instance -> (rows, started at ns)
        self.rate = ServiceRate()

    # -- what the batcher tells it --------------------------------------------

    def queued(self, *, level: int, rows: int) -> None:
        self._queued_rows[level] += rows

    def left_queue(self, *, level: int, rows: int) -> None:
        """Rows dispatched to a model call, or dropped (expired, abandoned, unloaded)."""
        self._queued_rows[level] -= rows

    def started(self, *, instance: int, rows: int, now_ns: int) -> None:
        self._running[instance] = (rows, now_ns)

    def finished(self, *, instance: int, now_ns: int, ok: bool) -> None:
        """A call is over, back on the event loop (a failed one teaches nothing).

        Timed from dispatch to its answer on the loop, not only the model call: the
        hand-offs to and from the instance thread, and the loop's delay in taking
        the answer, are part of what each batch costs (on a busy loop, a large part).
        """
        rows, started_ns = self._running.pop(instance, (0, now_ns))
        if ok:
            self.rate.observe(rows=rows, seconds=(now_ns - started_ns) / 1e9)

    # -- what it tells the batcher ---------------------------------------------

    def wait_s(self, *, level: int, rows: int, now_ns: int) -> float | None:
        """The queue wait a request of `rows` at `level` would see now; None before any
        call was measured."""
        rate = self.rate.rows_per_s
        if rate is None:
            return None
        ahead = sum(queued for lv, queued in self._queued_rows.items() if lv <= level)
        if not ahead and len(self._running) < self._instances:
            return 0.0  # an instance is free and nothing goes first
        # What the running calls have left: their expected time less the time they ran.
        left_s = sum(
            max(running / rate - (now_ns - started_ns) / 1e9, 0.0)
            for running, started_ns in self._running.values()
        )
        if self._max_batch is None:
            work_s = ahead / rate
        else:  # the full batches before the one it joins (it never splits)
            before = (ahead + rows - 1) // self._max_batch
            work_s = before * self._max_batch / rate
        return (left_s + work_s) / self._instances

    def admit(self, *, level: int, rows: int, timeout_us: int, now_ns: int) -> None:
        """Refuse, with RESOURCE_EXHAUSTED and a retry hint, a request that would time out."""
        if not timeout_us:
            return  # no timeout: it may wait as long as it takes
        wait_s = self.wait_s(level=level, rows=rows, now_ns=now_ns)
        timeout_s = timeout_us / 1e6
        if wait_s is None or wait_s <= ADMIT_SHARE * timeout_s:
            return
        retry_after_s = math.ceil(wait_s * 10) / 10
        raise ResourceExhausted(
            f"{self._name}: overloaded: about {wait_s:.2f} s of work is ahead of this "
            f"request, too close to its {timeout_s:g} s queue timeout; "
            f"retry after {retry_after_s:g} s",
            details={RETRY_AFTER_KEY: f"{retry_after_s:g}"},
        )
