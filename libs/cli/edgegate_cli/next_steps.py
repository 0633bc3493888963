"""What `edgegate up` tells a person to do next: the commands, ready to paste.

The demo (`make demo`, `edgegate up --scenario`) stops the suite when it ends;
a newcomer then wants it back, a request of their own against it, and the
logs when something looks wrong. Every command printed here is built from the
run that just happened (its data folder, its HTTP port, its token), so it
works as printed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from edgegate_cli.ports import PORT_OPTIONS
from edgegate_cli.scenario import ASSISTANT, QUESTION

DEFAULT_DATA_DIR = Path(".edgegate")
DEFAULT_HTTP_PORT = next(o.default for o in PORT_OPTIONS if o.key == "http")


@dataclass(frozen=True, slots=True)
class Run:
    """What a person needs to know about the suite that was just started."""

    data_dir: Path  # absolute
    http_port: int
    token: str | None  # the dev token printed above, if one could be signed
    services: tuple[str, ...]
    have_model: bool


def while_running(run: Run) -> str:
    """Printed once the suite serves and keeps running: how to use and stop it."""
    lines = ["", "try it (the suite runs until Ctrl-C):", *_ask(run), "  " + logs_line(run)]
    lines.append(f"  stop: Ctrl-C (the data stays in {_shown(run.data_dir)})")
    return "\n".join(lines)


def after_stop(run: Run) -> str:
    """Printed last after `--once` or the demo: how to get the suite back and use it."""
    lines = ["", "what next:", "  keep the suite running (Ctrl-C stops it):"]
    lines.append("    " + shlex.join(up_command(run)))
    lines += _ask(run, where="then, in another terminal, ask")
    lines.append("  " + logs_line(run))
    return "\n".join(lines)


def up_command(run: Run) -> list[str]:
    """`edgegate up` as it serves the same data folder and HTTP port again."""
    command = [edgegate_command(), "up"]
    if run.data_dir != DEFAULT_DATA_DIR.resolve():
        command += ["--data-dir", _shown(run.data_dir)]
    if run.http_port != DEFAULT_HTTP_PORT:
        command += ["--http-port", str(run.http_port)]
    return command


def chat_curl(*, http_port: int, token: str) -> list[str]:
    """A chat completion for the default assistant, as curl sends it."""
    body = {"model": ASSISTANT, "messages": [{"role": "user", "content": QUESTION}]}
    return [
        "curl", "-sS", f"http://127.0.0.1:{http_port}/v1/chat/completions",
        "-H", f"Authorization: Bearer {token}",
        "-H", "Content-Type: application/json",
        "-d", json.dumps(body),
    ]  # fmt: skip


def edgegate_command() -> str:
    """How to type `edgegate` from here: .venv/bin/edgegate in a checkout, else its path."""
    beside = Path(sys.executable).parent / "edgegate"
    if shutil.which("edgegate") == str(beside):
        return "edgegate"
    return _shown(beside)


def _ask(run: Run, *, where: str = "ask") -> list[str]:
    if run.token is None:
        return ["  (no dev token could be signed: see the security log below)"]
    lines = [
        f"  {where} the assistant with the dev token above (valid 24 h):",
        "    " + shlex.join(chat_curl(http_port=run.http_port, token=run.token)),
    ]
    if not run.have_model:
        build = [edgegate_command(), "model", "build-default"]
        if run.data_dir != DEFAULT_DATA_DIR.resolve():
            build += ["--repo", _shown(run.data_dir / "models")]
        lines.append(f"    (it answers once the default model is built: {shlex.join(build)})")
    lines.append(
        f"  or point the openai SDK at base_url=http://127.0.0.1:{run.http_port}/v1 "
        "with api_key=<the dev token>"
    )
    return lines


def logs_line(run: Run) -> str:
    logs = run.data_dir / "logs"
    names = ", ".join(f"{s}.log" for s in run.services)
    nats = run.data_dir / "nats" / "nats-server.log"
    return f"logs (JSON lines): {_shown(logs)}/ ({names}); nats-server: {_shown(nats)}"


def _shown(path: Path) -> str:
    """A path as short as it is unambiguous: relative below the current folder."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(path)
