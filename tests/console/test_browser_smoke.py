"""The browser-test machinery itself, on tiny pages: chromium drives, axe finds, shots are taken.

The pages are served by a local aiohttp server with a strict Content-Security-Policy, as the
console's are, so these tests also prove that axe can be injected into such a page.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web
from playwright.sync_api import Page, expect
from support import browser as browser_support
from support.browser import BrowserMissing, axe_violations, describe, screenshot

pytestmark = pytest.mark.console

CSP = {"Content-Security-Policy": "default-src 'self'"}
HEAD = '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
PAGES = {
    # Accessible: a language, a title, a landmark, a heading, a named button, a live region.
    "/": f"""<!doctype html><html lang="en"><head>{HEAD}<title>Smoke</title>
        <script src="/app.js" defer></script></head>
        <body><main><h1>Smoke</h1>
        <button type="button" id="greet">Say hello</button>
        <p role="status" id="out"></p></main></body></html>""",
    # An image without a text alternative: axe's `image-alt`, a critical violation.
    "/no-alt": f"""<!doctype html><html lang="en"><head>{HEAD}<title>No alt</title></head>
        <body><main><h1>Logo</h1><img src="/logo.svg" id="logo"></main></body></html>""",
    # No level-one heading: axe's `page-has-heading-one`, only a moderate violation.
    "/no-heading": f"""<!doctype html><html lang="en"><head>{HEAD}<title>No heading</title>
        </head><body><main><p>Text without a heading.</p></main></body></html>""",
}
ASSETS = {
    "/app.js": (
        """document.getElementById('greet').addEventListener('click', () => {
  document.getElementById('out').textContent = 'Hello';
});""",
        "text/javascript",
    ),
    "/logo.svg": (
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
        "image/svg+xml",
    ),
}


def _site() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGES[request.path], content_type="text/html", headers=CSP)

    async def asset(request: web.Request) -> web.Response:
        text, content_type = ASSETS[request.path]
        return web.Response(text=text, content_type=content_type, headers=CSP)

    app = web.Application()
    for path in PAGES:
        app.router.add_get(path, page)
    for path in ASSETS:
        app.router.add_get(path, asset)
    return app


@contextmanager
def _serving(app: web.Application) -> Iterator[str]:
    """The app on a free local port, in a thread of its own (the test thread is Playwright's)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return int(runner.addresses[0][1])

    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with _serving(_site()) as url:
        yield url


def test_a_button_pressed_with_the_keyboard_changes_the_page(page: Page, site: str) -> None:
    page.goto(f"{site}/")
    button = page.get_by_role("button", name="Say hello")

    page.keyboard.press("Tab")
    expect(button).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.get_by_role("status")).to_have_text("Hello")


def test_an_accessible_page_has_no_serious_violations(page: Page, site: str) -> None:
    page.goto(f"{site}/")

    assert not (found := axe_violations(page)), describe(found)


def test_an_image_without_alt_text_is_reported(page: Page, site: str) -> None:
    page.goto(f"{site}/no-alt")

    violations = axe_violations(page)

    assert [(v["id"], v["impact"], v["targets"]) for v in violations] == [
        ("image-alt", "critical", ["#logo"])
    ]
    assert "alternative text" in violations[0]["help"]
    assert describe(violations).splitlines()[1] == (
        f"  image-alt (critical): {violations[0]['help']} -- #logo"
    )


def test_impacts_choose_which_violations_count(page: Page, site: str) -> None:
    page.goto(f"{site}/no-heading")

    assert axe_violations(page) == []
    moderate = axe_violations(page, impacts=("moderate",))
    assert [v["id"] for v in moderate] == ["page-has-heading-one"]


def test_a_phone_page_renders_at_phone_size(phone_page: Page, site: str, tmp_path: Path) -> None:
    phone_page.goto(f"{site}/")

    assert phone_page.evaluate("[window.innerWidth, window.innerHeight]") == [390, 844]
    shot = screenshot(phone_page, "smoke-phone", folder=tmp_path)
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    # Three device pixels per CSS pixel, as on the phone.
    assert struct.unpack(">II", header[16:24]) == (390 * 3, 844 * 3)


def test_missing_parts_skip_a_developer_but_fail_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(browser_support, "CHROMIUM", tmp_path / "no-chromium")

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make test-console"):
        browser_support.require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(BrowserMissing, match="no-chromium"):
        browser_support.require_browser()
