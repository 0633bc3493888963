"""Replicas of the operator that do not both act: kopf's peering, for our own resync loop.

kopf pauses its handlers on a replica that sees a live peer of a higher or
the same priority in the peering object. `resync_forever` reconciles outside
kopf, so it asks a `PeeringGate` before each pass; the gate reads the same
object (at most every `read_every_s`) and applies the same rule
(`core.peering.standing`). It also waits for its own record there, written
by kopf's keep-alive, so that it never acts where its peers cannot see it.
Without a peering name the operator runs standalone, as one replica, and
the gate always answers "act" without a read.

With peering configured, a peering object that cannot be read (absent, its
CRD absent, the API refusing or down) pauses the loop: kopf itself stays
paused without its peering object when peering is mandatory, and a replica
that cannot see its peers cannot know that it is the one to act.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kubernetes.client.exceptions import ApiException

from edgegate_operator.adapters.kube import Kube
from edgegate_operator.core.peering import ACTS, MAX_PRIORITY, Standing, listed, standing

READ_TIMEOUT_S = 5.0


def own_identity() -> str:
    """This replica's name among its peers: the pod's (host) name, pid and a random tail.

    The tail tells a restarted container (same pod, often the same pid 1) from
    its previous self, whose record may still look alive.
    """
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def own_priority(configured: int) -> int:
    """`configured`, or when 0 a random one in 1..MAX_PRIORITY.

    Two replicas then practically never tie (one start in 32767 does; kopf then
    pauses both, which is safe, and a restart of either draws again).
    """
    return configured or 1 + secrets.randbelow(MAX_PRIORITY)


class PeeringGate:
    """Whether this replica's own loops may act now, by kopf's rule for its handlers."""

    def __init__(
        self,
        kube: Kube | None,
        *,
        name: str,
        namespaces: list[str],
        identity: str,
        priority: int,
        read_every_s: float,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
    ) -> None:
        """`kube` None or `name` empty: standalone. `namespaces` empty: cluster-wide peering."""
        self._kube = kube if name else None
        self._name = name
        # kopf peers in a ClusterKopfPeering when it serves the whole cluster, and in a
        # KopfPeering in each namespace it serves otherwise; it acts only if no peering pauses it.
        self._namespaces: list[str | None] = list(namespaces) or [None]
        self.identity = identity
        self.priority = priority
        self._read_every_s = read_every_s
        self._clock = clock
        self._now = now
        self._last: Standing = Standing.paused("peering object not read yet")
        self._read_at: float | None = None

    @classmethod
    def standalone(cls) -> PeeringGate:
        return cls(None, name="", namespaces=[], identity="", priority=0, read_every_s=1.0)

    @property
    def peering(self) -> bool:
        return self._kube is not None

    async def standing(self) -> Standing:
        """Act or pause; the peering object is read at most every `read_every_s`."""
        if self._kube is None:
            return ACTS
        if self._read_at is not None and self._clock() - self._read_at < self._read_every_s:
            return self._last
        self._read_at = self._clock()
        self._last = await self._read(self._kube)
        return self._last

    async def _read(self, kube: Kube) -> Standing:
        for namespace in self._namespaces:
            where = self._name if namespace is None else f"{namespace}/{self._name}"
            try:
                obj = await kube.kopf_peering(self._name, namespace, timeout_s=READ_TIMEOUT_S)
            except ApiException as exc:
                return Standing.paused(f"peering object {where} unreadable: HTTP {exc.status}")
            except Exception as exc:  # down, timed out, garbled: whatever it is, do not act
                return Standing.paused(f"peering object {where} unreadable: {exc!r}")
            if obj is None:
                return Standing.paused(f"peering object {where} not found")
            status, now = obj.get("status"), self._now()
            if not listed(status, identity=self.identity, now=now):
                return Standing.paused(
                    f"{where}: no live record of our own yet (kopf's keep-alive)"
                )
            found = standing(status, identity=self.identity, priority=self.priority, now=now)
            if not found.acts:
                return Standing.paused(f"{where}: {found.reason}")
        return ACTS
