"""Shadow traffic: a share of the messages answered by one version, copied to a canary.

While a canary is rolled out, its error rate and latency say whether it
runs, not whether it answers right. The route document's `shadow` (see
`core/routing.py`) asks for a copy of `percent`% of the requests that
weighted routing sent to another version: the same admitted envelope goes to
the shadow version too, and its answer is compared with the one the caller
got (`core/agreement.py`). The caller is answered from the chosen version
alone, before the copy is even sent: the copy runs as a background task,
and its outcome, failure or slowness reaches nobody but the counts.

- At most `max_in_flight` copies run at once; a copy beyond that is dropped
  (and counted in `edgegate_gateway_shadow_dropped_total`): shadow traffic
  must never pile up in a gateway whose canary is slow.
- A copy goes through no breaker and never to the cloud fallback
  (`LocalInference.infer_unguarded`); a version whose breaker is open is
  not shadowed at all.
- A copy that fails counts as compared and not agreed: a canary that errors
  where the stable version answers is wrong. A copy refused as overload
  (RESOURCE_EXHAUSTED) is not counted: the canary was busy, not wrong.

Per (model, shadow version), the cumulative counts since this process
started are published as an `AgreementSnapshot` on
`edgegate.gateway.v1.agreement.<model>.<version>` every `snapshot_s`.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry, Counter

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import EdgegateError, ResourceExhausted
from edgegate_common.logging import get_logger
from edgegate_gateway.core.agreement import agree
from edgegate_gateway.core.routing import Shadow
from edgegate_gateway.local import LocalInference
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2 as gpb

log = get_logger(__name__)

MAX_IN_FLIGHT = 32


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


@dataclass
class _Counts:
    """One version's comparisons, counted from `started_at` (its first comparison here).

    A reader takes growth between snapshots; a snapshot whose `started_at` lies inside its
    window counts from zero, so a version's first comparisons are never taken as history.
    """

    started_at: Timestamp = field(default_factory=_now)
    compared: int = 0
    agreed: int = 0


class ShadowTraffic:
    def __init__(
        self,
        *,
        bus: Bus,
        readiness: ModelReadiness,
        local: LocalInference,
        instance: str,
        min_cosine: float,
        max_in_flight: int = MAX_IN_FLIGHT,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._bus = bus
        self._readiness = readiness
        self._local = local
        self._instance = instance
        self._min_cosine = min_cosine
        self._max_in_flight = max_in_flight
        self._rng = rng
        self._counts: dict[tuple[str, str], _Counts] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._publisher: asyncio.Task[None] | None = None
        self.dropped = 0
        self._dropped = Counter(
            "edgegate_gateway_shadow_dropped",
            "Shadow copies not sent because too many were in flight",
            ["model", "version"],
            registry=registry,
        )

    def copy(
        self, envelope: env.Envelope, reply: env.Reply, *, chosen: str, shadow: Shadow
    ) -> None:
        """Send a copy of `envelope`, which `chosen` answered with `reply`, to the shadow
        version in the background, if this message is one of the share and that version
        is served and may be called. Returns at once; `envelope` and `reply` may change
        afterwards (they are copied)."""
        model = envelope.route.model
        if (
            shadow.version == chosen
            or not shadow.sampled(rng=self._rng)
            or shadow.version not in self._readiness.served_versions(model)
            or not self._local.may_call(model, shadow.version)
        ):
            return
        if len(self._running) >= self._max_in_flight:
            self.dropped += 1
            self._dropped.labels(model, shadow.version).inc()
            return
        copied = env.Envelope()
        copied.CopyFrom(envelope)
        primary = [env.Part() for _ in reply.parts]
        for part, original in zip(primary, reply.parts, strict=True):
            part.CopyFrom(original)
        task = asyncio.get_running_loop().create_task(
            self._compare(copied, primary, model=model, version=shadow.version)
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _compare(
        self, envelope: env.Envelope, primary: list[env.Part], *, model: str, version: str
    ) -> None:
        try:
            reply = await self._local.infer_unguarded(envelope, model=model, version=version)
        except ResourceExhausted:
            return  # busy, not wrong
        except EdgegateError as exc:
            # Debug: a broken canary fails every copy; the snapshots carry the signal.
            log.debug("shadow call failed", model=model, version=version, error=exc.message)
            agreed = False
        except Exception:
            log.exception("shadow call failed", model=model, version=version)
            agreed = False
        else:
            agreed = agree(primary, list(reply.parts), min_cosine=self._min_cosine)
        counts = self._counts.setdefault((model, version), _Counts())
        counts.compared += 1
        counts.agreed += agreed

    def snapshots(self) -> list[gpb.AgreementSnapshot]:
        """The counts so far, one snapshot per version with comparisons."""
        at = Timestamp()
        at.GetCurrentTime()
        return [
            gpb.AgreementSnapshot(
                model=model,
                version=version,
                instance=self._instance,
                at=at,
                started_at=counts.started_at,
                compared=counts.compared,
                agreed=counts.agreed,
            )
            for (model, version), counts in sorted(self._counts.items())
            if counts.compared
        ]

    async def publish(self) -> None:
        for snapshot in self.snapshots():
            subject = subjects.gateway_agreement(snapshot.model, snapshot.version)
            await self._bus.publish_best_effort(subject, snapshot, kind="agreement_snapshot")

    def start(self, *, snapshot_s: float) -> None:
        """Publish the snapshots every `snapshot_s` (0: never)."""
        if snapshot_s > 0:
            loop = asyncio.get_running_loop()
            self._publisher = loop.create_task(self._publish_every(snapshot_s))

    async def _publish_every(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.publish()

    async def stop(self) -> None:
        """Cancel the copies in flight (no caller waits for them) and the publishing."""
        tasks = [*self._running, *([self._publisher] if self._publisher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
