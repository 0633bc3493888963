"""`edgegate up`: `--once` starts the suite and stops; `--scenario` is what `make demo` runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgegate_common.local import free_port

pytestmark = pytest.mark.slow


def _edgegate_up(
    data_dir: Path, *extra: str, mode: str = "--once", timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    edgegate = Path(sys.executable).parent / "edgegate"
    command = [str(edgegate), "up", mode, "--data-dir", str(data_dir)]
    command += ["--nats-port", str(free_port()), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)


def test_up_once_starts_everything_and_reports_four_serving(tmp_path: Path) -> None:
    result = _edgegate_up(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    for service in ("gateway", "inference", "taskstore", "security"):
        assert "SERVING" in rows[service] and "serving v0.1.0" in rows[service], result.stdout
    assert (
        "stopped: gateway (exit 0), taskstore (exit 0), inference (exit 0), security (exit 0)"
        in result.stdout
    )
    assert (tmp_path / "nats" / "jetstream").is_dir()  # the JetStream store is where we said
    assert "OpenAI-compatible HTTP  http://127.0.0.1:" in result.stdout
    assert "edgegate model build-default" in result.stdout  # no model here: says how to get it


def test_up_fails_loudly_when_a_service_cannot_start(tmp_path: Path) -> None:
    result = _edgegate_up(tmp_path, "--timeout-s", "0.01")
    assert result.returncode == 1
    assert "edgegate up failed" in result.stdout


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
