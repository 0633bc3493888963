"""Each ModelDeployment's rollout, mirrored into NATS KV `edgegate-rollouts`.

The console and local tools see rollouts there without Kubernetes API
access. The key is `<namespace>.<name>` (each part through
`subjects.ident`); the value is the JSON document of
`core.mirror.rollout_document`, whose docstring gives its shape. The
reconciler writes it on every reconcile that decides a status, with the
status it decided, even when the status patch itself waits out its rate
limit; the write is skipped when the bucket holds the same document but
for `observedAt`. The document goes when the resource does.

The mirror is a view, never rollout state: a write that fails (NATS down,
the bucket gone) is logged and tried again on the next reconcile, and
never stops one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgegate_common import subjects
from edgegate_common.logging import get_logger
from edgegate_operator.adapters.bus import OperatorBus
from edgegate_operator.core import RolloutStatus
from edgegate_operator.core.mirror import OBSERVED_AT, rollout_document
from edgegate_operator.core.spec import ModelDeploymentSpec
from edgegate_operator.core.units import to_ms

log = get_logger(__name__)


def rollout_key(namespace: str, name: str) -> str:
    """The resource's key in `edgegate-rollouts`."""
    return f"{subjects.ident(namespace)}.{subjects.ident(name)}"


@dataclass
class RolloutMirror:
    bus: OperatorBus
    # A write that takes longer is given up (and tried again next time): a reconcile
    # must not wait on a view.
    timeout_s: float = 2.0
    _failing: set[str] = field(default_factory=set)

    async def write(
        self,
        body: Mapping[str, Any],
        status: RolloutStatus,
        *,
        spec: ModelDeploymentSpec | None,
        now_s: float,
    ) -> bool:
        """Mirror `status` (the one just decided) for `body`, whose spec the reconcile read
        as `spec` (None: refused); True when the bucket changed."""
        meta = body["metadata"]
        key = rollout_key(meta["namespace"], meta["name"])
        doc = rollout_document(
            namespace=meta["namespace"],
            name=meta["name"],
            spec=body.get("spec") or {},
            parsed=spec,
            generation=int(meta.get("generation") or 0),
            status=status,
            observed_at_ms=to_ms(now_s),
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                written = await self.bus.put(
                    subjects.KV_ROLLOUTS, key, doc, ignoring=frozenset({OBSERVED_AT})
                )
        except Exception as exc:  # a view's trouble never stops a rollout
            self._failed(key, exc)
            return False
        if key in self._failing:
            self._failing.discard(key)
            log.info("rollout mirror written again", key=key)
        return written

    async def remove(self, namespace: str, name: str) -> None:
        """The resource is gone: so is its document (a failure is logged, not raised)."""
        key = rollout_key(namespace, name)
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.bus.delete(subjects.KV_ROLLOUTS, key)
        except Exception as exc:
            self._failed(key, exc)
        else:
            self._failing.discard(key)

    def _failed(self, key: str, exc: Exception) -> None:
        """Warn once per run of failures (a reconcile every second would repeat it)."""
        if key not in self._failing:
            self._failing.add(key)
            log.warning("rollout mirror not updated", key=key, error=repr(exc))
