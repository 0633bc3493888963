"""Fixtures for the console's browser tests (`make test-console`, marker `console`).

One chromium per test module: Playwright's sync API keeps its loop marked as running
between calls, which an async test in a later module would trip over.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page
from support.browser import DESKTOP, PHONE, launch_chromium, open_page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium; skips the tests when it is not installed (fails when CI=true)."""
    with launch_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page at 1280x800."""
    with open_page(browser, screen=DESKTOP) as opened:
        yield opened


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    """A fresh page as a phone shows it: 390x844, touch, three device pixels per CSS pixel."""
    with open_page(browser, screen=PHONE) as opened:
        yield opened
