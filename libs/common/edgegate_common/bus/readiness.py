"""Which model versions some inference replica serves now, from their NATS announcements.

Inference replicas announce on `edgegate.inference.v1.availability.<model>.<version>`
when they start and stop serving a version; the taskstore asks them all to
announce again (`availability_query`) when it starts and, while tasks wait,
every `recheck_s`, so a replica that started later learns what already runs.
A kill -9 announces nothing: a worker that finds nobody answering marks the
version down until a replica announces it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from edgegate_common import subjects
from edgegate_common.bus.client import Bus
from edgegate_protos.inference.v1 import inference_pb2 as ipb

Key = tuple[str, str]


class ModelReadiness:
    def __init__(
        self, bus: Bus, *, recheck_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._bus = bus
        self._recheck_s = recheck_s
        self._clock = clock
        self._instances: dict[Key, set[str]] = {}
        self._max_batch: dict[Key, int] = {}
        self._heard = asyncio.Event()
        self._asked_at = float("-inf")
        self._subscription: Subscription | None = None

    async def start(self, *, settle_s: float = 0.5) -> None:
        """Subscribe, ask who serves what, and give the answers up to `settle_s` to arrive.

        Without the wait, the first tasks taken would find no model ready and
        be put back, to run after lower-priority ones.
        """
        self._subscription = await self._bus.subscribe(
            subjects.INFERENCE_AVAILABILITY_ALL, cb=self._receive
        )
        await self.ask()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._heard.wait(), timeout=settle_s)
            await asyncio.sleep(0.05)  # a replica announces all its versions in one burst

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._bus.unsubscribe(self._subscription, drain=False)

    async def ask(self) -> None:
        """Ask every inference replica to announce what it serves."""
        self._asked_at = self._clock()
        await self._bus.publish_best_effort(
            subjects.INFERENCE_AVAILABILITY_QUERY, b"", kind="availability_query"
        )

    def version_to_run(self, model: str, version: str) -> str | None:
        """The version to send a task to now, or None to wait.

        A named version once some replica announced it; without a version,
        the highest one announced.
        """
        if version:
            return version if self._instances.get((model, version)) else None
        ready = [v for (m, v), who in self._instances.items() if m == model and who]
        return max(ready, key=_version_order) if ready else None

    def served_versions(self, model: str) -> list[str]:
        """The versions of `model` some replica serves now."""
        return [v for (m, v), who in self._instances.items() if m == model and who]

    def models(self) -> list[str]:
        """The models some replica serves now, by name."""
        return sorted({m for (m, _), who in self._instances.items() if who})

    def max_batch_size(self, model: str, version: str) -> int:
        """The most rows one request to `model` `version` may carry; 0 if unknown or unbatched."""
        return self._max_batch.get((model, version), 0)

    def mark_down(self, model: str, version: str) -> None:
        self._instances.pop((model, version), None)

    def ask_due(self) -> bool:
        return self._clock() - self._asked_at >= self._recheck_s

    async def _receive(self, msg: Msg) -> None:
        with contextlib.suppress(DecodeError):
            self.observe(ipb.ModelAvailability.FromString(msg.data))

    def observe(self, announced: ipb.ModelAvailability) -> None:
        self._heard.set()
        who = self._instances.setdefault((announced.model, announced.version), set())
        if announced.ready:
            who.add(announced.instance)
            self._max_batch[(announced.model, announced.version)] = announced.max_batch_size
        else:
            who.discard(announced.instance)


def _version_order(version: str) -> tuple[float, str]:
    # Numeric versions compare as numbers ("10" after "9"), others after them by name.
    if re.fullmatch(r"\d+", version):
        return (int(version), "")
    return (float("inf"), version)
