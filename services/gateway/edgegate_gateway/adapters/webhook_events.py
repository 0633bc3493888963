"""Handling each chat-platform event once, across retries and replicas.

Platforms deliver an event again when they are unsure it arrived (Telegram,
Slack and WhatsApp all retry). Each event id is claimed in the NATS KV
bucket `edgegate-webhook-events` (kept a day): the first claim handles the
event, a repeat is acknowledged and does nothing. A claim whose handling
fails before the answer went out is released, so the platform's own retry
tries again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from edgegate_common import subjects
from edgegate_common.bus import ensure_key_value
from edgegate_common.errors import Unavailable
from edgegate_common.logging import get_logger

log = get_logger(__name__)


class EventClaims:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int = 1) -> EventClaims:
        kv = await ensure_key_value(
            js,
            KeyValueConfig(
                bucket=subjects.KV_WEBHOOK_EVENTS,
                storage=StorageType.FILE,
                replicas=replicas,
                ttl=86400,
            ),
        )
        return cls(kv)

    async def claim(self, platform: str, event_id: str) -> bool:
        """True for the first claim of this event, False if it was claimed before. Kept."""
        try:
            await self._kv.create(_key(platform, event_id), b"claimed")
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot claim {platform} event {event_id}: {exc!r}") from exc
        return True

    @asynccontextmanager
    async def once(self, platform: str, event_id: str) -> AsyncIterator[bool]:
        """Yields True for the first delivery (handle it), False for a repeat (skip it).

        The claim is released if handling fails, so the platform's retry tries again.
        """
        if not await self.claim(platform, event_id):
            yield False
            return
        try:
            yield True
        except BaseException:
            try:
                await self._kv.delete(_key(platform, event_id))
            except Exception as exc:
                log.error("webhook claim not released", platform=platform, error=repr(exc))
            raise


def _key(platform: str, event_id: str) -> str:
    return f"{platform}.{subjects.ident(event_id)}"
