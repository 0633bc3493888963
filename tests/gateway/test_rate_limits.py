"""Two gateway replicas share one tenant's rate limit, set in NATS KV, changed without restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.suite_stack import TENANT, Stack, start_stack
from support.waiting import wait_until

from edgegate_common import subjects

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("gateway-limits"), taskstores=0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gateways(stack: Stack) -> list[str]:
    return [f"http://127.0.0.1:{stack.start_gateway()[1]}/v1" for _ in range(2)]


def _applied(log_file: Path, tenant: str) -> int:
    """How many times this gateway has logged applying a quota of `tenant`."""
    count = 0
    for raw in log_file.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            line = json.loads(raw)
            count += line.get("event") == "quota applied" and line.get("tenant") == tenant
    return count


def _set_quota(stack: Stack, tenant: str, quota: dict[str, float]) -> None:
    """Put the quota, and return once every gateway of the stack has applied it."""
    before = [(proc.log_file, _applied(proc.log_file, tenant)) for proc in stack.gateways]

    async def put() -> None:
        async with stack.bus() as bus:
            kv = await bus.js.key_value(subjects.KV_QUOTAS)
            await kv.put(tenant, json.dumps(quota).encode())

    asyncio.run(put())
    wait_until(
        lambda: all(_applied(log, tenant) > seen for log, seen in before),
        timeout_s=10,
        interval_s=0.05,
        what=f"every gateway to apply {tenant}'s quota",
    )


def _embed(base: str, token: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        f"{base}/embeddings",
        data=json.dumps({"model": "toy_text", "input": "count me"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers)
    except urllib.error.HTTPError as refused:
        with refused:  # it holds the connection
            return refused.code, dict(refused.headers)


def test_two_replicas_together_admit_at_most_the_tenant_limit(
    stack: Stack, gateways: list[str]
) -> None:
    rate, burst = 10.0, 10.0
    _set_quota(stack, TENANT, {"rate_per_s": rate, "burst": burst})
    token = stack.token("infer:*")
    statuses: list[int] = []
    retry_after: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 3.0

    def hammer(base: str) -> None:
        while time.monotonic() < stop_at:
            status, headers = _embed(base, token)
            with lock:
                statuses.append(status)
                if status == 429:
                    retry_after.append(headers.get("Retry-After", ""))

    started = time.monotonic()
    threads = [threading.Thread(target=hammer, args=(g,)) for g in gateways for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed_s = time.monotonic() - started
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}
    assert admitted <= (rate * elapsed_s + burst) * 1.1, (admitted, elapsed_s)
    assert admitted >= rate * elapsed_s * 0.5  # the limit is shared, not starved
    assert statuses.count(429) > 0 and all(int(r) >= 1 for r in retry_after)


def test_a_quota_change_applies_without_restart(stack: Stack, gateways: list[str]) -> None:
    tenant = "acme-small"
    token = stack.token("infer:*", tenant=tenant)
    _set_quota(stack, tenant, {"rate_per_s": 0.1, "burst": 1})
    assert _embed(gateways[0], token)[0] == 200
    assert _embed(gateways[1], token)[0] == 429  # the one token was spent on the other replica
    _set_quota(stack, tenant, {"rate_per_s": 1000, "burst": 1000})
    assert [_embed(g, token)[0] for g in gateways] == [200, 200]


def test_each_api_key_has_its_own_limit_within_the_tenant(
    stack: Stack, gateways: list[str]
) -> None:
    tenant = "acme-keys"
    _set_quota(
        stack, tenant, {"rate_per_s": 1000, "burst": 1000, "key_rate_per_s": 0.1, "key_burst": 2}
    )
    first, second = (stack.token("infer:*", tenant=tenant, sub=s) for s in ("k1", "k2"))
    assert [_embed(gateways[0], first)[0] for _ in range(3)] == [200, 200, 429]
    assert _embed(gateways[0], second)[0] == 200
