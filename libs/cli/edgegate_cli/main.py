"""`edgegate`: one command for what people type.

    edgegate up            start the local suite (NATS + four services) until Ctrl-C
    edgegate up --once     start it, print every service's health, stop (what `make demo` runs)
    edgegate model ...     build, quantise and inspect ONNX models (`edgegate model --help`)

More subcommands (token, audit, rollout) arrive with the parts they drive.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
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
    commands.add_parser(
        "model",
        help="build, quantise and inspect ONNX models (see `edgegate model --help`)",
        add_help=False,  # --help goes to the model tools, which know their own options
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "model":
        raise SystemExit(run_model_tools(argv[argv.index("model") + 1 :]))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
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


MODEL_TOOLS = "edgegate_inference.tools"


def run_model_tools(args: Sequence[str]) -> int:
    """Run the inference service's model tools in a child process; return its exit status.

    The CLI may not import a service (the two stay independent, and the tools pull
    in ONNX and, to build, PyTorch), so it starts `python -m` on them instead.
    """
    if importlib.util.find_spec("edgegate_inference") is None:
        print(
            "edgegate model: the model tools come with the inference service: "
            "pip install 'edgegate-inference[cpu,tools]'",
            file=sys.stderr,
        )
        return 1
    child = subprocess.Popen([sys.executable, "-m", MODEL_TOOLS, *args])
    try:
        code = child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it finish its way
        code = child.wait()
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as shells say
