"""A real MQTT broker for the tests: Mosquitto on a free port, started and stopped by the test.

Mosquitto comes from the machine's packages (`apt-get install mosquitto`);
the test starts its own instance with its own configuration, never the
machine's service.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiomqtt

from edgegate_common.local import free_port
from edgegate_common.local.ports import wait_for_port

SEARCHED = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or next((p for p in SEARCHED if Path(p).exists()), None)
    if found is None:
        raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
    return found


class Mosquitto:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self._folder = folder
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        config = self._folder / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self._folder / 'mosquitto.log'}\n",
            encoding="utf-8",
        )
        self._proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(config)], stdin=subprocess.DEVNULL, start_new_session=True
        )
        if not wait_for_port(self.port, timeout_s=10):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.port}; see {self._folder}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def gateway_subscribed(port: int, *, prefix: str, identifier: str) -> None:
    """Wait until a gateway's subscription on the broker is in place: a probe device's
    request gets its (error) reply."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=identifier) as probe:
        await probe.subscribe(f"{prefix}/probe/reply", qos=1)
        async with asyncio.timeout(30):
            while True:
                await probe.publish(f"{prefix}/probe/request", b"probe", qos=1)
                try:
                    async with asyncio.timeout(0.5):
                        await anext(probe.messages)
                    return
                except TimeoutError:
                    continue
