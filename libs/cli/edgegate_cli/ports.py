"""Every port `edgegate up` opens: its flag, its default, and what to do when it is taken.

A newcomer runs `edgegate up` on a laptop where something already listens on
8080 or 4222: a default that is taken is replaced by a free port, and the
output says which. A port the user named is a promise to them (a proxy or a
bookmark points at it), so a taken one is an error that names the port and
the flag, never a silent move. `0` asks for any free port.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edgegate_common.errors import InvalidArgument
from edgegate_common.local import free_port, port_is_free


@dataclass(frozen=True, slots=True)
class PortOption:
    key: str  # "http", "nats", "<service>.grpc", "<service>.metrics"
    flag: str  # "--http-port"
    default: int
    what: str  # what listens there, for --help and the notes

    @property
    def dest(self) -> str:
        """The argparse attribute name of the flag."""
        return self.flag.removeprefix("--").replace("-", "_")


# The Helm chart's ports; services in the order `edgegate up` starts them.
SERVICE_PORTS = {
    "security": (50052, 9102),
    "inference": (8001, 8002),
    "taskstore": (50053, 9103),
    "gateway": (50051, 9101),
}
PORT_OPTIONS = (
    PortOption(
        "http", "--http-port", 8080, "the gateway's HTTP API (OpenAI-compatible, WebSocket)"
    ),
    PortOption("nats", "--nats-port", 4222, "the nats-server the services and clients connect to"),
    *(
        option
        for service, (grpc, metrics) in SERVICE_PORTS.items()
        for option in (
            PortOption(f"{service}.grpc", f"--{service}-grpc-port", grpc, f"{service} gRPC"),
            PortOption(
                f"{service}.metrics", f"--{service}-metrics-port", metrics, f"{service} /metrics"
            ),
        )
    ),
)
HELP = (
    "A default port that is taken is replaced by a free one (the output says which); "
    "a port you name must be free, or edgegate up stops and says which. 0: any free port."
)


@dataclass(frozen=True, slots=True)
class ChosenPorts:
    ports: dict[str, int]  # PortOption.key -> port
    notes: list[str]  # one line per default that was taken

    def grpc(self, service: str) -> int:
        return self.ports[f"{service}.grpc"]

    def metrics(self, service: str) -> int:
        return self.ports[f"{service}.metrics"]


def add_port_flags(parser: argparse.ArgumentParser) -> None:
    """A `ports` group on `parser`: one flag per port, each with what listens there."""
    group = parser.add_argument_group("ports", HELP)
    for option in PORT_OPTIONS:
        group.add_argument(
            option.flag,
            type=port_number,
            default=None,
            metavar="PORT",
            help=f"{option.what} (default {option.default})",
        )


def requested(args: argparse.Namespace) -> dict[str, int | None]:
    """The ports named on the command line; None where the default stands."""
    return {option.key: getattr(args, option.dest) for option in PORT_OPTIONS}


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535; 0: any free port)")
    return port


def choose_ports(
    wanted: Mapping[str, int | None], *, can_listen: Callable[[int], bool] | None = None
) -> ChosenPorts:
    """A free port for every option: the one named, else the default, else any free one.

    Raises InvalidArgument when a named port is taken or named twice.
    """
    listenable = can_listen or functools.partial(port_is_free, host="0.0.0.0")
    named = {option.key: wanted[option.key] for option in PORT_OPTIONS if wanted.get(option.key)}
    ports: dict[str, int] = {}
    notes: list[str] = []
    by_port: dict[int, PortOption] = {}
    for option in sorted(PORT_OPTIONS, key=lambda o: o.key not in named):  # named ones first
        port = named.get(option.key)
        if port is not None:
            if port in by_port:
                raise InvalidArgument(
                    f"{option.flag} and {by_port[port].flag} both name port {port}"
                )
            if not listenable(port):
                raise InvalidArgument(
                    f"port {port} ({option.flag}, {option.what}) is taken: name another "
                    f"with {option.flag}, or leave the flag out for a free one"
                )
        elif wanted.get(option.key) == 0:
            port = _fresh(by_port)
        elif option.default in by_port or not listenable(option.default):
            port = _fresh(by_port)
            notes.append(
                f"port {option.default} is taken: {option.what} listens on {port} instead "
                f"({option.flag} chooses)"
            )
        else:
            port = option.default
        ports[option.key] = port
        by_port[port] = option
    return ChosenPorts(ports={o.key: ports[o.key] for o in PORT_OPTIONS}, notes=notes)


def _fresh(taken: Mapping[int, PortOption]) -> int:
    while (port := free_port()) in taken:
        pass
    return port
