"""`edgegate up`: `--once` starts the suite and stops; `--scenario` is what `make demo` runs."""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgegate_cli.scenario import QUESTION
from edgegate_common.local import free_port

pytestmark = pytest.mark.slow


def _edgegate_up(
    data_dir: Path, *extra: str, mode: str = "--once", timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    edgegate = Path(sys.executable).parent / "edgegate"
    command = [str(edgegate), "up", mode, "--data-dir", str(data_dir)]
    command += ["--nats-port", str(free_port()), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)


@contextmanager
def _occupied(port: int) -> Iterator[None]:
    """Something else listening on `port`, as another program on a laptop would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:  # taken already: by something else, which serves as well
            pass
        yield


def test_up_once_starts_everything_and_replaces_taken_default_ports(tmp_path: Path) -> None:
    """One `up --once` (it starts the whole suite) for both: everything serves and stops,
    and the default ports another program holds are replaced by free ones, and said."""
    with _occupied(8080), _occupied(50051):
        result = _edgegate_up(tmp_path)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    for service in ("gateway", "inference", "taskstore", "security"):
        assert "SERVING" in rows[service] and "serving v0.1.0" in rows[service], out
    assert (
        "stopped: gateway (exit 0), taskstore (exit 0), inference (exit 0), security (exit 0)"
        in out
    )
    assert (tmp_path / "nats" / "jetstream").is_dir()  # the JetStream store is where we said
    assert "edgegate model build-default" in out  # no model here: says how to get it
    http = re.search(r"port 8080 is taken: the gateway's HTTP API .* listens on (\d+) instead "
                     r"\(--http-port chooses\)", out)  # fmt: skip
    assert http, out
    port = int(http[1])
    assert f"OpenAI-compatible HTTP  http://127.0.0.1:{port}/v1" in out
    grpc = re.search(r"port 50051 is taken: gateway gRPC listens on (\d+) instead", out)
    assert grpc and re.search(rf"^gateway +127\.0\.0\.1:{grpc[1]} ", out, re.M), out
    # What next names the port it used, so that its commands work as printed.
    assert f"--http-port {port}" in out and f"http://127.0.0.1:{port}/v1/chat/completions" in out


def test_a_taken_port_that_was_asked_for_is_an_error_naming_it(tmp_path: Path) -> None:
    busy = free_port()
    with _occupied(busy):
        result = _edgegate_up(tmp_path, "--http-port", str(busy))
    assert result.returncode == 2
    assert f"edgegate up: port {busy} (--http-port, the gateway's HTTP API " in result.stderr
    assert "is taken: name another with --http-port, or leave the flag out" in result.stderr
    assert not (tmp_path / "logs").exists()  # nothing was started
    twice = _edgegate_up(tmp_path, "--gateway-grpc-port", "5999", "--http-port", "5999")
    assert twice.returncode == 2 and "both name port 5999" in twice.stderr
    bad = _edgegate_up(tmp_path, "--http-port", "70000")
    assert bad.returncode == 2 and "'70000' is not a port (0-65535" in bad.stderr


def test_up_help_documents_every_port() -> None:
    edgegate = Path(sys.executable).parent / "edgegate"
    text = subprocess.run(
        [str(edgegate), "up", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    flat = " ".join(text.split())
    assert (
        "--http-port PORT the gateway's HTTP API (OpenAI-compatible, WebSocket) (default 8080)"
        in flat
    )
    assert (
        "--nats-port PORT the nats-server the services and clients connect to (default 4222)"
        in flat
    )
    for service, grpc in (
        ("security", 50052),
        ("inference", 8001),
        ("taskstore", 50053),
        ("gateway", 50051),
    ):
        assert f"--{service}-grpc-port PORT {service} gRPC (default {grpc})" in flat
        assert f"--{service}-metrics-port PORT {service} /metrics (default" in flat
    assert "a port you name must be free" in flat


@pytest.mark.timeout(300)
def test_up_keeps_running_and_its_curl_example_works(
    tmp_path: Path, default_model_repo: Path
) -> None:
    """`edgegate up` says how to try it; the curl command it prints gets an answer."""
    (tmp_path / "models").symlink_to(default_model_repo)
    edgegate = Path(sys.executable).parent / "edgegate"
    command = [str(edgegate), "up", "--data-dir", str(tmp_path), "--nats-port", "0"]
    command += ["--http-port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as up:
        assert up.stdout is not None
        lines = []
        try:
            for line in up.stdout:
                lines.append(line)
                if line.strip().startswith("stop: Ctrl-C"):
                    break
            out = "".join(lines)
            assert "try it (the suite runs until Ctrl-C):" in out, out
            curl = next(line.strip() for line in lines if line.strip().startswith("curl "))
            asked = subprocess.run(
                shlex.split(curl), capture_output=True, text=True, timeout=120, check=False
            )
        finally:
            up.send_signal(signal.SIGINT)
            rest, _ = up.communicate(timeout=60)
    answer = json.loads(asked.stdout)["choices"][0]["message"]["content"]
    assert "becomes a task in the taskstore" in answer and QUESTION not in answer
    logs = re.search(r"logs \(JSON lines\): (\S+)/ \(([^)]*)\); nats-server: (\S+)", out)
    assert logs, out
    for name in logs[2].split(", "):
        assert (Path(logs[1]) / name).is_file()
    assert Path(logs[3]).is_file()
    assert up.returncode == 0 and "stopped: gateway (exit 0)" in rest


def test_up_fails_loudly_when_a_service_cannot_start(tmp_path: Path) -> None:
    result = _edgegate_up(tmp_path, "--timeout-s", "0.01")
    assert result.returncode == 1
    assert "edgegate up failed" in result.stdout


@pytest.mark.e2e  # `make demo` whole, about half a minute: make test-e2e runs it
@pytest.mark.timeout(300)
def test_up_scenario_runs_every_demo_step(tmp_path: Path, default_model_repo: Path) -> None:
    """`make demo`: the scripted scenario against the running suite, every step passing."""
    (tmp_path / "models").symlink_to(default_model_repo)
    result = _edgegate_up(tmp_path, mode="--scenario", timeout_s=280)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "scenario passed" in out and "FAILED" not in out
    # The main job: text in over NATS, unit-length embeddings out, similar texts closer.
    assert "all-MiniLM-L6-v2 v1: 3 texts -> 384-d embeddings" in out
    rows = [line for line in out.splitlines() if re.match(r"\s+\[-?\d\.\d\d ", line)]
    similarities = [[float(v) for v in row.split("]")[0].strip(" [").split()] for row in rows]
    assert [round(similarities[i][i], 2) for i in range(3)] == [1.0, 1.0, 1.0]
    # The two sentences about keeping messages safe are closer than either is to Paris.
    assert similarities[0][1] > similarities[0][2] + 0.2
    assert similarities[1][0] > similarities[1][2] + 0.2
    # Chat over HTTP, answered from the demo knowledge base (copied for the user to edit).
    answer = next(line for line in out.splitlines() if line.strip().startswith("A:"))
    assert "becomes a task in the taskstore" in answer
    assert "(source edgegate-faq.md#" in out and "dev token (tenant dev, 24 h): ey" in out
    assert (tmp_path / "knowledge" / "edgegate-faq.md").is_file()
    assert "result #" in out  # the WebSocket answer
    stored = next(line for line in out.splitlines() if line.strip().startswith("stored:"))
    assert "jane.doe@example.com" not in stored
    assert "x 429" in out and "429 says Retry-After: " in out
    assert "closed -> open" in out and "half_open -> closed" in out
    assert "completed after 1 attempt(s)" in out
    # The web console, signed in with the admin token `up` printed, saw the 429s and the trip.
    assert re.search(r"web console  http://127\.0\.0\.1:\d+/console", out)
    assert "console token (tenant dev, admin, 24 h; sign in with it): ey" in out
    throttled = re.search(r"tenant dev: (\d+) x 429 in the last hour", out)
    assert throttled and int(throttled[1]) > 0
    # The demo ends by saying what next, with this run's data folder, port and token.
    assert QUESTION not in answer  # the FAQ's question line is not echoed back
    what_next = out.split("\nwhat next:\n", 1)[1]
    token = re.search(r"dev token \(tenant dev, 24 h\): (\S+)", out)
    assert token and f"Authorization: Bearer {token[1]}" in what_next
    assert f"edgegate up --data-dir {tmp_path}" in what_next
    assert re.search(r"curl -sS http://127\.0\.0\.1:\d+/v1/chat/completions", what_next)
    assert f"logs (JSON lines): {tmp_path}/logs/ (security.log," in what_next
