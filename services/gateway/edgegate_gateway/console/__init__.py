"""The web console, served by the gateway's HTTP server under `/console`.

An SRE or a support lead keeps it open: health, models, rollouts, tenants,
tasks, escalations, breakers and audit, each page live (the browser polls
its JSON every 1.5 s). It needs no Kubernetes API: everything it shows is
on NATS already, the operator's rollouts included (`edgegate-rollouts`).

- `auth.py`: sign-in with an admin token (an HttpOnly, SameSite=Strict
  cookie), CSRF checks;
- `pages.py`: the HTML and the browser's files (`static/`, no CDN);
- `api.py`: the JSON each page reads, and its actions (each audited);
- `sources.py`: where the figures come from; `observed.py`: the hour of
  traffic it keeps; `breakers.py`: the breakers page and its forced modes;
  `views.py`: the JSON shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_gateway.adapters.breakers import BreakerControls
from edgegate_gateway.adapters.rate_limits import RateLimiter
from edgegate_gateway.adapters.security_admin import SecurityAdmin
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.console.api import ConsoleApi
from edgegate_gateway.console.auth import ConsoleAuth, Person
from edgegate_gateway.console.breakers import BreakerFigures
from edgegate_gateway.console.pages import ConsolePages
from edgegate_gateway.console.sources import Knowledge, Sources


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    operator_tenants: frozenset[str]
    security_timeout_s: float


class Console:
    def __init__(
        self,
        settings: ConsoleSettings,
        *,
        bus: Bus,
        readiness: ModelReadiness,
        limiter: RateLimiter,
        taskstore: TaskstoreClient,
        knowledge: Knowledge | None,
        local: BreakerFigures,
        controls: BreakerControls,
    ) -> None:
        self._auth = ConsoleAuth(
            bus,
            operator_tenants=settings.operator_tenants,
            timeout_s=settings.security_timeout_s,
        )
        self._sources = Sources(
            bus=bus,
            readiness=readiness,
            limiter=limiter,
            taskstore=taskstore,
            security=SecurityAdmin(bus, timeout_s=settings.security_timeout_s + 3.0),
            knowledge=knowledge,
            local=local,
            controls=controls,
        )

    async def start(self) -> None:
        await self._sources.start()

    async def stop(self) -> None:
        await self._sources.stop()

    def add_routes(self, app: web.Application) -> None:
        ConsolePages(self._auth, on_sign_in=self._signed_in).add_routes(app)
        ConsoleApi(self._auth, self._sources).add_routes(app)

    async def _signed_in(self, person: Person) -> None:
        await self._sources.record(person, "sign_in", person.subject, outcome="ok")


__all__ = ["Console", "ConsoleSettings"]
