"""`edgegate`: one command for what people type.

    edgegate up            start the local suite (NATS + four services) until Ctrl-C
    edgegate up --once     start it, print every service's health, stop (what `make demo` runs)

More subcommands (token, audit, model, rollout) arrive with the parts they drive.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from edgegate_cli import up
from edgegate_common.logging import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgegate", description="edgegate, the self-hosted AI gateway"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p_up = commands.add_parser(
        "up", help="run the whole suite locally: nats-server and the four services"
    )
    p_up.add_argument(
        "--data-dir", type=Path, default=Path(".edgegate"), help="NATS store and logs"
    )
    p_up.add_argument(
        "--nats-port", type=int, default=4222, help="taken: a free port is used instead"
    )
    p_up.add_argument(
        "--once", action="store_true", help="print health and stop instead of running"
    )
    p_up.add_argument(
        "--timeout-s", type=float, default=60.0, help="how long services may take to start"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # The CLI talks to people: its libraries' info lines would only clutter the output.
    configure_logging(service="cli", level="warning")
    if args.command == "up":
        code = asyncio.run(
            up.run(
                data_dir=args.data_dir.resolve(),
                nats_port=args.nats_port,
                once=args.once,
                timeout_s=args.timeout_s,
            )
        )
        raise SystemExit(code)
