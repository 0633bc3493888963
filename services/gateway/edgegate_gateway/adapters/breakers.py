"""The operator's breaker controls from NATS KV `edgegate-breakers`, followed live.

One document per model (key `subjects.ident(model)`; its sections are read
by `core/breaker_controls.py`): forced modes and the breaker policy go to
`LocalInference`, as soon as the watch delivers them; a `fallback` section
gives the model a cloud fallback of its own (`fallback_for`).

A section that cannot be read is logged as an error and the model keeps
what that section said before; nothing in a document stops the gateway.

The fallback's API key is the gateway's own (`fallback_api_key`): the
gateway reads no Kubernetes secret, so the document's `apiKeySecretRef` is
not used. The key goes only to an endpoint on the gateway's own fallback
origin (`fallback_url`'s scheme, host and port); another endpoint is called
without it, so that whoever can write the bucket cannot have the key sent
to a host of their choosing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from edgegate_common import subjects
from edgegate_common.bus import TRANSIENT, ensure_key_value
from edgegate_common.errors import InvalidArgument, Unavailable
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters import kv_watch
from edgegate_gateway.adapters.fallback import Fallback, FallbackSettings, make_fallback
from edgegate_gateway.core import breaker_controls, json_input
from edgegate_gateway.core.breaker import BreakerPolicy, Mode
from edgegate_gateway.core.breaker_controls import FallbackTarget
from edgegate_gateway.local import LocalInference

log = get_logger(__name__)
T = TypeVar("T")


@dataclass
class _Controls:
    """What one model's document said, section by section (the last readable values)."""

    modes: dict[str, Mode] = field(default_factory=dict)
    policy: BreakerPolicy | None = None  # None: the gateway's own
    target: FallbackTarget | None = None
    fallback: Fallback | None = None


class BreakerControls:
    def __init__(
        self,
        kv: KeyValue,
        *,
        local: LocalInference,
        policy: BreakerPolicy,
        cloud: FallbackSettings,
    ) -> None:
        """`policy` is the gateway's own, `cloud` its fallback's settings (`base_url`
        empty when it has none): what a document's sections start from."""
        self._kv = kv
        self._local = local
        self._policy = policy
        self._cloud = cloud
        self._controls: dict[str, _Controls] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._retired: set[Fallback] = set()  # replaced, closed once their calls are over

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        local: LocalInference,
        policy: BreakerPolicy,
        cloud: FallbackSettings,
        replicas: int = 1,
    ) -> BreakerControls:
        kv = await ensure_key_value(
            js,
            KeyValueConfig(
                bucket=subjects.KV_BREAKERS, storage=StorageType.FILE, replicas=replicas
            ),
        )
        return cls(kv, local=local, policy=policy, cloud=cloud)

    async def start(self) -> None:
        self._watcher = await kv_watch.follow(self._kv, self._apply)

    async def stop(self) -> None:
        await kv_watch.stop(self._watcher)
        closing = list(self._closing)
        for task in closing:
            task.cancel()
        await asyncio.gather(*closing, return_exceptions=True)
        current = {c.fallback for c in self._controls.values() if c.fallback is not None}
        for fallback in self._retired | current:
            with contextlib.suppress(Exception):
                await fallback.close()

    def fallback_for(self, model: str) -> Fallback | None:
        """The model's own cloud fallback; None: the gateway's (if it has one)."""
        controls = self._controls.get(subjects.ident(model))
        return controls.fallback if controls is not None else None

    def forced_modes(self) -> dict[str, dict[str, str]]:
        """Each document's modes as last applied, by its key (`subjects.ident(model)`)."""
        return {
            key: {version: mode.value for version, mode in controls.modes.items()}
            for key, controls in self._controls.items()
            if controls.modes
        }

    async def force(self, model: str, version: str, mode: Mode) -> None:
        """Write `version`'s mode into the model's document (AUTO: no entry), keeping the
        rest; compare-and-set, since another writer may change it at the same moment.
        Every replica, this one included, applies it through its watch."""
        key = subjects.ident(model)
        for _ in range(5):
            doc, revision = await self._document(key)
            raw = doc.get("modes")
            modes = {str(v): str(m) for v, m in raw.items()} if isinstance(raw, dict) else {}
            if mode is Mode.AUTO:
                modes.pop(version, None)
            else:
                modes[version] = mode.value
            payload = json.dumps({**doc, "modes": modes}, sort_keys=True).encode()
            try:
                if revision:
                    await self._kv.update(key, payload, last=revision)
                else:
                    await self._kv.create(key, payload)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            except TRANSIENT as exc:
                raise Unavailable(f"cannot write edgegate-breakers: {exc!r}") from exc
            return
        raise Unavailable("edgegate-breakers kept changing; try again")

    async def _document(self, key: str) -> tuple[dict[str, Any], int]:
        """The stored document and its revision ({} and 0 when there is none; an unreadable
        one counts as empty, so that forcing a mode repairs it)."""
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return {}, 0
        except (*TRANSIENT, nats.js.errors.Error) as exc:
            raise Unavailable(f"cannot read edgegate-breakers: {exc!r}") from exc
        revision = entry.revision or 0
        if not entry.value:
            return {}, revision
        try:
            return json_input.decode_object(entry.value, what="breaker settings"), revision
        except InvalidArgument:
            return {}, revision

    async def _apply(self, key: str, value: bytes | None) -> None:
        try:
            await self._apply_document(key, value)
        except Exception:  # a watch that died would leave every later change unapplied
            log.exception("breaker settings not applied", model=key)

    async def _apply_document(self, key: str, value: bytes | None) -> None:
        before = self._controls.get(key, _Controls())
        if not value:
            now = _Controls()
            log.info("breaker settings removed", model=key)
        else:
            try:
                doc = json_input.decode_object(value, what="breaker settings")
            except InvalidArgument as exc:
                log.error("breaker settings ignored", model=key, error=exc.message)
                return
            now = _Controls(
                modes=_section(key, "modes", lambda: breaker_controls.modes(doc), before.modes),
                policy=_section(
                    key,
                    "breaker",
                    lambda: breaker_controls.policy(doc, base=self._policy),
                    before.policy,
                ),
                target=_section(
                    key, "fallback", lambda: breaker_controls.fallback(doc), before.target
                ),
                fallback=before.fallback,
            )
            log.info(
                "breaker settings applied",
                model=key,
                modes={v: m.value for v, m in now.modes.items()},
                policy=None if now.policy is None else str(now.policy),
                fallback=None if now.target is None else now.target.endpoint,
            )
        if now.target != before.target:
            if before.fallback is not None:
                self._close_later(before.fallback, after_s=self._cloud.timeout_s + 1)
            now.fallback = None if now.target is None else self._make(now.target)
        self._controls[key] = now
        await self._local.apply_controls(key, policy=now.policy, modes=now.modes)

    def _make(self, target: FallbackTarget) -> Fallback | None:
        origin = _origin(target.endpoint)
        same_origin = origin is not None and origin == _origin(self._cloud.base_url)
        settings = replace(
            self._cloud,
            base_url=target.endpoint,
            model=target.model,
            api_key=self._cloud.api_key if same_origin else "",
            chat_model="",
        )
        try:
            return make_fallback(target.protocol, settings)
        except Exception as exc:  # an endpoint the client library refuses
            log.error("model fallback not usable", endpoint=target.endpoint, error=repr(exc))
            return None

    def _close_later(self, fallback: Fallback, *, after_s: float) -> None:
        """Close a replaced fallback once the calls it has in flight are over."""
        self._retired.add(fallback)

        async def close() -> None:
            await asyncio.sleep(after_s)
            self._retired.discard(fallback)
            with contextlib.suppress(Exception):
                await fallback.close()

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _section(key: str, name: str, read: Callable[[], T], previous: T) -> T:
    """One section as `read` finds it; unreadable: logged, and `previous` kept."""
    try:
        return read()
    except ValueError as exc:
        log.error("breaker settings section ignored", model=key, section=name, error=str(exc))
        return previous


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port
