"""Services ride out a NATS crash: NOT_SERVING while it is down, serving again after, no restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import start_services
from support.harness import NatsLike
from support.waiting import eventually, wait_until

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.local import ServiceProcess, free_port, health_status, wait_for_port
from edgegate_protos.common.v1 import status_pb2

pytestmark = pytest.mark.slow


async def _wait_health(proc: ServiceProcess, want: str, *, timeout_s: float) -> str:
    async def reached() -> str | None:
        status = await health_status(proc.target)
        return status if status == want else None

    return await eventually(
        reached, timeout_s=timeout_s, interval_s=0.1, what=f"{proc.service} to be {want}"
    )


async def test_services_reconnect_after_nats_is_killed_and_restarted(
    nats_server: NatsLike, tmp_path: Path
) -> None:
    procs = await start_services(
        ["security", "taskstore"], nats_url=nats_server.url, log_dir=tmp_path
    )
    try:
        pids = [p.pid for p in procs]
        nats_server.kill()
        for proc in procs:
            assert await _wait_health(proc, "NOT_SERVING", timeout_s=10) == "NOT_SERVING"

        nats_server.start()
        for proc in procs:
            assert await _wait_health(proc, "SERVING", timeout_s=20) == "SERVING"
        assert [p.pid for p in procs] == pids and all(p.returncode is None for p in procs)

        bus = await Bus.connect(servers=[nats_server.url], name="test", connect_timeout_s=5)
        try:
            for proc in procs:
                reply = await bus.request(
                    subjects.status(proc.service),
                    status_pb2.StatusRequest(),
                    status_pb2.ServiceStatus,
                    timeout_s=5,
                )
                assert reply.serving and reply.instance.endswith(f"-{proc.pid}")
        finally:
            await bus.close()
    finally:
        for proc in procs:
            proc.stop()


def _gateway_without_nats(tmp_path: Path, *, connect_timeout_s: int) -> ServiceProcess:
    """A gateway pointed at a port where no NATS listens."""
    proc = ServiceProcess(
        "gateway",
        nats_url=f"nats://127.0.0.1:{free_port()}",
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_file=tmp_path / "gateway.log",
        extra_args=("--nats-connect-timeout-s", str(connect_timeout_s)),
    )
    proc.start()
    return proc


def test_a_service_without_nats_exits_with_a_clear_error(tmp_path: Path) -> None:
    proc = _gateway_without_nats(tmp_path, connect_timeout_s=1)
    try:
        wait_until(lambda: proc.returncode is not None, timeout_s=20, what="the gateway to exit")
        assert proc.returncode == 1
        assert "cannot reach NATS" in proc.log_file.read_text()
    finally:
        proc.kill()


def _wait_for_metrics(proc: ServiceProcess, timeout_s: float = 60) -> None:
    """Until the service's metrics port takes connections: it has started, and is connecting.

    A fixed sleep is not enough on a loaded machine: a SIGTERM that comes while the
    process is still importing kills it before it can stop cleanly."""
    give_up_at = time.monotonic() + timeout_s
    while not wait_for_port(proc.metrics_port, timeout_s=0.5):
        assert proc.returncode is None, proc.log_file.read_text()
        assert time.monotonic() < give_up_at, f"the {proc.service} never opened its metrics port"


def test_sigterm_while_waiting_for_nats_stops_at_once(tmp_path: Path) -> None:
    proc = _gateway_without_nats(tmp_path, connect_timeout_s=60)
    try:
        _wait_for_metrics(proc)  # it serves /metrics once its signal handlers are set
        assert proc.returncode is None
        started = time.monotonic()
        assert proc.stop(timeout_s=10) == 0
        assert time.monotonic() - started < 3  # not the 60 s connect timeout
        assert "stop requested while starting" in proc.log_file.read_text()
    finally:
        proc.kill()
