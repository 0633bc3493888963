"""`edgegate`: one command for what people type.

    edgegate up            start the local suite (NATS + four services) until Ctrl-C;
                           every port has a flag (`edgegate up --help`)
    edgegate up --once     start it, print every service's health, stop
    edgegate up --scenario start it and run the demo scenario (what `make demo` runs)
    edgegate model ...     build, quantise and inspect ONNX models (`edgegate model --help`)
    edgegate token issue   sign a token with the local key ring (`edgegate token issue --help`)
    edgegate keys rotate   sign with a new key; running services pick it up, no restart
    edgegate audit verify  walk the audit log's hash chain, report the first broken link
    edgegate rollout ...   watch and steer a ModelDeployment's canary (`edgegate rollout --help`)
    edgegate breaker ...   force a model version's circuit breaker open, closed or back to auto

The same main runs as the kubectl plugin `kubectl edgegate rollout ...` (kubectl-edgegate).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from edgegate_cli import next_steps, ports, rollout, up
from edgegate_common.errors import InvalidArgument
from edgegate_common.logging import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgegate", description="edgegate, the self-hosted AI gateway"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p_up = commands.add_parser(
        "up",
        help="run the whole suite locally: nats-server and the four services",
        description="Run nats-server (JetStream) and the four services on this machine "
        "until Ctrl-C; print their health, the OpenAI-compatible endpoint, a dev token "
        "and how to try it.",
    )
    p_up.add_argument(
        "--data-dir",
        type=Path,
        default=next_steps.DEFAULT_DATA_DIR,
        help="the JetStream store, keys, knowledge, models and logs (default: %(default)s)",
    )
    p_up.add_argument(
        "--once", action="store_true", help="print health and stop instead of running"
    )
    p_up.add_argument(
        "--scenario",
        action="store_true",
        help="run the demo scenario against it, then stop (what `make demo` runs)",
    )
    p_up.add_argument(
        "--timeout-s",
        type=float,
        default=60.0,
        help="how long services may take to start (default: %(default)s)",
    )
    ports.add_port_flags(p_up)
    # --help of these goes to the service's tools, which know their own options.
    commands.add_parser(
        "model",
        help="build, quantise and inspect ONNX models (see `edgegate model --help`)",
        add_help=False,
    )
    commands.add_parser("token", help="issue tokens for local mode and tests", add_help=False)
    commands.add_parser("keys", help="rotate the security service's signing key", add_help=False)
    commands.add_parser("audit", help="verify the tamper-evident audit log", add_help=False)
    rollout.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in TOOLS:
        module, install = TOOLS[args.command]
        # The model tools take their command line after "model"; the security
        # tools take "token ..." / "audit ..." whole.
        start = argv.index(args.command) + (1 if args.command == "model" else 0)
        raise SystemExit(run_tools(args.command, module, install, argv[start:]))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    # The CLI talks to people: its libraries' info lines would only clutter the output.
    configure_logging(service="cli", level="warning")
    if args.command in rollout.COMMANDS:
        raise SystemExit(rollout.run(args))
    if args.command == "up":
        try:
            chosen = ports.choose_ports(ports.requested(args))
        except InvalidArgument as exc:
            parser.exit(2, f"edgegate up: {exc.message}\n")
        code = asyncio.run(
            up.run(
                data_dir=args.data_dir.resolve(),
                ports=chosen,
                once=args.once,
                scenario=args.scenario,
                timeout_s=args.timeout_s,
            )
        )
        raise SystemExit(code)


MODEL_TOOLS = "edgegate_inference.tools"
SECURITY_TOOLS = "edgegate_security.tools"
# command -> (the service's tools module, how to install it)
TOOLS = {
    "model": (MODEL_TOOLS, "pip install 'edgegate-inference[cpu,tools]'"),
    "token": (SECURITY_TOOLS, "pip install edgegate-security"),
    "keys": (SECURITY_TOOLS, "pip install edgegate-security"),
    "audit": (SECURITY_TOOLS, "pip install edgegate-security"),
}


def run_tools(command: str, module: str, install: str, args: Sequence[str]) -> int:
    """Run a service's tools in a child process; return its exit status.

    The CLI may not import a service (the two stay independent, and the tools pull
    in what the service needs: ONNX, PyTorch, the key ring), so it starts `python -m`
    on them instead.
    """
    if importlib.util.find_spec(module.partition(".")[0]) is None:
        print(f"edgegate {command}: these tools come with a service: {install}", file=sys.stderr)
        return 1
    child = subprocess.Popen([sys.executable, "-m", module, *args])
    try:
        code = child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it finish its way
        code = child.wait()
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as shells say
