"""The console's server side against a whole running suite: sign-in, CSRF, audit, real figures.

The browser tests (tests/console/, `make test-console`) drive the same
suite through chromium; these check the rules a browser cannot bypass.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.console_stack import (
    THROTTLED_TENANT,
    ConsoleSuite,
    WsClient,
    escalate,
    make_429s,
    signed_in,
    start_console_suite,
    write_rollout,
)
from support.suite_stack import OTHER_TENANT, TEXT_MODEL
from support.waiting import eventually

from edgegate_common import subjects
from edgegate_gateway.adapters.knowledge_kv import passage_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSuite]:
    running = start_console_suite(tmp_path_factory.mktemp("console"))
    try:
        yield running
    finally:
        running.stack.stop()


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url, allow_redirects=False) as response:
        kind = response.headers.get("Content-Type", "")
        return response.status, await (response.json() if "json" in kind else response.text())


async def _post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_only_an_admin_token_signs_in(suite: ConsoleSuite) -> None:
    async with aiohttp.ClientSession() as http:
        for token, status, words in (
            (suite.user(), 403, "admin scope"),
            ("not-a-token", 401, "Not signed in"),
            ("", 400, "Paste an access token"),
        ):
            async with http.post(
                f"{suite.base}/console/login", data={"token": token}, allow_redirects=False
            ) as response:
                assert response.status == status
                assert words in await response.text()
                assert "Set-Cookie" not in response.headers
        status, body = await _get(http, f"{suite.base}/console/api/overview")
        assert status == 401 and "sign in" in body["error"]["message"]
        async with http.get(f"{suite.base}/console/tasks", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/console/login"


async def test_a_sign_in_from_another_site_is_refused(suite: ConsoleSuite) -> None:
    """Another site's page posting its own admin token would put the victim in its session."""
    async with aiohttp.ClientSession() as http:
        for header in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            async with http.post(
                f"{suite.base}/console/login",
                data={"token": suite.admin()},
                headers=header,
                allow_redirects=False,
            ) as response:
                assert response.status == 403
                assert "another site" in await response.text()
                assert "Set-Cookie" not in response.headers


async def test_the_session_cookie_is_httponly_strict_and_pages_forbid_foreign_scripts(
    suite: ConsoleSuite,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{suite.base}/console/login", data={"token": suite.admin()}, allow_redirects=False
        ) as response:
            assert response.status == 303
            cookie = response.headers["Set-Cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    async with signed_in(suite, suite.admin()) as (http, csrf):
        async with http.get(f"{suite.base}/console/overview") as response:
            page = await response.text()
            policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert f'content="{csrf}"' in page
        assert suite.admin() not in page  # the token itself never reaches the page


async def test_an_action_without_the_csrf_token_is_refused_and_changes_nothing(
    suite: ConsoleSuite,
) -> None:
    task = await escalate(suite, "Does the moon have a return policy?", token=suite.user())
    cancel = f"{suite.base}/console/api/tasks/{task}/cancel"
    async with signed_in(suite, suite.admin()) as (http, csrf):
        for headers in (
            {},
            {"X-CSRF-Token": "0" * 64},
            {"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
        ):
            status, body = await _post(http, cancel, {}, headers)
            assert status == 403, body
            assert "CSRF" in body["error"]["message"] or "another site" in body["error"]["message"]
        status, tasks = await _get(http, f"{suite.base}/console/api/tasks?status=pending")
        assert task in [t["id"] for t in tasks["tasks"]]
        status, body = await _post(http, cancel, {}, {"X-CSRF-Token": csrf})
        assert status == 200 and body["task"]["status"] == "cancelled"
        # Who did it is in the audit log, from the token, not from anything the page sent.
        records = await eventually(
            lambda: _audit_has(http, suite, "console.tasks.cancel", task),
            timeout_s=20,
            what="the cancel's audit record",
        )
    assert records["subject"] == "sre-alice" and records["tenant"] == "acme"
    assert records["details"]["outcome"] == "ok"
    async with signed_in(suite, suite.admin()) as (http, _):
        refused = await _audit_has(http, suite, "console.tasks.cancel", task, "permission_denied")
    assert refused is not None, "the refused attempts are audited too"


async def _audit_has(
    http: aiohttp.ClientSession,
    suite: ConsoleSuite,
    action: str,
    target: str,
    outcome: str = "ok",
) -> dict[str, Any] | None:
    _, listed = await _get(http, f"{suite.base}/console/api/audit?event=admin")
    return next(
        (
            r
            for r in listed["records"]
            if (r["details"].get("action"), r["details"].get("target"), r["details"].get("outcome"))
            == (action, target, outcome)
        ),
        None,
    )


async def test_an_escalated_websocket_question_answered_in_the_console_reaches_it_once(
    suite: ConsoleSuite,
) -> None:
    async with WsClient(suite, suite.user(sub="carol")) as client:
        await client.ask("Can my toaster speak Klingon?")
        escalation = await client.escalation_id()
        async with signed_in(suite, suite.admin()) as (http, csrf):
            _, inbox = await _get(http, f"{suite.base}/console/api/escalations")
            asked = next(e for e in inbox["escalations"] if e["id"] == escalation)
            assert asked["question"] == "Can my toaster speak Klingon?"
            assert asked["status"] == "pending" and asked["channel"] == "websocket"
            url = f"{suite.base}/console/api/escalations/{escalation}/answer"
            answer = {"text": "Only with the Klingon firmware pack.", "add_to_knowledge": False}
            status, body = await _post(http, url, answer, {"X-CSRF-Token": csrf})
            assert status == 200, body
            assert body["escalation"]["status"] == "completed"
            status, again = await _post(http, url, answer, {"X-CSRF-Token": csrf})
            assert status == 400 and "answered already" in again["error"]["message"]

        def delivered() -> list[dict[str, Any]]:
            return [r for r in client.results() if r["task"]["id"] == escalation]

        (result,) = await eventually(delivered, timeout_s=30, what="the answer over WebSocket")
        assert result["task"]["result"]["outputs"][0]["text"] == answer["text"]
        await asyncio.sleep(2)  # a second copy would have come by now
        assert len(delivered()) == 1


async def test_the_pages_show_what_the_suite_did(suite: ConsoleSuite) -> None:
    assert 429 in await make_429s(suite)
    await write_rollout(suite.stack)
    async with signed_in(suite, suite.admin()) as (http, csrf):

        async def throttled() -> dict[str, Any] | None:
            _, body = await _get(http, f"{suite.base}/console/api/tenants")
            row = next((t for t in body["tenants"] if t["tenant"] == THROTTLED_TENANT), None)
            return row if row and row["throttled"] >= 1 else None

        row = await eventually(throttled, timeout_s=20, what="initech's 429 on the tenants page")
        assert row["quota"]["rate_per_s"] == 0.01

        async def served() -> dict[str, Any] | None:
            _, body = await _get(http, f"{suite.base}/console/api/models")
            return next(
                (m for m in body["models"] if m["model"] == TEXT_MODEL and m["requests"] > 0), None
            )

        model = await eventually(served, timeout_s=20, what="toy_text's figures")
        assert model["execution_providers"] == ["cpu"] and model["batch_sizes"]

        _, overview = await _get(http, f"{suite.base}/console/api/overview")
        assert all(s["reachable"] and s["serving"] for s in overview["services"])
        assert overview["nats"]["jetstream"] and overview["series"]["points"]

        _, rollouts = await _get(http, f"{suite.base}/console/api/rollouts")
        (rollout,) = rollouts["rollouts"]
        assert (rollout["stable_version"], rollout["canary_version"], rollout["weight"]) == (
            "1",
            "2",
            20,
        )
        assert rollout["analysis"]["verdict"] == "Pass"
        assert any(
            c["command"] == "kubectl edgegate rollout abort toy-text -n ml"
            for c in rollout["commands"]
        )

        owned = f"{suite.base}/console/api/breakers/{TEXT_MODEL}/2"
        status, body = await _post(http, owned, {"mode": "open"}, {"X-CSRF-Token": csrf})
        assert (
            status == 400
            and "kubectl edgegate breaker open toy-text -n ml --version 2"
            in body["error"]["message"]
        )

        forced = f"{suite.base}/console/api/breakers/scale/1"
        status, body = await _post(http, forced, {"mode": "open"}, {"X-CSRF-Token": csrf})
        assert status == 200, body

        async def tripped() -> dict[str, Any] | None:
            _, listed = await _get(http, f"{suite.base}/console/api/breakers")
            return next(
                (
                    b
                    for b in listed["breakers"]
                    if (b["model"], b["version"], b["mode"], b["state"])
                    == ("scale", "1", "open", "open")
                ),
                None,
            )

        await eventually(tripped, timeout_s=20, what="scale/1 forced open")
        status, _ = await _post(http, forced, {"mode": "auto"}, {"X-CSRF-Token": csrf})
        assert status == 200


async def test_a_tenant_admin_sees_only_its_own_tenant(suite: ConsoleSuite) -> None:
    mine = await escalate(
        suite, "Is there a globex-only discount?", token=suite.user(tenant=OTHER_TENANT)
    )
    theirs = await escalate(suite, "Is there an acme-only discount?", token=suite.user())
    async with signed_in(suite, suite.admin(tenant=OTHER_TENANT, sub="gus")) as (http, csrf):
        _, inbox = await _get(http, f"{suite.base}/console/api/escalations")
        ids = {e["id"] for e in inbox["escalations"]}
        assert mine in ids and theirs not in ids
        _, tenants = await _get(http, f"{suite.base}/console/api/tenants")
        assert [t["tenant"] for t in tenants["tenants"]] == [OTHER_TENANT]
        status, body = await _post(
            http, f"{suite.base}/console/api/tasks/{theirs}/cancel", {}, {"X-CSRF-Token": csrf}
        )
        assert status == 403, body
        status, body = await _post(
            http,
            f"{suite.base}/console/api/breakers/scale/1",
            {"mode": "open"},
            {"X-CSRF-Token": csrf},
        )
        assert status == 403 and "operator tenants" in body["error"]["message"]
        # The knowledge base answers every tenant: a tenant admin's answer does not join it.
        status, body = await _post(
            http,
            f"{suite.base}/console/api/escalations/{mine}/answer",
            {"text": "No discounts, sorry.", "add_to_knowledge": True},
            {"X-CSRF-Token": csrf},
        )
        assert status == 200 and body["knowledge"].startswith("refused")


def test_the_console_files_ship_with_the_package() -> None:
    from edgegate_gateway.console import pages

    names = {p.name for p in Path(pages.STATIC).iterdir()}
    assert {"login.html", "shell.html", "console.js", "console.css"} <= names


async def test_an_answer_added_to_the_knowledge_base_is_kept_for_every_assistant(
    suite: ConsoleSuite,
) -> None:
    """The passage lands in `edgegate-knowledge`, which every replica's assistant learns
    from (tests/gateway/test_knowledge_additions.py shows the assistant answering with it)."""
    question = "Which colour is the reset button?"
    escalation = await escalate(suite, question, token=suite.user())
    async with signed_in(suite, suite.admin()) as (http, csrf):
        url = f"{suite.base}/console/api/escalations/{escalation}/answer"
        answer = {"text": "The reset button is the red one.", "add_to_knowledge": True}
        status, body = await _post(http, url, answer, {"X-CSRF-Token": csrf})
    assert status == 200 and body["knowledge"] == "added", body
    async with suite.stack.bus() as bus:
        kv = await bus.js.key_value(subjects.KV_KNOWLEDGE)
        entry = await kv.get(passage_key(question))
    assert entry.value is not None
    kept = json.loads(entry.value)
    assert (kept["question"], kept["answer"]) == (question, answer["text"])
    assert kept["source"] == "console:sre-alice"
