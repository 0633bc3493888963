"""Test infrastructure that is not a fixture: the NATS server interface and its Docker variant,
and a raw request for bytes no protobuf call would send."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import Mapping
from typing import Protocol

from nats.aio.msg import Msg

from edgegate_common.bus import Bus
from edgegate_common.local import free_port, wait_for_port

NATS_IMAGE = "nats:2.11"


class NatsLike(Protocol):
    """What tests may do with a NATS server, local process or container alike."""

    @property
    def url(self) -> str: ...
    @property
    def port(self) -> int: ...
    def kill(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def restart(self) -> None: ...


async def raw_request(
    bus: Bus,
    subject: str,
    payload: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
) -> Msg:
    """Send `payload` as it is and return the reply as it came (headers and bytes).

    `Bus.request` only sends protobuf; this is for what a broken or hostile
    client would send, built on the bus's plain publish and subscribe.
    """
    inbox = bus.new_inbox()
    reply: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def receive(msg: Msg) -> None:
        if not reply.done():
            reply.set_result(msg)

    subscription = await bus.subscribe(inbox, cb=receive)
    try:
        await bus.publish(subject, payload, reply=inbox, headers=headers)
        return await asyncio.wait_for(reply, timeout_s)
    finally:
        await bus.unsubscribe(subscription, drain=False)


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers `GET /_ping` (the client binary alone is not enough).

    Asked over the socket directly: docker-py leaks its socket when no engine answers.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        family, address = socket.AF_UNIX, host.removeprefix("unix://")
    elif host.startswith("tcp://"):
        name, _, port = host.removeprefix("tcp://").partition(":")
        family, address = socket.AF_INET, (name, int(port or 2375))
    else:
        return False
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(1024).split(b"\r\n", 1)[0]  # b"HTTP/1.0 200 OK"
        except OSError:
            return False
    return status_line.split()[1:2] == [b"200"]


class ContainerNats:
    """The official NATS image with JetStream, on a fixed host port so restarts keep the URL."""

    def __init__(self) -> None:
        from testcontainers.core.container import DockerContainer

        self.port = free_port()
        self._container = (
            DockerContainer(NATS_IMAGE)
            .with_command("-js -sd /data")
            .with_bind_ports(4222, self.port)
        )

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        wrapped = getattr(self._container, "_container", None)
        if wrapped is None:
            self._container.start()
        else:
            wrapped.start()
        if not wait_for_port(self.port, timeout_s=30):
            raise RuntimeError(f"NATS container did not listen on {self.port}")

    def kill(self) -> None:
        self._container.get_wrapped_container().kill()

    def stop(self) -> None:
        self._container.stop()

    def restart(self) -> None:
        self._container.get_wrapped_container().restart()
        wait_for_port(self.port, timeout_s=30)


def start_container_nats() -> ContainerNats:
    server = ContainerNats()
    server.start()
    return server
