"""The breakers page: each model version's breaker, and the modes the console forces.

State comes from the breaker events any gateway published lately (`observed`),
else from this replica's own breaker; forced modes from `edgegate-breakers`,
as this gateway's `BreakerControls` follows it, which also writes a mode the
console forces when no ModelDeployment owns the model. The operator owns the
documents of the models it serves and would undo a change made here, so for
those the console names the `kubectl edgegate breaker` command instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from edgegate_common import subjects
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import FailedPrecondition
from edgegate_gateway.adapters.breakers import BreakerControls
from edgegate_gateway.console import views
from edgegate_gateway.console.observed import BreakerSeen, iso_time
from edgegate_gateway.core.breaker import Mode


class BreakerFigures(Protocol):
    """This replica's own breakers (LocalInference)."""

    def breaker_figures(
        self, model: str, version: str
    ) -> tuple[int, float | None, float | None]: ...

    def breaker_state(self, model: str, version: str) -> str | None: ...


class BreakerBoard:
    def __init__(
        self,
        controls: BreakerControls,
        *,
        readiness: ModelReadiness,
        local: BreakerFigures,
        seen: dict[tuple[str, str], BreakerSeen],
        owner: Callable[[str], dict[str, Any] | None],
        managed: set[str],
    ) -> None:
        self._controls = controls
        self._readiness = readiness
        self._local = local
        self._seen = seen
        self._owner = owner
        self._managed = managed  # the models ModelDeployments serve

    def rows(self) -> list[dict[str, Any]]:
        modes = self._modes()
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

    def _modes(self) -> dict[str, dict[str, str]]:
        """Forced modes by model name (a document's key is the model's subject token)."""
        models = set(self._readiness.models()) | self._managed
        names = {subjects.ident(m): m for m in models if m}
        return {names.get(key, key): modes for key, modes in self._controls.forced_modes().items()}

    async def force(self, model: str, version: str, mode: str) -> dict[str, Any]:
        owner = self._owner(model)
        if owner is not None:
            command = views.breaker_commands(str(owner["namespace"]), str(owner["name"]), version)
            raise FailedPrecondition(
                f"ModelDeployment {owner['namespace']}/{owner['name']} owns the breakers of "
                f"{model}; the operator would undo a change made here. Run: {command[mode]}"
            )
        await self._controls.force(model, version, Mode(mode))
        return {"model": model, "version": version, "mode": mode}


def _figures(figures: tuple[int, float | None, float | None]) -> dict[str, Any]:
    calls, failure_rate, slow_rate = figures
    return {"calls": calls, "failure_rate": failure_rate, "slow_rate": slow_rate}
