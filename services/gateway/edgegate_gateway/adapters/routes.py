"""The route table: weights (and shadow) per model from NATS KV `edgegate-routes`, followed live.

A change to a model's weights applies as soon as the watch delivers it (well
within a second), with no restart.
"""

from __future__ import annotations

import asyncio
import dataclasses

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from edgegate_common import subjects
from edgegate_common.bus import ensure_key_value
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters import kv_watch
from edgegate_gateway.core.routing import Weights

log = get_logger(__name__)


class RouteTable:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._weights: dict[str, Weights] = {}
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int = 1) -> RouteTable:
        kv = await ensure_key_value(
            js,
            KeyValueConfig(bucket=subjects.KV_ROUTES, storage=StorageType.FILE, replicas=replicas),
        )
        return cls(kv)

    async def start(self) -> None:
        self._watcher = await kv_watch.follow(self._kv, self._apply)

    async def stop(self) -> None:
        await kv_watch.stop(self._watcher)

    def weights(self, model: str) -> Weights | None:
        return self._weights.get(subjects.ident(model)) or self._weights.get(model)

    def _apply(self, model: str, value: bytes | None) -> None:
        if not value:
            self._weights.pop(model, None)
            log.info("route removed", model=model)
            return
        try:
            self._weights[model] = Weights.from_json(value)
        except ValueError as exc:
            log.error("route ignored", model=model, error=str(exc))
            return
        applied = self._weights[model]
        log.info(
            "route applied",
            model=model,
            weights=dict(applied.by_version),
            shadow=None if applied.shadow is None else dataclasses.asdict(applied.shadow),
        )
