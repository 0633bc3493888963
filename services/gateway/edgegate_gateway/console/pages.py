"""The console's HTML: sign-in, sign-out, the page shell, and the files the browser loads.

Pages are two templates filled on the server (`{{name}}`, HTML-escaped); the
browser code fetches everything else from the JSON API. Every response
under `/console` carries a Content-Security-Policy that allows only this
origin's own scripts and styles: nothing comes from a CDN, and an injected
inline script would not run.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from edgegate_common.errors import EdgegateError, PermissionDenied, Unauthenticated
from edgegate_common.logging import get_logger
from edgegate_gateway.console.auth import CSRF_FIELD, ConsoleAuth, Person, check_same_site

log = get_logger(__name__)

STATIC = Path(__file__).parent / "static"
PAGES = ("overview", "models", "rollouts", "tenants", "tasks", "escalations", "breakers", "audit")
HOME = "/console/overview"
LOGIN = "/console/login"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer the browser sends `Origin: null` even to
    # our own pages, and the sign-in and actions refuse any Origin but ours.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConsolePages:
    def __init__(
        self, auth: ConsoleAuth, *, on_sign_in: Callable[[Person], Awaitable[None]]
    ) -> None:
        self._auth = auth
        self._on_sign_in = on_sign_in
        self._templates = {
            name: (STATIC / f"{name}.html").read_text(encoding="utf-8")
            for name in ("login", "shell")
        }

    def add_routes(self, app: web.Application) -> None:
        app.middlewares.insert(0, _console_headers)  # outermost: error answers carry them too
        app.router.add_get("/console", self.home)
        app.router.add_get("/console/", self.home)
        app.router.add_get(LOGIN, self.login_form)
        app.router.add_post(LOGIN, self.login)
        app.router.add_post("/console/logout", self.logout)
        for page in PAGES:
            app.router.add_get(f"/console/{page}", self.page)
        app.router.add_static("/console/static", STATIC, follow_symlinks=False)

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(HOME)

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        return self._render("login", {"error": ""})

    async def login(self, request: web.Request) -> web.StreamResponse:
        try:
            check_same_site(request)
        except PermissionDenied as exc:
            return self._render("login", {"error": f"Not signed in: {exc.message}"}, status=403)
        form = await request.post()
        token = form.get("token")
        if not isinstance(token, str) or not token.strip():
            return self._render("login", {"error": "Paste an access token first."}, status=400)
        try:
            person = await self._auth.sign_in(token)
        except Unauthenticated as exc:
            return self._render("login", {"error": f"Not signed in: {exc.message}"}, status=401)
        except PermissionDenied as exc:
            return self._render("login", {"error": f"Not signed in: {exc.message}"}, status=403)
        except EdgegateError as exc:
            return self._render(
                "login", {"error": f"Cannot sign in now: {exc.message}"}, status=503
            )
        await self._on_sign_in(person)
        response = web.HTTPSeeOther(HOME)
        self._auth.set_cookie(response, request, token.strip())
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        csrf = form.get(CSRF_FIELD)
        try:
            person = await self._auth.person(request)
            self._auth.check_action(
                request, person, form_value=csrf if isinstance(csrf, str) else ""
            )
        except Unauthenticated:
            pass  # signed out already: the cookie goes anyway
        response = web.HTTPSeeOther(LOGIN)
        self._auth.clear_cookie(response, request)
        raise response

    async def page(self, request: web.Request) -> web.StreamResponse:
        try:
            person = await self._auth.person(request)
        except (Unauthenticated, PermissionDenied):
            raise web.HTTPSeeOther(LOGIN) from None
        page = request.path.rsplit("/", 1)[-1]
        return self._render(
            "shell",
            {
                "page": page,
                "csrf": person.csrf,
                "subject": person.subject,
                "tenant": person.tenant,
                "operator": "true" if person.operator else "false",
            },
        )

    def _render(self, name: str, values: Mapping[str, str], *, status: int = 200) -> web.Response:
        text = self._templates[name]
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
        return web.Response(
            text=text,
            status=status,
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )


@web.middleware
async def _console_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The console's security headers, on its answers only (the API's clients need none)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if request.path.startswith("/console"):
            exc.headers.update(HEADERS)
        raise
    if request.path.startswith("/console"):
        response.headers.update(HEADERS)
    return response
