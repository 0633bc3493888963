"""A console started late still shows the last hour: it reads the operator's observations back.

In a cluster the operator keeps an hour of metric snapshots and breaker events in
JetStream (`EDGEGATE_OBSERVATIONS`). A gateway restarted by a rolling update reads them
back, then follows the stream, so its overview charts do not start empty.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import nats.js.errors
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.api import RetentionPolicy, StreamConfig
from support.waiting import eventually

from edgegate_common import subjects
from edgegate_common.bus import Bus, ensure_stream
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_gateway.adapters.breakers import BreakerControls
from edgegate_gateway.adapters.fallback import FallbackSettings
from edgegate_gateway.adapters.rate_limits import RateLimiter
from edgegate_gateway.adapters.security_admin import SecurityAdmin
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.console.sources import Sources
from edgegate_gateway.core.breaker import BreakerPolicy
from edgegate_gateway.local import LocalInference
from edgegate_operator.adapters.bus import OBSERVED_SUBJECTS
from edgegate_protos.inference.v1 import inference_pb2 as ipb


def _stamp(at_s: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(at_s * 1e9))
    return stamp


def _snapshot(*, requests: int, at_s: float, loaded_s: float) -> ipb.MetricsSnapshot:
    return ipb.MetricsSnapshot(
        model="toy_text",
        version="1",
        instance="inference-a",
        at=_stamp(at_s),
        loaded_at=_stamp(loaded_s),
        ready=True,
        execution_providers=["cpu"],
        requests=requests,
        successes=requests,
        latency_bounds_s=[0.01, 0.1],
        latency_counts=[requests, 0, 0],
        latency_sum_s=requests * 0.005,
    )


@pytest.fixture
async def sources(bus: Bus) -> AsyncIterator[Sources]:
    readiness = ModelReadiness(bus)
    local = LocalInference(
        bus=bus, readiness=readiness, policy=BreakerPolicy(), timeout_s=1, instance="gw"
    )
    made = Sources(
        bus=bus,
        readiness=readiness,
        limiter=await RateLimiter.open(bus.js),
        taskstore=TaskstoreClient(bus, timeout_s=1),
        security=SecurityAdmin(bus),
        knowledge=None,
        local=local,
        controls=await BreakerControls.open(
            bus.js, local=local, policy=BreakerPolicy(), cloud=FallbackSettings(base_url="")
        ),
    )
    yield made
    await made.stop()


async def test_the_last_hour_is_read_back_from_the_operators_stream(
    bus: Bus, sources: Sources
) -> None:
    await _fresh_observations(bus)
    now = time.time()
    subject = subjects.inference_metrics("toy_text", "1")
    # Two snapshots published before this console started (inference loaded 30 min ago).
    for requests, minutes_ago in ((10, 20), (30, 10)):
        snap = _snapshot(requests=requests, at_s=now - minutes_ago * 60, loaded_s=now - 1800)
        await bus.js.publish(subject, snap.SerializeToString())

    await sources.start()

    def totals() -> int | None:
        requests = sources.observed.totals()["requests"]
        return requests if requests >= 30 else None

    assert await eventually(totals, timeout_s=10, what="the hour read back") == 30
    (row,) = sources.model_versions()
    assert (row["model"], row["requests"]) == ("toy_text", 30)
    # Then it follows what comes next, once: a later snapshot adds only its difference.
    later = _snapshot(requests=45, at_s=time.time(), loaded_s=now - 1800)
    await bus.publish(subject, later.SerializeToString())

    def followed() -> int | None:
        requests = sources.observed.totals()["requests"]
        return requests if requests != 30 else None

    assert await eventually(followed, timeout_s=10, what="the live snapshot") == 45


async def _fresh_observations(bus: Bus) -> None:
    """The operator's stream, as the operator makes it, and empty (the NATS server is shared)."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await bus.js.delete_stream(subjects.STREAM_OBSERVATIONS)
    await ensure_stream(
        bus.js,
        StreamConfig(
            name=subjects.STREAM_OBSERVATIONS,
            subjects=list(OBSERVED_SUBJECTS),
            retention=RetentionPolicy.LIMITS,
            max_age=3600,
        ),
    )
