"""`python -m edgegate_common.rpc.probe`: what the chart's `helm test` pod runs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from edgegate_common.local import free_port
from edgegate_common.rpc.probe import wait_serving

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def health() -> AsyncIterator[tuple[str, health_aio.HealthServicer]]:
    server = grpc.aio.server()
    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    yield f"127.0.0.1:{port}", servicer
    await server.stop(None)


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgegate_common.rpc.probe", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


async def test_a_serving_server_passes(health: tuple[str, health_aio.HealthServicer]) -> None:
    target, servicer = health
    await servicer.set("", SERVING)
    result = await asyncio.to_thread(probe, target)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING")


async def test_not_serving_and_unreachable_fail(
    health: tuple[str, health_aio.HealthServicer],
) -> None:
    target, servicer = health
    await servicer.set("", NOT_SERVING)
    result = await asyncio.to_thread(probe, target)
    assert (result.returncode, result.stdout.strip()) == (1, "NOT_SERVING")
    result = await asyncio.to_thread(probe, f"127.0.0.1:{free_port()}")
    assert (result.returncode, result.stdout.strip()) == (1, "UNREACHABLE")
    result = await asyncio.to_thread(probe, target, "--service", "edgegate.NoSuch")
    assert (result.returncode, result.stdout.strip()) == (1, "SERVICE_UNKNOWN")


async def test_it_waits_for_a_server_that_comes_up(
    health: tuple[str, health_aio.HealthServicer],
) -> None:
    target, servicer = health
    await servicer.set("", NOT_SERVING)

    async def come_up() -> None:
        await asyncio.sleep(1.0)  # the behaviour: the server comes up while the probe waits
        await servicer.set("", SERVING)

    riser = asyncio.create_task(come_up())
    assert await wait_serving(target, wait_s=10) == "SERVING"
    await riser
    await servicer.set("", NOT_SERVING)
    assert await wait_serving(target, wait_s=0) == "NOT_SERVING"
