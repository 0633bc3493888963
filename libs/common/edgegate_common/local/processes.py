"""Service processes for local mode and tests: start, wait for SERVING, stop.

Each service runs as `python -m edgegate_<service>`, exactly as in its
container, with flags for the ports and the NATS URL. Output goes to a log
file (JSON lines) that tests and `edgegate up` can read.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from edgegate_common.errors import DeadlineExceeded, Unavailable
from edgegate_common.rpc.probe import health_status


class ServiceProcess:
    """One edgegate service as a child process."""

    def __init__(
        self,
        service: str,
        *,
        nats_url: str,
        grpc_port: int,
        metrics_port: int,
        log_file: Path,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """`credentials`: how to reach its gRPC port when it serves TLS."""
        self.service = service
        self.credentials = credentials
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.log_file = log_file
        self.args = [
            sys.executable,
            "-m",
            f"edgegate_{service}",
            "--nats-url",
            nats_url,
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(grpc_port),
            "--metrics-port",
            str(metrics_port),
            *extra_args,
        ]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    async def wait_serving(self, *, timeout_s: float = 30.0) -> None:
        """Poll gRPC health until SERVING; fail early if the process exits."""
        give_up_at = time.monotonic() + timeout_s
        status = "UNREACHABLE"
        while time.monotonic() < give_up_at:
            if self.returncode is not None:
                raise Unavailable(
                    f"{self.service} exited with code {self.returncode}; see {self.log_file}"
                )
            status = await health_status(self.target, timeout_s=0.5, credentials=self.credentials)
            if status == "SERVING":
                return
            await asyncio.sleep(0.05)
        raise DeadlineExceeded(
            f"{self.service} not SERVING after {timeout_s}s (last: {status}); see {self.log_file}"
        )

    def stop(self, *, timeout_s: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
