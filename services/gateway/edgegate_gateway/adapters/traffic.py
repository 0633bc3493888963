"""Publishes this replica's per-tenant admitted/throttled counts for the console.

Every `every_s` a `TrafficSnapshot` goes out on `edgegate.gateway.v1.traffic`
(core NATS, best effort: a lost one only makes the console's next difference
span two periods). The console adds up the replicas' differences, so a
console behind any replica shows the whole suite's traffic.
"""

from __future__ import annotations

import asyncio
import contextlib

from google.protobuf.timestamp_pb2 import Timestamp

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_gateway.core.traffic import TrafficCounts
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb


class TrafficPublisher:
    def __init__(self, bus: Bus, counts: TrafficCounts, *, instance: str, every_s: float) -> None:
        self._bus = bus
        self._counts = counts
        self._instance = instance
        self._every_s = every_s
        self._started_at = Timestamp()
        self._started_at.GetCurrentTime()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._every_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def snapshot(self) -> gpb.TrafficSnapshot:
        message = gpb.TrafficSnapshot(instance=self._instance, started_at=self._started_at)
        message.at.GetCurrentTime()
        for tenant, counts in self._counts.snapshot().items():
            message.tenants[tenant].admitted = counts.admitted
            message.tenants[tenant].throttled = counts.throttled
        return message

    async def _run(self) -> None:
        while True:
            await self._bus.publish_best_effort(
                subjects.GATEWAY_TRAFFIC, self.snapshot(), kind="traffic"
            )
            await asyncio.sleep(self._every_s)
