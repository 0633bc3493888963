"""The console in a real browser (Debian's chromium, driven by Playwright) against a running suite.

Each page shows what this module made the suite do (a task, a 429, a rollout
in `edgegate-rollouts`, a breaker forced open), passes axe-core with no
serious or critical violation, and leaves a screenshot in docs/console/ for
docs/console.md and the README.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from support.browser import (
    PHONE,
    axe_violations,
    describe,
    launch_chromium,
    open_page,
    screenshot,
)
from support.console_stack import (
    THROTTLED_TENANT,
    BackgroundLoop,
    ConsoleSuite,
    WsClient,
    escalate,
    make_429s,
    start_console_suite,
    write_rollout,
)
from support.waiting import eventually

pytestmark = [pytest.mark.console, pytest.mark.slow]

TASK_QUESTION = "Does the device survive a trip to the Moon?"
WS_QUESTION = "Will the Klingon firmware pack ship this year?"


@pytest.fixture(scope="module")
def loop() -> Iterator[BackgroundLoop]:
    running = BackgroundLoop()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, loop: BackgroundLoop) -> Iterator[ConsoleSuite]:
    """The suite, with the real data each page must show."""
    running = start_console_suite(tmp_path_factory.mktemp("console-browser"))
    try:
        assert 429 in loop.run(make_429s(running))
        loop.run(escalate(running, TASK_QUESTION, token=running.user()))
        loop.run(write_rollout(running.stack))
        yield running
    finally:
        running.stack.stop()


@pytest.fixture(scope="module")
def browser(suite: ConsoleSuite) -> Iterator[Browser]:
    """Chromium, started after the suite (whose set-up runs its own event loop here)."""
    with launch_chromium() as launched:
        yield launched


def sign_in(page: Page, suite: ConsoleSuite, token: str) -> None:
    page.goto(f"{suite.base}/console/login")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def check_page(page: Page, name: str) -> None:
    """No serious or critical accessibility violation, and a screenshot for the docs."""
    found = axe_violations(page)
    assert not found, f"{name}: {describe(found)}"
    screenshot(page, name)


def test_a_token_without_the_admin_scope_is_refused(suite: ConsoleSuite, page: Page) -> None:
    page.goto(f"{suite.base}/console/login")
    check_page(page, "login")
    sign_in(page, suite, suite.user())
    expect(page.get_by_role("alert")).to_contain_text("admin scope")
    assert page.url.endswith("/console/login")
    page.goto(f"{suite.base}/console/overview")
    assert page.url.endswith("/console/login")  # no session was made


def test_every_page_shows_what_the_suite_did(suite: ConsoleSuite, page: Page) -> None:
    sign_in(page, suite, suite.admin())
    expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()
    content = page.locator("main")
    for service in ("gateway", "inference", "taskstore", "security"):
        row = content.get_by_role("row", name=re.compile(f"^{service} Serving"))
        expect(row).to_be_visible(timeout=10_000)
    expect(content.locator("svg").first).to_be_visible()
    expect(content).to_contain_text("requests/s")
    check_page(page, "overview")

    _visit(page, "Models")
    expect(content).to_contain_text("toy_text", timeout=20_000)
    check_page(page, "models")

    _visit(page, "Rollouts")
    expect(content).to_contain_text("kubectl edgegate rollout abort toy-text -n ml")
    expect(content).to_contain_text("Pass")
    check_page(page, "rollouts")

    _visit(page, "Tenants")
    row = content.get_by_role("row").filter(has_text=THROTTLED_TENANT)
    expect(row).to_be_visible(timeout=20_000)
    check_page(page, "tenants")

    _visit(page, "Tasks")
    expect(content).to_contain_text(TASK_QUESTION)
    check_page(page, "tasks")

    _visit(page, "Breakers")
    page.locator("#mode-scale-2-open").click()
    page.get_by_role("button", name="Yes, force open").click()
    expect(page.locator("#breaker-scale-2")).to_contain_text(re.compile(r"\bopen\b", re.I))
    expect(page.locator("#mode-scale-2-open")).to_have_attribute("aria-pressed", "true")
    check_page(page, "breakers")
    page.locator("#mode-scale-2-auto").click()

    _visit(page, "Audit")
    page.locator("#audit-verify").click()
    expect(page.locator("#audit-verify-result")).to_contain_text("Chain intact", timeout=60_000)
    expect(content).to_contain_text("console.breakers.force")
    check_page(page, "audit")


def test_an_escalated_websocket_question_answered_here_reaches_it_once(
    suite: ConsoleSuite, page: Page, loop: BackgroundLoop
) -> None:
    client = WsClient(suite, suite.user(sub="carol"))
    loop.run(client.__aenter__())
    try:
        loop.run(client.ask(WS_QUESTION))
        escalation = loop.run(client.escalation_id())
        sign_in(page, suite, suite.admin())
        _visit(page, "Escalations")
        item = page.locator(f"#escalation-{escalation}")
        expect(item).to_contain_text(WS_QUESTION, timeout=20_000)
        check_page(page, "escalations")
        answer = "Yes: it ships in the spring release."
        item.get_by_label("Your answer").fill(answer)
        item.get_by_role("button", name="Send answer").click()

        def delivered() -> list[dict[str, object]]:
            return [r for r in client.results() if r["task"]["id"] == escalation]

        (result,) = loop.run(eventually(delivered, timeout_s=30, what="the answer over WebSocket"))
        assert result["task"]["result"]["outputs"][0]["text"] == answer  # type: ignore[index]
        page.wait_for_timeout(2000)  # a second copy would have come by now
        assert len(delivered()) == 1
    finally:
        loop.run(client.__aexit__(None, None, None))


def test_an_action_without_the_csrf_token_is_refused(suite: ConsoleSuite, page: Page) -> None:
    sign_in(page, suite, suite.admin())
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    statuses = page.evaluate(
        """async () => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const post = (headers) => fetch('/console/api/audit/verify', {
                method: 'POST', headers: {'Content-Type': 'application/json', ...headers},
                body: '{}'}).then(r => r.status);
            return [await post({}), await post({'X-CSRF-Token': csrf})];
        }"""
    )
    assert statuses == [403, 200]


def test_the_keyboard_reaches_every_page(suite: ConsoleSuite, page: Page) -> None:
    sign_in(page, suite, suite.admin())
    expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Tenants":
            break
    else:
        pytest.fail("Tab never reached the Tenants link")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Tenants")).to_be_visible()
    assert page.url.endswith("/console/tenants")


def test_a_phone_shows_the_pages_whole(suite: ConsoleSuite, browser: Browser) -> None:
    with open_page(browser, screen=PHONE) as phone:
        sign_in(phone, suite, suite.admin())
        expect(phone.get_by_role("heading", level=1, name="Overview")).to_be_visible()
        wide = phone.evaluate("document.documentElement.scrollWidth")
        assert wide <= PHONE.width_px + 1, f"the page is {wide} px wide on a 390 px phone"
        check_page(phone, "overview-phone")
        _visit(phone, "Escalations")
        check_page(phone, "escalations-phone")


def _visit(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Console").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()


def test_the_screenshots_are_in_the_docs() -> None:
    shots = Path(__file__).resolve().parents[2] / "docs" / "console"
    docs = (shots.parent / "console.md").read_text(encoding="utf-8")
    for name in (
        "overview",
        "models",
        "rollouts",
        "tenants",
        "tasks",
        "escalations",
        "breakers",
        "audit",
    ):
        assert f"console/{name}.png" in docs, name
