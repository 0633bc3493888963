"""`edgegate rollout` and `edgegate breaker` (and `kubectl edgegate ...`) against an API server.

The API server is KMock's Kubernetes emulator on a local port, served from an
event loop on a thread of its own, with the ModelDeployment resource declared
as the CRD declares it. Each command is judged by what it leaves on the
resource, read back from the emulator: the commands promise nothing but merge
patches that a plain `kubectl patch` could send.

No operator runs here. Where a command waits for the operator to acknowledge
it, `AcknowledgingStandIn` plays that one part of the contract (writing
status.lastCommandId) and nothing else: it is the tests' stand-in, not the
operator.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import kmock
import pytest
import structlog
import yaml
from kubernetes import client, config

from edgegate_cli.main import main
from edgegate_common.local import free_port
from edgegate_operator.core.status import (
    BreakerStatus,
    Condition,
    LastAnalysis,
    Phase,
    RolloutStatus,
    Verdict,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((REPO / "deploy" / "examples" / "modeldeployment.yaml").read_text())
NAME = EXAMPLE["metadata"]["name"]
NAMESPACE = EXAMPLE["metadata"]["namespace"]
GROUP, VERSION, PLURAL = "edgegate.io", "v1alpha1", "modeldeployments"
RESOURCE = f"{GROUP}/{VERSION}/{PLURAL}"
BIN = Path(sys.executable).parent
EDGEGATE, KUBECTL = str(BIN / "edgegate"), str(BIN / "kubectl")
SHA = "ab" * 32

Json = dict[str, Any]


class EmulatedApiServer:
    """KMock's Kubernetes emulator on 127.0.0.1:<port>, in a thread's event loop."""

    def __init__(self) -> None:
        self._ready: Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        self._loop, self._stop = self._ready.result(timeout=10)

    async def _serve(self) -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            emulator.resources[RESOURCE] = kmock.ResourceInfo(
                kind="ModelDeployment",
                singular="modeldeployment",
                namespaced=True,
                shortnames={"md"},
                subresources={"status"},
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
            )
            self.emulator, self.url = emulator, f"http://127.0.0.1:{server.port}"
            stop = asyncio.Event()
            self._ready.set_result((asyncio.get_running_loop(), stop))
            await stop.wait()

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (the emulator is not thread-safe) and return its value."""

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=10)

    def object(self, name: str = NAME, namespace: str = NAMESPACE) -> Json:
        found = self.on_loop(lambda: self.emulator.objects[RESOURCE, namespace, name].raw)
        return copy.deepcopy(dict(found))

    def has(self, name: str, namespace: str = NAMESPACE) -> bool:
        return bool(self.on_loop(lambda: (RESOURCE, namespace, name) in self.emulator.objects))

    def patch_content_types(self) -> list[str]:
        return list(
            self.on_loop(lambda: [r.headers.get("Content-Type") for r in self.emulator["patch"]])
        )

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


class AcknowledgingStandIn:
    """Not the operator: writes status.lastCommandId for each new `edgegate.io/command`.

    That is the whole acknowledgement the contract promises. To let a test see
    an acted-on command change the rollout, the stand-in also moves status.step
    one on and says so in status.message; made with `refuse=True` it changes
    nothing but lastCommandId, as the operator does with a command it ignores.
    """

    def __init__(self, kubeconfig: Path, *, refuse: bool = False) -> None:
        self._api = _api(kubeconfig)
        self._refuse = refuse
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.05):
            obj: Json = self._api.get_namespaced_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, NAMESPACE, PLURAL, NAME
            )
            raw = obj["metadata"].get("annotations", {}).get("edgegate.io/command")
            status = obj.get("status", {})
            command = json.loads(raw) if raw else None
            if command is None or command["id"] == status.get("lastCommandId"):
                continue
            change: Json = {"lastCommandId": command["id"]}
            if not self._refuse:
                step = status.get("step", 0) + 1
                change |= {"step": step, "message": f"{command['action']}: now at step {step}"}
            self._api.patch_namespaced_custom_object_status(
                GROUP, VERSION, NAMESPACE, PLURAL, NAME, {"status": change}
            )

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)
        self._api.api_client.close()


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def _api(kubeconfig: Path) -> client.CustomObjectsApi:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
    )
    return client.CustomObjectsApi(client.ApiClient(configuration))


def write_kubeconfig(path: Path, *, server: str) -> Path:
    """Context `edgegate` (current, namespace edgegate) and `bare` (no namespace)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "sre", "user": {"token": "test-token"}}],
        "contexts": [
            {
                "name": "edgegate",
                "context": {"cluster": "kmock", "user": "sre", "namespace": NAMESPACE},
            },
            {"name": "bare", "context": {"cluster": "kmock", "user": "sre"}},
        ],
        "current-context": "edgegate",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """`main()` configures structlog for the CLI (warnings only, loggers cached on first
    use); undo that after each test, or later tests in this process lose their info lines."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:], root.level = handlers, level


@pytest.fixture
def api_server() -> Iterator[EmulatedApiServer]:
    server = EmulatedApiServer()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(
    api_server: EmulatedApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = write_kubeconfig(tmp_path / "kubeconfig", server=api_server.url)
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


@pytest.fixture
def api(kubeconfig: Path) -> Iterator[client.CustomObjectsApi]:
    """The tests' own client: creates the resource and writes status as the operator would."""
    custom = _api(kubeconfig)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, copy.deepcopy(EXAMPLE)
    )
    yield custom
    custom.api_client.close()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `edgegate ARGS...` in this process; its exit status, stdout and stderr."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as stop:
            code = int(stop.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def stand_in(kubeconfig: Path, api: client.CustomObjectsApi) -> Iterator[AcknowledgingStandIn]:
    acknowledger = AcknowledgingStandIn(kubeconfig)
    yield acknowledger
    acknowledger.stop()


def command_of(obj: Json) -> Json:
    doc: Json = json.loads(obj["metadata"]["annotations"]["edgegate.io/command"])
    return doc


def set_status(api: client.CustomObjectsApi, status: RolloutStatus) -> None:
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, PLURAL, NAME, {"status": status.to_dict()}
    )


def mid_rollout(now_ms: int) -> RolloutStatus:
    """Step 4 of the example's 10 (analysis 1m) at 25%, one failed check, version 2 forced open."""
    return RolloutStatus(
        phase=Phase.PROGRESSING,
        stable_version="1",
        canary_version="2",
        weight=25,
        step=4,
        step_started_at_ms=now_ms - 40_000,
        rollout_started_at_ms=now_ms - 900_000,
        last_analysis=LastAnalysis(
            at_ms=now_ms - 31_000,
            requests=1200,
            verdict=Verdict.PASS,
            message="error rate, p99 latency and agreement within limits",
            error_rate=0.002,
            p99_s=0.118,
            agreement=0.991,
        ),
        failed_checks=1,
        breakers=(
            BreakerStatus(version="1", state="closed", mode="auto"),
            BreakerStatus(
                version="2",
                state="open",
                mode="open",
                since_ms=now_ms - 120_000,
                reason="forced open by the operator",
            ),
        ),
        breaker_summary="1:closed 2:open",
        canary_ready_replicas=3,
        stable_ready_replicas=3,
        conditions=(
            Condition(
                type="Progressing",
                status="True",
                reason="StepAnalysis",
                message="analysing the canary",
                last_transition_ms=now_ms - 40_000,
            ),
        ),
        observed_generation=1,
        message="step 4 (analysis 60s): analysing the canary",
    )


def rows(text: str) -> dict[str, str]:
    """`Label:   value` lines -> {label: value}, the first line of each label."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][\w .-]*):\s+(.*)$", line)
        if match:
            found.setdefault(match[1], match[2])
    return found


def step_marks(text: str) -> list[tuple[str, str]]:
    """The step list: (marker, description) per step."""
    steps = text.split("Steps:", 1)[1].splitlines()[1:]
    marked = (re.match(r"^  (\[.\]|\S+)\s+\d+  (.*)$", line) for line in steps)
    return [(m[1], m[2]) for m in marked if m]


# --- one-shot commands: the annotation, and waiting for the acknowledgement ---------------


def test_promote_writes_the_command_and_reports_what_the_operator_did(
    cli: Callable[..., Result], api_server: EmulatedApiServer, stand_in: AcknowledgingStandIn
) -> None:
    result = cli("rollout", "promote", NAME)

    assert result.code == 0, result
    command = command_of(api_server.object())
    assert command["action"] == "promote" and re.fullmatch(r"[0-9a-f]{32}", command["id"])
    assert api_server.object()["status"]["lastCommandId"] == command["id"]
    assert f"promote sent (command {command['id']})" in result.out
    assert "the operator acted: Pending, step 1, weight 0%: promote: now at step 1" in result.out


@pytest.mark.parametrize(
    ("args", "action"),
    [(["promote"], "promote"), (["promote", "--full"], "promoteFull"),
     (["abort"], "abort"), (["retry"], "retry")],
)  # fmt: skip
def test_each_one_shot_command_is_its_action_with_a_new_id(
    cli: Callable[..., Result],
    api_server: EmulatedApiServer,
    api: client.CustomObjectsApi,
    args: list[str],
    action: str,
) -> None:
    ids = set()
    for _ in range(2):
        result = cli("rollout", args[0], NAME, *args[1:], "--wait", "0")
        assert result.code == 0, result
        assert "not waiting for the operator" in result.out
        command = command_of(api_server.object())
        assert command["action"] == action
        ids.add(command["id"])
    assert len(ids) == 2  # the operator acts once per id: a second command needs a new one


def test_a_command_nobody_acknowledges_exits_3_and_says_so(
    cli: Callable[..., Result], api_server: EmulatedApiServer, api: client.CustomObjectsApi
) -> None:
    started = time.monotonic()
    result = cli("rollout", "abort", NAME, "--wait", "0.6")

    assert result.code == 3, result
    assert 0.6 <= time.monotonic() - started < 5
    assert "the operator has not acted on it yet (waited 0.6 s)" in result.err
    assert command_of(api_server.object())["action"] == "abort"  # written all the same


def test_a_command_the_operator_refuses_exits_4(
    cli: Callable[..., Result], api: client.CustomObjectsApi, kubeconfig: Path
) -> None:
    refuser = AcknowledgingStandIn(kubeconfig, refuse=True)
    try:
        result = cli("rollout", "retry", NAME)
    finally:
        refuser.stop()

    assert result.code == 4, result
    assert "the operator acted" in result.out
    assert "the rollout did not change: the operator refused retry" in result.err
    assert f"kubectl -n {NAMESPACE} describe md {NAME}" in result.err


# --- spec patches ----------------------------------------------------------------------------


def test_pause_and_resume_set_spec_paused_with_merge_patches(
    cli: Callable[..., Result], api_server: EmulatedApiServer, api: client.CustomObjectsApi
) -> None:
    assert cli("rollout", "pause", NAME).code == 0
    assert api_server.object()["spec"]["paused"] is True
    assert cli("rollout", "resume", NAME).code == 0
    obj = api_server.object()
    assert obj["spec"]["paused"] is False
    assert {k: v for k, v in obj["spec"].items() if k != "paused"} == {
        k: v for k, v in EXAMPLE["spec"].items() if k != "paused"
    }
    assert set(api_server.patch_content_types()) == {"application/merge-patch+json"}


def test_resume_at_a_pause_until_promoted_says_promote_moves_past_it(
    cli: Callable[..., Result], api: client.CustomObjectsApi
) -> None:
    set_status(api, replace(mid_rollout(int(time.time() * 1000)), step=5, phase=Phase.PAUSED))

    result = cli("rollout", "resume", NAME)

    assert result.code == 0, result
    assert f"step 5 is a pause until promoted: `edgegate rollout promote {NAME}`" in result.out


def test_set_version_replaces_the_model_and_keeps_its_name(
    cli: Callable[..., Result], api_server: EmulatedApiServer, api: client.CustomObjectsApi
) -> None:
    uri = "s3://edgegate-models/all-minilm-l6-v2/3/model.onnx"
    result = cli("rollout", "set-version", NAME, "3", "--uri", uri, "--sha256", SHA)
    assert result.code == 0, result
    model = {"name": EXAMPLE["spec"]["model"]["name"], "version": "3", "uri": uri, "sha256": SHA}
    assert api_server.object()["spec"]["model"] == model

    # Without a digest the old one goes: it belongs to the previous file.
    assert cli("rollout", "set-version", NAME, "4", "--uri", uri).code == 0
    del model["sha256"]
    assert api_server.object()["spec"]["model"] == {**model, "version": "4"}


def test_breaker_commands_edit_one_entry_and_write_the_list_back(
    cli: Callable[..., Result], api_server: EmulatedApiServer, api: client.CustomObjectsApi
) -> None:
    def breakers() -> list[Json]:
        listed: list[Json] = api_server.object()["spec"].get("breakers", [])
        return listed

    assert cli("breaker", "open", NAME, "--version", "2").code == 0
    assert breakers() == [{"version": "2", "mode": "open"}]
    assert cli("breaker", "close", NAME, "--version", "1").code == 0
    assert breakers() == [{"version": "2", "mode": "open"}, {"version": "1", "mode": "closed"}]
    result = cli("breaker", "close", NAME, "--version", "2")
    assert breakers() == [{"version": "2", "mode": "closed"}, {"version": "1", "mode": "closed"}]
    assert "breaker of version 2 forced closed (spec.breakers: 2=closed, 1=closed)" in result.out
    result = cli("breaker", "auto", NAME, "--version", "2")
    assert breakers() == [{"version": "1", "mode": "closed"}]
    assert "breaker of version 2 back to auto" in result.out
    spec = api_server.object()["spec"]
    assert {k: v for k, v in spec.items() if k != "breakers"} == EXAMPLE["spec"]


def test_breaker_of_an_unknown_version_is_written_with_a_note(
    cli: Callable[..., Result], api_server: EmulatedApiServer, api: client.CustomObjectsApi
) -> None:
    result = cli("breaker", "open", NAME, "--version", "9")
    assert result.code == 0, result
    assert "version 9 is neither the stable, the canary nor the spec's version" in result.err
    assert api_server.object()["spec"]["breakers"] == [{"version": "9", "mode": "open"}]


@pytest.mark.parametrize(
    ("help_args", "placeholders", "written"),
    [
        (["rollout", "pause"], {}, lambda obj: obj["spec"]["paused"] is True),
        (["breaker", "open"], {'"V"': '"2"'},
         lambda obj: obj["spec"]["breakers"] == [{"version": "2", "mode": "open"}]),
        (["rollout", "promote"], {'\\"ID\\"': '\\"by-hand-1\\"'},
         lambda obj: command_of(obj) == {"action": "promote", "id": "by-hand-1"}),
    ],
)  # fmt: skip
def test_the_kubectl_patch_in_help_does_what_the_command_does(
    cli: Callable[..., Result],
    api_server: EmulatedApiServer,
    api: client.CustomObjectsApi,
    kubeconfig: Path,
    help_args: list[str],
    placeholders: dict[str, str],
    written: Callable[[Json], bool],
) -> None:
    text = cli(*help_args, "--help").out
    line = next(x.strip() for x in text.splitlines() if x.strip().startswith("kubectl -n"))
    line = line.replace("NAMESPACE", NAMESPACE).replace(" NAME ", f" {NAME} ")
    for placeholder, value in placeholders.items():
        line = line.replace(placeholder, value)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run(
        [KUBECTL, *shlex.split(line)[1:]], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert written(api_server.object())


# --- status ---------------------------------------------------------------------------------


def test_status_draws_a_rollout_mid_way(
    cli: Callable[..., Result], api: client.CustomObjectsApi
) -> None:
    set_status(api, mid_rollout(int(time.time() * 1000)))  # observedGeneration 1
    api.patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, NAME, {"metadata": {"generation": 2}}
    )

    result = cli("rollout", "status", NAME)

    assert result.code == 0, result
    seen = rows(result.out)
    assert seen["Generation"].startswith("1 of 2: the operator has not acted on the latest spec")
    assert seen["Name"] == NAME and seen["Namespace"] == NAMESPACE
    assert seen["Status"] == "◌ Progressing"
    assert seen["Message"] == "step 4 (analysis 60s): analysing the canary"
    assert seen["Strategy"] == "Canary"
    assert (seen["Step"], seen["SetWeight"], seen["ActualWeight"]) == ("4/10", "25", "25")
    assert seen["stable"] == "1  (3/3 ready, 75% of traffic)"
    assert seen["canary"] == "2  (3/3 ready, 25% of traffic)"
    assert re.fullmatch(r"✔ Pass \(3[0-9]s ago\)", seen["Analysis"])
    assert seen["Requests"] == "1200"
    assert seen["Error rate"] == "0.20%  (max 1.00%)"
    assert seen["p99 latency"] == "0.118 s  (max 0.250 s)"
    assert seen["Agreement"] == "0.991  (min 0.980)"
    assert seen["Failed checks"] == "1 of 2 allowed"
    assert seen["Inconclusive"] == "0 of 3 allowed"
    assert seen["1"].startswith("closed") and "mode auto" in seen["1"]
    assert seen["2"].startswith("open") and "forced open by the operator" in seen["2"]
    assert "since 2m ago" in seen["2"]
    assert re.search(r"Progressing\s+True\s+StepAnalysis\s+analysing the canary", result.out)
    marks = step_marks(result.out)
    assert [m for m, _ in marks] == ["✔"] * 4 + ["●"] + ["◌"] * 5
    assert marks[2][1] == "analysis 30s"  # the spec's analysis.interval
    assert marks[4][1] == "analysis 1m" and marks[5][1] == "pause (until promoted)"


def test_status_falls_back_to_ascii_where_stdout_cannot_show_symbols(
    api: client.CustomObjectsApi, kubeconfig: Path
) -> None:
    set_status(api, mid_rollout(int(time.time() * 1000)))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONIOENCODING": "ascii"}

    done = subprocess.run(
        [EDGEGATE, "rollout", "status", NAME], env=env, capture_output=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    text = done.stdout.decode("ascii")  # raises if anything but ASCII came out
    assert rows(text)["Status"] == "Progressing"
    assert [m for m, _ in step_marks(text)] == ["[x]"] * 4 + ["[>]"] + ["[ ]"] * 5


def test_status_watch_redraws_on_a_change_and_ends_cleanly_on_ctrl_c(
    api: client.CustomObjectsApi, kubeconfig: Path, tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    set_status(api, mid_rollout(now_ms))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    with (
        (tmp_path / "stderr").open("w") as stderr,
        subprocess.Popen(
            [EDGEGATE, "rollout", "status", NAME, "--watch", "--interval", "0.2"],
            env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
        ) as watcher,
    ):  # fmt: skip

        def read() -> None:
            for line in watcher.stdout or []:
                lines.put(line)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            seen += _wait_for_line(lines, "Step:", "4/10")
            set_status(api, replace(mid_rollout(now_ms), step=5, phase=Phase.PAUSED))
            seen += _wait_for_line(lines, "Step:", "5/10")
            time.sleep(1)  # the behaviour: five more reads of it unchanged draw no new picture
        finally:
            watcher.send_signal(signal.SIGINT)
            code = watcher.wait(timeout=20)
            reader.join(timeout=10)
    seen += list(lines.queue)
    errors = (tmp_path / "stderr").read_text()
    assert code == 0 and "Traceback" not in errors, errors
    assert sum(line.startswith("Name:") for line in seen) == 2


# --- the kubectl plugin -----------------------------------------------------------------------


def test_kubectl_edgegate_runs_the_same_commands(
    api_server: EmulatedApiServer, kubeconfig: Path, stand_in: AcknowledgingStandIn
) -> None:
    assert Path(BIN / "kubectl-edgegate").exists(), "run `make setup`: it installs the plugin"
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }

    done = subprocess.run(
        ["kubectl", "edgegate", "rollout", "promote", NAME],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    command = command_of(api_server.object())
    assert command["action"] == "promote"
    assert api_server.object()["status"]["lastCommandId"] == command["id"]
    assert "the operator acted" in done.stdout


# --- errors: one line on stderr, a non-zero exit, no traceback --------------------------------


def test_a_missing_resource_is_one_line_and_nothing_is_written(
    cli: Callable[..., Result], api_server: EmulatedApiServer, api: client.CustomObjectsApi
) -> None:
    for args in (["rollout", "promote", "nope"], ["rollout", "status", "nope"],
                 ["breaker", "open", "nope", "--version", "2"]):  # fmt: skip
        result = cli(*args)
        assert result.code == 1, result
        assert result.err == (
            f'edgegate {args[0]} {args[1]}: modeldeployment "nope" not found in namespace '
            f'"{NAMESPACE}"\n'
        )
        assert result.out == ""
    assert not api_server.has("nope")
    assert api_server.patch_content_types() == []


def test_the_namespace_comes_from_the_flag_else_the_context_else_default(
    cli: Callable[..., Result], api: client.CustomObjectsApi
) -> None:
    assert cli("rollout", "status", NAME).code == 0  # the current context's namespace
    assert 'in namespace "default"' in cli("rollout", "status", NAME, "--context", "bare").err
    assert 'in namespace "other"' in cli("rollout", "status", NAME, "-n", "other").err
    assert cli("rollout", "status", NAME, "--context", "bare", "-n", NAMESPACE).code == 0


def test_without_a_kubeconfig_the_error_says_where_it_looked(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    result = cli("rollout", "status", NAME)
    assert result.code == 1
    assert result.err == (
        "edgegate rollout status: no Kubernetes configuration: set KUBECONFIG, pass "
        "--kubeconfig, or run inside a cluster\n"
    )
    result = cli("rollout", "pause", NAME, "--kubeconfig", str(tmp_path / "nowhere"))
    assert result.code == 1
    assert (
        result.err == f"edgegate rollout pause: kubeconfig {tmp_path / 'nowhere'} does not exist\n"
    )


def test_forbidden_and_unreachable_are_one_line_each(
    cli: Callable[..., Result],
    api_server: EmulatedApiServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbid() -> None:
        raise kmock.KubernetesError(
            status=403, reason="Forbidden",
            message=f'modeldeployments.edgegate.io "{NAME}" is forbidden: User "sre" cannot get',
        )  # fmt: skip

    path = f"get /apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{NAME}"
    api_server.on_loop(lambda: api_server.emulator[path] << forbid)
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kc", server=api_server.url)))
    result = cli("rollout", "abort", NAME)
    assert result.code == 1 and result.err.count("\n") == 1, result
    assert result.err.startswith(
        f'edgegate rollout abort: forbidden: may not get modeldeployment "{NAME}" in namespace '
        f'"{NAMESPACE}" (needs RBAC get and patch on modeldeployments.edgegate.io): '
    )
    assert 'User "sre" cannot get' in result.err

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "gone", server=closed)))
    result = cli("rollout", "status", NAME)
    assert result.code == 1 and result.err.count("\n") == 1, result
    assert result.err.startswith(
        f"edgegate rollout status: cannot reach the Kubernetes API at {closed}"
    )


def _wait_for_line(
    lines: queue.Queue[str], label: str, value: str, timeout_s: float = 20
) -> list[str]:
    """The lines read up to and including `label ... value`."""
    read: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            read.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            break
        if read[-1].strip().startswith(label) and read[-1].strip().endswith(value):
            return read
    raise AssertionError(f"no line {label} ... {value} within {timeout_s} s: {read}")


def test_breaker_reads_again_when_the_resource_changed_under_it(
    cli: Callable[..., Result], api_server: EmulatedApiServer, api: client.CustomObjectsApi
) -> None:
    def conflict() -> None:
        raise kmock.KubernetesError(
            status=409, reason="Conflict", message="the object has been modified"
        )

    stored = api_server.on_loop(lambda: api_server.emulator.objects[RESOURCE, NAMESPACE, NAME])
    api_server.on_loop(lambda: stored.patch({"metadata": {"resourceVersion": "41"}}))
    api_server.on_loop(lambda: api_server.emulator["patch"][:1] << conflict)

    result = cli("breaker", "open", NAME, "--version", "2")

    assert result.code == 0, result
    sent = api_server.on_loop(lambda: [r.data for r in api_server.emulator["patch"]])
    assert len(sent) == 2  # refused once, written again
    assert sent[0]["metadata"] == {"resourceVersion": "41"}  # the version it read: a precondition
    assert api_server.object()["spec"]["breakers"] == [{"version": "2", "mode": "open"}]
