"""`edgegate up`: the whole suite on one machine, no Kubernetes needed.

Starts a real nats-server with JetStream (store under the data folder), then
each service as its own process, exactly as in its container. Which ports
they listen on is decided before anything starts (`edgegate_cli.ports`). The
last lines say what to do next (`edgegate_cli.next_steps`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from edgegate_cli import next_steps
from edgegate_cli.next_steps import Run
from edgegate_cli.ports import SERVICE_PORTS, ChosenPorts
from edgegate_cli.scenario import (
    ASSISTANT,
    DEFAULT_MODEL,
    DEMO_GATEWAY_ARGS,
    DEMO_TEXTS,
    QUESTION,
    CloudStandIn,
    Demo,
    run_scenario,
)
from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import EdgegateError
from edgegate_common.local import LocalNatsServer, ServiceProcess, health_status
from edgegate_protos.common.v1 import envelope_pb2, status_pb2

DEMO_KNOWLEDGE = Path(__file__).parent / "demo_knowledge"
DEV_TENANT = "dev"  # the tenant of the tokens `up` prints; its admins run the console


def _extra_args(
    service: str, data_dir: Path, *, http_port: int, cloud: CloudStandIn | None
) -> tuple[str, ...]:
    if service == "inference":
        return ("--model-repository", str(data_dir / "models"))
    if service == "security":
        return ("--keys-dir", str(data_dir / "keys"))
    if service == "gateway":
        args: tuple[str, ...] = (
            "--http-port", str(http_port),
            "--knowledge-dir", str(_knowledge(data_dir)),
            "--outbox-dir", str(data_dir / "outbox"),
            "--console-operator-tenants", DEV_TENANT,
        )  # fmt: skip
        if cloud is not None:
            args += ("--fallback-url", cloud.url, *DEMO_GATEWAY_ARGS)
        return args
    return ()


def _knowledge(data_dir: Path) -> Path:
    """The assistant's folder: the demo FAQ on first start, then yours to edit."""
    folder = data_dir / "knowledge"
    if not folder.exists():
        shutil.copytree(DEMO_KNOWLEDGE, folder)
    return folder


async def run(
    *,
    data_dir: Path,
    ports: ChosenPorts,
    once: bool,
    timeout_s: float,
    scenario: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Start the suite; `once`: report and stop; `scenario`: also run the demo scenario."""
    once = once or scenario
    for note in ports.notes:
        print(note, file=out)
    # The scenario's cloud fallback: a stand-in in this process, started before the gateway.
    cloud = CloudStandIn() if scenario else None
    if cloud is not None:
        await cloud.start()
    nats = LocalNatsServer(store_dir=data_dir / "nats", port=ports.ports["nats"])
    processes = _service_processes(data_dir, ports, nats_url=nats.url, cloud=cloud)
    started = Run(
        data_dir=data_dir,
        http_port=ports.ports["http"],
        token=None,
        services=tuple(SERVICE_PORTS),
        have_model=(data_dir / "models" / DEFAULT_MODEL / "1" / "model.onnx").exists(),
    )
    try:
        healthy, started = await _serve(
            nats, processes, started, once=once, timeout_s=timeout_s, cloud=cloud, out=out
        )
    except EdgegateError as exc:
        print(f"edgegate up failed: {exc.message}", file=out)
        healthy = False
    finally:
        await _stop(processes, nats, cloud, out=out)
    if once and healthy:
        print(next_steps.after_stop(started), file=out)
    elif not healthy:
        print(next_steps.logs_line(started), file=out)
    return 0 if healthy else 1


def _service_processes(
    data_dir: Path, ports: ChosenPorts, *, nats_url: str, cloud: CloudStandIn | None
) -> list[ServiceProcess]:
    """One process per service, on its chosen ports, logging under the data folder."""
    return [
        ServiceProcess(
            name,
            nats_url=nats_url,
            grpc_port=ports.grpc(name),
            metrics_port=ports.metrics(name),
            log_file=data_dir / "logs" / f"{name}.log",
            extra_args=_extra_args(name, data_dir, http_port=ports.ports["http"], cloud=cloud),
        )
        for name in SERVICE_PORTS
    ]


async def _stop(
    processes: list[ServiceProcess],
    nats: LocalNatsServer,
    cloud: CloudStandIn | None,
    *,
    out: TextIO,
) -> None:
    """Stop the services (last started first), then NATS and the cloud stand-in."""
    codes = {p.service: p.stop() for p in reversed(processes)}
    nats.stop()
    if cloud is not None:
        await cloud.stop()
    print(
        "stopped: " + ", ".join(f"{name} (exit {code})" for name, code in codes.items()),
        file=out,
    )


async def _serve(
    nats: LocalNatsServer,
    processes: list[ServiceProcess],
    started: Run,
    *,
    once: bool,
    timeout_s: float,
    cloud: CloudStandIn | None,
    out: TextIO,
) -> tuple[bool, Run]:
    """Start and report everything, run the demo; then return (`once`) or serve until a signal."""
    nats.start()
    print(f"nats-server  {nats.url}  JetStream store {nats.store_dir}", file=out)
    for proc in processes:
        proc.start()
    await asyncio.gather(*(p.wait_serving(timeout_s=timeout_s) for p in processes))
    healthy = await report(processes, nats_url=nats.url, out=out)
    base_url = f"http://127.0.0.1:{started.http_port}/v1"
    print(f"OpenAI-compatible HTTP  {base_url}  (gateway)", file=out)
    token = dev_token(started.data_dir, nats_url=nats.url)
    started = replace(started, token=token)
    if token:
        print(f"dev token (tenant dev, 24 h): {token}", file=out)
    console = dev_token(started.data_dir, nats_url=nats.url, scopes=("admin",), subject="sre")
    print(f"web console  http://127.0.0.1:{started.http_port}/console", file=out)
    if console:
        print(f"console token (tenant dev, admin, 24 h; sign in with it): {console}", file=out)
    if healthy:
        healthy = await demo_embeddings(started.data_dir / "models", nats_url=nats.url, out=out)
    if healthy and token and started.have_model and cloud is not None:
        inference = next(p for p in processes if p.service == "inference")
        demo = Demo(base_url, token, nats.url, inference, cloud, out, console_token=console or "")
        healthy = await run_scenario(demo)
    elif healthy and token and started.have_model:  # also: the curl printed next works at once
        healthy = await demo_chat(base_url, token=token, out=out)
    if once:
        return healthy, started
    print(next_steps.while_running(started), file=out, flush=True)
    await _until_signalled()
    return True, started


async def report(processes: list[ServiceProcess], *, nats_url: str, out: TextIO) -> bool:
    """Print each service's gRPC health and its answer over NATS; True if all serve."""
    bus = await Bus.connect(servers=[nats_url], name="edgegate-cli", connect_timeout_s=5)
    healthy = True
    print(f"{'service':<10} {'grpc':<16} {'metrics':<8} {'grpc health':<12} nats status", file=out)
    try:
        for proc in processes:
            health = await health_status(proc.target)
            started = time.perf_counter()
            try:
                status = await bus.request(
                    subjects.status(proc.service),
                    status_pb2.StatusRequest(),
                    status_pb2.ServiceStatus,
                    timeout_s=2.0,
                )
                rtt_ms = (time.perf_counter() - started) * 1000
                state = "serving" if status.serving else "NOT serving"
                nats = f"{state} v{status.version} {status.instance} ({rtt_ms:.1f} ms)"
            except EdgegateError as exc:
                nats, status = f"no answer: {exc.message}", None
            healthy &= health == "SERVING" and status is not None and status.serving
            print(
                f"{proc.service:<10} {proc.target:<16} {proc.metrics_port:<8} {health:<12} {nats}",
                file=out,
            )
    finally:
        await bus.close()
    return healthy


async def demo_embeddings(repo: Path, *, nats_url: str, out: TextIO) -> bool:
    """The main job end to end: texts in over NATS, sentence embeddings out, compared."""
    if not (repo / DEFAULT_MODEL / "1" / "model.onnx").exists():
        print(f"no default model in {repo}: `edgegate model build-default` makes it", file=out)
        return True
    envelope = envelope_pb2.Envelope(id="edgegate-up-demo")
    for text in DEMO_TEXTS:
        envelope.parts.add(text=text)
    bus = await Bus.connect(servers=[nats_url], name="edgegate-cli", connect_timeout_s=5)
    try:
        started = time.perf_counter()
        reply = await bus.request(
            subjects.inference_infer(DEFAULT_MODEL, "1"),
            envelope,
            envelope_pb2.Reply,
            timeout_s=30.0,
        )
        took_ms = (time.perf_counter() - started) * 1000
    except EdgegateError as exc:
        print(f"embedding request failed: {exc.message}", file=out)
        return False
    finally:
        await bus.close()
    tensor = reply.parts[0].tensor
    rows, dims = tensor.shape
    vectors = memoryview(tensor.raw_data).cast("f")
    vecs = [vectors[i * dims : (i + 1) * dims] for i in range(rows)]
    print(
        f"\n{DEFAULT_MODEL} v{reply.version}: {rows} texts -> {dims}-d embeddings "
        f"in {took_ms:.0f} ms over NATS",
        file=out,
    )
    for i, text in enumerate(DEMO_TEXTS):
        sims = "  ".join(f"{sum(a * b for a, b in zip(vecs[i], v, strict=True)):.2f}" for v in vecs)
        print(f"  [{sims}]  {text}", file=out)
    return True


def dev_token(
    data_dir: Path,
    *,
    nats_url: str,
    scopes: tuple[str, ...] = ("infer:*", "tasks:read", "tasks:write"),
    subject: str = "developer",
) -> str | None:
    """A token for trying the suite out, signed by the local security service's keys."""
    command = [
        sys.executable, "-m", "edgegate_security.tools", "token", "issue",
        "--tenant", DEV_TENANT, "--sub", subject,
        *(arg for scope in scopes for arg in ("--scope", scope)),
        "--ttl-s", "86400",
        "--keys-dir", str(data_dir / "keys"), "--nats-url", nats_url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


async def demo_chat(base_url: str, *, token: str, out: TextIO) -> bool:
    """A question to the default assistant over HTTP, as an OpenAI client sends it."""
    body = {"model": ASSISTANT, "messages": [{"role": "user", "content": QUESTION}]}
    give_up_at = time.monotonic() + 60
    while True:  # the gateway embeds the knowledge base once the model is served
        status, answer, headers = await asyncio.to_thread(
            _post, f"{base_url}/chat/completions", body, token
        )
        if status != 503 or time.monotonic() > give_up_at:
            break
        await asyncio.sleep(0.5)
    if status != 200:
        print(f"chat request failed: HTTP {status} {answer}", file=out)
        return False
    print(f"\nchat over HTTP  Q: {QUESTION}", file=out)
    print(f"  A: {answer['choices'][0]['message']['content']}", file=out)
    print(
        f"  (source {headers.get('Edgegate-Source')}, score {headers.get('Edgegate-Score')})",
        file=out,
    )
    return True


def _post(
    url: str, body: Mapping[str, object], token: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(  # noqa: S310 (the gateway we just started)
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (our own URL)
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as refused:
        with refused:  # it holds the connection
            return refused.code, json.loads(refused.read() or b"{}"), dict(refused.headers)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
