"""Stand-ins for parties outside edgegate (a cloud API, a chat platform), in their wire format.

`HttpStandIn` serves aiohttp handlers on a free port from its own thread, so
that synchronous tests and the services under test can both reach it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

from edgegate_common.local import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpStandIn:
    def __init__(self, routes: dict[str, Handler]) -> None:
        self.port = free_port()
        self._routes = routes
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

        async def serve() -> web.AppRunner:
            app = web.Application()
            for route, handler in self._routes.items():
                # "/path" takes a POST; "PATCH /path" names its method.
                method, _, path = route.rpartition(" ")
                app.router.add_route(method or "POST", path, handler)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
