"""Per model version counters: what ModelStatistics and the metric snapshots report.

The numbers follow Triton's statistics extension: an *inference* is one
request item (a request of batch 4 counts 4), an *execution* is one model
call (one batch). Durations are summed in nanoseconds. Latency and batch
sizes are also kept as fixed-bucket histograms, so that snapshots from many
replicas can be added up by the operator's canary analysis.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field

# The buckets every edgegate latency histogram uses (upper bounds; +Inf implied).
from edgegate_common.metrics import LATENCY_BUCKETS_S


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass(slots=True)
class BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class VersionStats:
    """Everything counted for one model version since it loaded."""

    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    by_batch_size: dict[int, BatchDurations] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)  # by status code name
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    batch_sizes: Counter[int] = field(default_factory=Counter)

    def observe_execution(
        self, *, batch_size: int, requests: int, input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        """One model call that served `requests` requests holding `batch_size` items."""
        self.execution_count += 1
        self.inference_count += batch_size
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.batch_sizes[batch_size] += 1
        # Triton attributes a batch's compute time to each request in it.
        self.compute_input.add(input_ns * requests, requests)
        self.compute_infer.add(infer_ns * requests, requests)
        self.compute_output.add(output_ns * requests, requests)
        per_size = self.by_batch_size.setdefault(batch_size, BatchDurations())
        per_size.compute_input.add(input_ns)
        per_size.compute_infer.add(infer_ns)
        per_size.compute_output.add(output_ns)

    def observe_queue(self, ns: int) -> None:
        self.queue.add(ns)

    def observe_request(self, *, seconds: float, error: str | None) -> None:
        """A request finished (answered or failed) after `seconds` in the batcher."""
        ns = int(seconds * 1e9)
        if error is None:
            self.success.add(ns)
        else:
            self.fail.add(ns)
            self.errors[error] += 1
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
