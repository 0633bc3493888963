"""Prometheus metrics of the inference service, read from the versions' counters at scrape time.

The batcher counts into plain `VersionStats` (no Prometheus call on the hot
path); this collector turns them into metric families when `/metrics` is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from edgegate_common.metrics import LATENCY_BUCKETS_S
from edgegate_inference.repository import ModelRepository

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LABELS = ["model", "version"]


class RepositoryCollector(Collector):
    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "edgegate_inference_model_info",
            "Loaded model versions and the execution providers ONNX Runtime runs them with",
            labels=[*_LABELS, "execution_providers"],
        )
        requests = CounterMetricFamily(
            "edgegate_inference_requests",
            "Finished inference requests by gRPC status code",
            labels=[*_LABELS, "code"],
        )
        latency = HistogramMetricFamily(
            "edgegate_inference_request_seconds",
            "Time from queueing to answer",
            labels=_LABELS,
        )
        queue = SummaryMetricFamily(
            "edgegate_inference_queue_seconds", "Time requests waited for a batch", labels=_LABELS
        )
        batch = HistogramMetricFamily(
            "edgegate_inference_batch_size", "Items per model execution", labels=_LABELS
        )
        queued = GaugeMetricFamily(
            "edgegate_inference_queued_requests", "Requests waiting now", labels=_LABELS
        )
        # Scrapes run on the metrics server's thread while the event loop updates
        # the counters: read copies, never iterate the live dicts.
        for mv in list(self._repository.served()):
            s, labels = mv.stats, [mv.name, mv.version]
            errors, batch_sizes = dict(s.errors), dict(s.batch_sizes)
            info.add_metric([*labels, ",".join(mv.providers)], 1)
            requests.add_metric([*labels, "OK"], s.success.count)
            for code, count in errors.items():
                requests.add_metric([*labels, code], count)
            cumulative = list(accumulate(list(s.latency_buckets)))
            bounds = [str(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
            latency.add_metric(
                labels, list(zip(bounds, cumulative, strict=True)), (s.success.ns + s.fail.ns) / 1e9
            )
            queue.add_metric(labels, s.queue.count, s.queue.ns / 1e9)
            batch_counts = [
                sum(n for size, n in batch_sizes.items() if size <= bound)
                for bound in _BATCH_BUCKETS
            ]
            total = sum(batch_sizes.values())
            items = sum(size * n for size, n in batch_sizes.items())
            batch.add_metric(
                labels,
                [
                    *zip([str(b) for b in _BATCH_BUCKETS], batch_counts, strict=True),
                    ("+Inf", total),
                ],
                items,
            )
            queued.add_metric(labels, mv.batcher.queued if mv.batcher else 0)
        yield from (info, requests, latency, queue, batch, queued)
