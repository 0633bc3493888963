"""A real browser for the console's tests: Debian's chromium, driven by Playwright, checked by axe.

Playwright's own browser download is not reachable where the suite runs, so it drives the
system chromium (`make test-console` installs it with apt-get, and axe-core with npm, through
deploy/tools/install_browser.py). The sync API is used: the suite's services are separate
processes, so nothing else needs the test's thread. Its loop stays marked as running between
calls, though, so a browser must not outlive a module of sync tests (the fixtures in
tests/console/conftest.py are module-scoped for that reason).

axe-core is injected with `page.evaluate`, not `add_script_tag`: an inline script tag is
refused by a strict Content-Security-Policy (which the console sends), while an evaluation
through the DevTools protocol is not, so pages are checked exactly as they are served.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CONSOLE_TESTS_DIR = REPO_ROOT / "tests" / "console"
AXE_SCRIPT = CONSOLE_TESTS_DIR / "node_modules" / "axe-core" / "axe.min.js"
# The docs show the console through these (docs/console/<name>.png).
SCREENSHOTS_DIR = REPO_ROOT / "docs" / "console"


@dataclass(frozen=True)
class Screen:
    """A screen a page is shown on; a phone also gets a phone's touch and pixel density."""

    width_px: int
    height_px: int
    phone: bool = False


DESKTOP = Screen(width_px=1280, height_px=800)
PHONE = Screen(width_px=390, height_px=844, phone=True)
TARGETS_SHOWN = 3

# Runs in the page: axe's violations, cut down to what a failing assert should print.
_AXE_RUN = """async (shown) => {
  const results = await axe.run(document, {resultTypes: ['violations']});
  return results.violations.map(v => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.slice(0, shown).map(n => n.target.join(' ')),
    nodes: v.nodes.length,
  }));
}"""


class AxeViolation(TypedDict):
    """One axe rule a page breaks: `targets` holds the first few offending elements' selectors."""

    id: str
    impact: str | None
    help: str
    targets: list[str]
    nodes: int


class BrowserMissing(RuntimeError):
    """Chromium or axe-core is not installed where the console tests run."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_browser() -> None:
    """Skip the test when the browser parts are missing; in CI (CI=true) fail instead.

    A developer without chromium still gets a green `pytest`; CI, which installs them
    (`make test-console`), must not pass by skipping.
    """
    missing = [str(path) for path in (CHROMIUM, AXE_SCRIPT) if not path.exists()]
    if not missing:
        return
    message = f"{' and '.join(missing)} missing: run `make test-console` (it installs them)"
    if _in_ci():
        raise BrowserMissing(message)
    pytest.skip(message)


@contextmanager
def launch_chromium(*, headless: bool = True) -> Iterator[Browser]:
    """Debian's chromium under Playwright; closed, with its driver, on exit."""
    require_browser()
    # As root chromium refuses to start sandboxed; small container /dev/shm makes it crash.
    args = ["--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=headless, args=args
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(
    browser: Browser, *, screen: Screen = DESKTOP, base_url: str | None = None
) -> Iterator[Page]:
    """A page in a fresh context (no cookies or storage shared with other tests).

    On a phone screen the page also gets touch and a phone's pixel density and meta
    viewport handling, so layouts are checked as a phone renders them, not only at its width.
    """
    context = browser.new_context(
        viewport=ViewportSize(width=screen.width_px, height=screen.height_px),
        base_url=base_url,
        is_mobile=screen.phone,
        has_touch=screen.phone,
        device_scale_factor=3 if screen.phone else 1,
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def axe_violations(
    page: Page, *, impacts: Sequence[str] = ("serious", "critical")
) -> list[AxeViolation]:
    """The page's accessibility violations of the given impacts, as axe-core finds them.

    Check a page with `assert not (found := axe_violations(page)), describe(found)`: a
    failure then names each rule, its impact and help, and the elements that break it.
    """
    require_browser()
    page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8"))
    if page.evaluate("typeof axe") != "object":
        raise BrowserMissing(f"{AXE_SCRIPT} did not define `axe` in {page.url}")
    found: list[AxeViolation] = page.evaluate(_AXE_RUN, TARGETS_SHOWN)
    return [violation for violation in found if violation["impact"] in impacts]


def describe(violations: Sequence[AxeViolation]) -> str:
    """One line per violation, for an assert message: rule, impact, help, offending elements."""
    lines = [f"{len(violations)} accessibility violation(s):"]
    for v in violations:
        more = v["nodes"] - len(v["targets"])
        elements = ", ".join(v["targets"]) + (f" and {more} more" if more > 0 else "")
        lines.append(f"  {v['id']} ({v['impact']}): {v['help']} -- {elements}")
    return "\n".join(lines)


def screenshot(
    page: Page, name: str, *, folder: Path = SCREENSHOTS_DIR, full_page: bool = False
) -> Path:
    """Save what the page shows as <folder>/<name>.png (docs/console/ by default)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise ValueError(f"screenshot name {name!r}: use lower-case letters, digits, - and _")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    return path
