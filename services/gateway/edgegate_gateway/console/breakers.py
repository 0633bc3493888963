"""The breakers page: each model version's breaker, and the modes the console forces.

State comes from the breaker events any gateway published lately (`observed`),
else from this replica's own breaker; forced modes from `edgegate-breakers`,
which the console also writes (compare-and-set) when no ModelDeployment owns
the model. The operator owns the documents of the models it serves and would
undo a change made here, so for those the console names the `kubectl
edgegate breaker` command instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from edgegate_common import subjects
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import EdgegateError, FailedPrecondition, Unavailable
from edgegate_gateway.console import views
from edgegate_gateway.console.observed import BreakerSeen, iso_time
from edgegate_gateway.core import json_input

_NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)


class BreakerFigures(Protocol):
    """This replica's own breakers (LocalInference)."""

    def breaker_figures(
        self, model: str, version: str
    ) -> tuple[int, float | None, float | None]: ...

    def breaker_state(self, model: str, version: str) -> str | None: ...


class BreakerBoard:
    def __init__(
        self,
        kv: KeyValue,
        *,
        readiness: ModelReadiness,
        local: BreakerFigures,
        seen: dict[tuple[str, str], BreakerSeen],
        owner: Callable[[str], dict[str, Any] | None],
        managed: set[str],
    ) -> None:
        self._kv_value = kv
        self._readiness = readiness
        self._local = local
        self._seen = seen
        self._owner = owner
        self._managed = managed  # the models ModelDeployments serve

    async def rows(self) -> list[dict[str, Any]]:
        modes = await self._modes()
        seen = self._seen
        keys = set(seen) | {(m, v) for m in self._readiness.models() for v in self._served(m)}
        keys |= {(model, v) for model, by_version in modes.items() for v in by_version}
        return [self._breaker_row(m, v, seen.get((m, v)), modes) for m, v in sorted(keys)]

    def _served(self, model: str) -> list[str]:
        return self._readiness.served_versions(model)

    def _breaker_row(
        self, model: str, version: str, seen: Any, modes: dict[str, dict[str, str]]
    ) -> dict[str, Any]:
        owner = self._owner(model)
        managed = f"{owner.get('namespace')}/{owner.get('name')}" if owner else None
        return {
            "model": model,
            "version": version,
            # Events say what any replica saw lately; this replica's own breaker otherwise.
            "state": seen.state if seen else self._local.breaker_state(model, version) or "closed",
            "mode": modes.get(model, {}).get(version, "auto"),
            "since": iso_time(seen.since_s) if seen else None,
            "reason": seen.reason if seen else "",
            "reported_by": seen.instance if seen else "",
            **_figures(self._local.breaker_figures(model, version)),
            "managed_by": managed,
            "commands": views.breaker_commands(
                str(owner.get("namespace")), str(owner.get("name")), version
            )
            if owner
            else None,
        }

    async def _modes(self) -> dict[str, dict[str, str]]:
        """Forced modes by model name (the document's key is the model's subject token)."""
        kv = self._kv()
        models = set(self._readiness.models()) | self._managed
        names = {subjects.ident(m): m for m in models if m}
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return {}
        except _NATS_ERRORS as exc:
            raise Unavailable(f"cannot read edgegate-breakers: {exc!r}") from exc
        found: dict[str, dict[str, str]] = {}
        for key in keys:
            doc = await self._breaker_doc(kv, key)
            raw = doc[0].get("modes") if doc else None
            if isinstance(raw, dict):
                found[names.get(key, key)] = {str(v): str(m) for v, m in raw.items()}
        return found

    async def force(self, model: str, version: str, mode: str) -> dict[str, Any]:
        owner = self._owner(model)
        if owner is not None:
            command = views.breaker_commands(str(owner["namespace"]), str(owner["name"]), version)
            raise FailedPrecondition(
                f"ModelDeployment {owner['namespace']}/{owner['name']} owns the breakers of "
                f"{model}; the operator would undo a change made here. Run: {command[mode]}"
            )
        kv, key = self._kv(), subjects.ident(model)
        for _ in range(5):  # compare-and-set: another console may write at the same moment
            found = await self._breaker_doc(kv, key)
            doc, revision = found if found else ({}, 0)
            raw = doc.get("modes")
            modes = {str(v): str(m) for v, m in raw.items()} if isinstance(raw, dict) else {}
            if mode == "auto":
                modes.pop(version, None)
            else:
                modes[version] = mode
            doc["modes"] = modes
            payload = json.dumps(doc, sort_keys=True).encode()
            try:
                if revision:
                    await kv.update(key, payload, last=revision)
                else:
                    await kv.create(key, payload)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            except _NATS_ERRORS as exc:
                raise Unavailable(f"cannot write edgegate-breakers: {exc!r}") from exc
            return {"model": model, "version": version, "mode": mode}
        raise Unavailable("edgegate-breakers kept changing under the console; try again")

    async def _breaker_doc(self, kv: KeyValue, key: str) -> tuple[dict[str, Any], int] | None:
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (*_NATS_ERRORS, nats.js.errors.Error) as exc:
            raise Unavailable(f"cannot read edgegate-breakers: {exc!r}") from exc
        if not entry.value:
            return None
        try:
            return json_input.decode_object(
                entry.value, what="breaker settings"
            ), entry.revision or 0
        except EdgegateError:
            return {}, entry.revision or 0

    def _kv(self) -> KeyValue:
        return self._kv_value


def _figures(figures: tuple[int, float | None, float | None]) -> dict[str, Any]:
    calls, failure_rate, slow_rate = figures
    return {"calls": calls, "failure_rate": failure_rate, "slow_rate": slow_rate}
