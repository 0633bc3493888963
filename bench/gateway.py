"""What the gateway costs: /v1/embeddings against direct OIP gRPC, and idle WebSocket sessions.

The real stack on free ports: nats-server with JetStream, and the security,
inference (the default model, all-MiniLM-L6-v2, with its own config.yaml),
taskstore and gateway services as processes. In the same run:

1. Embeddings. Closed-loop callers in this process (each sends its next
   request when the last is answered), one sentence of 32 tokens a request,
   at each concurrency of `--concurrency`, by two paths to the same model
   with the same sentences:
   - the gateway's `/v1/embeddings` over HTTP (aiohttp), with a bearer token
     signed by the security service's keys, as the openai SDK sends it
     (`encoding_format: base64`): HTTP -> admission by the security service
     -> inference over NATS -> HTTP;
   - direct OIP gRPC `ModelInfer` to the inference service (tritonclient
     grpc.aio), as bench/inference.py sends it.
   Goodput is successful requests/s; latencies are of successful requests.
   The two paths alternate at each level and the report takes medians over
   `--rounds`. CPU per request of every process (/proc) says where the time
   goes. Goals: the gateway's best goodput >= 0.8 x direct's best; at one
   caller, p50(gateway) - p50(direct) <= 5 ms. `--spinning off` runs the
   model with ONNX Runtime's spinning threads off (its config.yaml as the
   model ships it spins), as docs/inference.md advises where cores are shared.
2. Idle WebSocket sessions on the one gateway process: worker processes
   (bench/ws_sessions.py) open authenticated `/ws` sessions (authenticate ->
   ready, one user each) in steps up to `--sessions`, and hold them. After
   each step: the gateway process's RSS (/proc/<pid>/status), nats-server's
   RSS and its JetStream consumer count (the gateway process follows every
   session's results with one feed). At the largest step the sessions are
   held `--hold-s` (past the gateway's 30 s WebSocket ping) and counted
   again, with the gateway's and nats-server's CPU while idle. Goal: 10,000
   sessions under 1 GiB of gateway RSS.

Writes `--out` (bench/results/gateway.json) and a PNG beside it. `--only`
runs one part and keeps the other's figures from the `--out` already there.

    .venv/bin/python bench/gateway.py [--quick] [--out bench/results/gateway.json]
        [--rounds 2] [--seconds 5] [--concurrency 1 2 4 ...] [--sessions 1000 2500 ...]
        [--only embeddings|sessions] [--spinning model|off]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats
import numpy as np
import tritonclient.grpc.aio as tca
import yaml  # type: ignore[import-untyped]
from inference import sentences  # bench/inference.py: sentences of exactly 32 tokens
from loadgen import DEFAULT_MODEL, ensure_default_model, machine, percentile, start_service
from tritonclient.utils import InferenceServerException
from ws_sessions import Workers, command_line, cpu_s, pid_of, raise_fd_limit, rss_bytes

from edgegate_common import subjects
from edgegate_common.local import LocalNatsServer, ServiceProcess, free_port
from edgegate_common.logging import configure_logging
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.tokens import TokenIssuer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DIRECT = "direct OIP gRPC"
GATEWAY = "gateway /v1/embeddings"
PATHS = (DIRECT, GATEWAY)
COLORS = {DIRECT: "tab:blue", GATEWAY: "tab:orange"}
CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)
SESSION_STEPS = (1000, 2500, 5000, 10000)
QUICK = {"concurrency": (1, 4, 16), "seconds": 2.0, "rounds": 1, "sessions": (100, 300)}
SESSIONS_PER_WORKER = 2500
GOODPUT_GOAL = 0.8
OVERHEAD_GOAL_MS = 5.0
SESSIONS_GOAL = 10_000
RSS_GOAL_BYTES = 1 << 30
MIB = 1 << 20
WATCHED = ("gateway", "nats-server")  # whose idle CPU the sessions part reads
NO_POLL = ("--repository-poll-s", "0")  # the model is there from the start
Call = Callable[[int], Awaitable[str]]  # the i-th request -> "ok" or what went wrong


@dataclass(frozen=True, slots=True)
class Stack:
    nats_url: str
    http_port: int
    inference_target: str
    token: str
    keys_dir: Path
    nats_monitor_port: int
    pids: dict[str, int]  # process name -> pid, this process ("client") included


@contextlib.asynccontextmanager
async def stack(folder: Path, repo: Path) -> AsyncIterator[Stack]:
    """nats-server and the four services, serving; stopped on the way out."""
    keys, monitor = folder / "keys", free_port()
    store = folder / "nats"
    with LocalNatsServer(store_dir=store, extra_args=("-m", str(monitor))) as nats:
        procs: dict[str, ServiceProcess] = {
            "security": start_service("security", nats.url, folder, "--keys-dir", str(keys)),
            "inference": start_service(
                "inference", nats.url, folder, "--model-repository", str(repo), *NO_POLL
            ),
            "taskstore": start_service("taskstore", nats.url, folder),
        }
        try:
            await asyncio.gather(*(p.wait_serving(timeout_s=180) for p in procs.values()))
            http_port = free_port()
            procs["gateway"] = start_service(
                "gateway", nats.url, folder, "--http-port", str(http_port)
            )
            await procs["gateway"].wait_serving(timeout_s=120)
            pids = {name: p.pid for name, p in procs.items() if p.pid is not None}
            if "edgegate_gateway" not in command_line(pids["gateway"]):
                raise RuntimeError("the gateway's pid is not the gateway process")
            pids["nats-server"] = pid_of(f"-sd {store}")
            pids["client"] = os.getpid()
            ring = KeyRing.open(keys, max_token_ttl_s=24 * 3600)
            token = (
                TokenIssuer(ring, issuer="edgegate", audience="edgegate")
                .issue(
                    tenant="bench", subject="gateway", scopes=[f"infer:{DEFAULT_MODEL}"], ttl_s=3600
                )
                .token
            )
            yield Stack(nats.url, http_port, procs["inference"].target, token, keys, monitor, pids)
        finally:
            for proc in reversed(procs.values()):
                proc.stop()


# -- 1. embeddings: the gateway against direct gRPC ------------------------------------


class Direct:
    """OIP `ModelInfer` straight to the inference service, one sentence a request."""

    def __init__(self, target: str, texts: list[str]) -> None:
        self._client = tca.InferenceServerClient(target)
        self._texts = texts

    async def __call__(self, i: int) -> str:
        tensor = tca.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[self._texts[i % len(self._texts)].encode()]], object))
        try:
            await self._client.infer(DEFAULT_MODEL, [tensor])
        except InferenceServerException as exc:
            return exc.status() or "error"
        return "ok"

    async def embedding(self, text: str) -> np.ndarray:
        tensor = tca.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[text.encode()]], object))
        answer = await self._client.infer(DEFAULT_MODEL, [tensor])
        name = answer.get_response().outputs[0].name
        return np.asarray(answer.as_numpy(name), np.float32).reshape(-1)

    async def close(self) -> None:
        await self._client.close()


class Gateway:
    """`/v1/embeddings` through the gateway, as the openai SDK sends it (base64 floats)."""

    def __init__(self, http: aiohttp.ClientSession, port: int, token: str, texts: list[str]):
        self._http, self._texts = http, texts
        self._url = f"http://127.0.0.1:{port}/v1/embeddings"
        self._headers = {"Authorization": f"Bearer {token}"}

    async def __call__(self, i: int) -> str:
        try:
            async with self._http.post(
                self._url, json=self._body(self._texts[i % len(self._texts)]), headers=self._headers
            ) as answer:
                await answer.read()
                return "ok" if answer.status == 200 else str(answer.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__

    async def embedding(self, text: str) -> np.ndarray:
        async with self._http.post(self._url, json=self._body(text), headers=self._headers) as a:
            a.raise_for_status()
            row = (await a.json())["data"][0]["embedding"]
        return np.frombuffer(base64.b64decode(row), np.float32)

    @staticmethod
    def _body(text: str) -> dict[str, str]:
        return {"model": DEFAULT_MODEL, "input": text, "encoding_format": "base64"}


async def level(
    call: Call, pids: dict[str, int], *, concurrency: int, seconds: float
) -> dict[str, Any]:
    """`concurrency` closed-loop callers for `seconds` after a short warm-up."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    measuring, stop_at = False, time.perf_counter() + min(1.0, seconds / 2)

    async def caller(index: int) -> None:
        i = index
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            outcome = await call(i)
            i += concurrency
            if measuring and outcome == "ok":
                latencies.append((time.perf_counter() - t0) * 1000)
            elif measuring:
                failures[outcome] += 1

    await asyncio.gather(*(caller(i) for i in range(concurrency)))  # warm-up
    cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
    measuring, started = True, time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    done = max(1, len(latencies))
    return {
        "concurrency": concurrency,
        "goodput_rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) if latencies else math.nan,
        "p90_ms": percentile(latencies, 0.9) if latencies else math.nan,
        "p99_ms": percentile(latencies, 0.99) if latencies else math.nan,
        "ok": len(latencies),
        "failed": dict(failures),
        # CPU per successful request, by process: where the time goes.
        "cpu_ms_per_request": {
            name: round((cpu_s(pid) - cpu_before[name]) * 1000 / done, 3)
            for name, pid in pids.items()
        },
    }


async def measure_embeddings(args: argparse.Namespace, found: Stack) -> dict[str, Any]:
    texts = sentences(args.version_dir / "tokenizer.json", 512)
    direct = Direct(found.inference_target, texts)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    rounds: dict[str, dict[int, list[dict[str, Any]]]] = {
        path: {c: [] for c in args.concurrency} for path in PATHS
    }
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            gateway = Gateway(http, found.http_port, found.token, texts)
            a, b = await direct.embedding(texts[0]), await gateway.embedding(texts[0])
            same = {
                "cosine": float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))),
                "dims": a.size,
            }
            calls: dict[str, Call] = {DIRECT: direct, GATEWAY: gateway}
            for round_no in range(args.rounds):
                for c in args.concurrency:
                    order = PATHS if (round_no + c) % 2 == 0 else PATHS[::-1]  # alternate
                    for path in order:
                        row = await level(
                            calls[path], found.pids, concurrency=c, seconds=args.seconds
                        )
                        rounds[path][c].append(row)
                        print(
                            f"round {round_no + 1} {path:>24} c={c:>2}: "
                            f"{row['goodput_rps']:7.1f}/s p50 {row['p50_ms']:7.2f} ms "
                            f"p99 {row['p99_ms']:7.2f} ms failed {row['failed'] or 0}",
                            flush=True,
                        )
    finally:
        await direct.close()
    curves = {path: [_median_row(rows) for rows in by_c.values()] for path, by_c in rounds.items()}
    return {"same_answer": same, "curves": curves, **summary(curves, rounds)}


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"concurrency": rows[0]["concurrency"]}
    for key in ("goodput_rps", "p50_ms", "p90_ms", "p99_ms"):
        out[key] = round(statistics.median(r[key] for r in rows), 3)
    out["failed"] = dict(sum((Counter(r["failed"]) for r in rows), Counter()))
    out["cpu_ms_per_request"] = {
        name: round(statistics.median(r["cpu_ms_per_request"][name] for r in rows), 3)
        for name in rows[0]["cpu_ms_per_request"]
    }
    out["rounds"] = [
        {k: round(r[k], 3) for k in ("goodput_rps", "p50_ms", "p90_ms", "p99_ms")} for r in rows
    ]
    return out


def summary(
    curves: dict[str, list[dict[str, Any]]], rounds: dict[str, dict[int, list[dict[str, Any]]]]
) -> dict[str, Any]:
    """Goodput at saturation (each path's best level) and latency at one caller."""
    best = {path: max(rows, key=lambda r: r["goodput_rps"]) for path, rows in curves.items()}
    saturation = {
        path: {"concurrency": row["concurrency"], "goodput_rps": row["goodput_rps"]}
        for path, row in best.items()
    }
    ratio = best[GATEWAY]["goodput_rps"] / best[DIRECT]["goodput_rps"]
    by_c = {path: {r["concurrency"]: r for r in rows} for path, rows in curves.items()}
    per_level = {
        str(c): round(by_c[GATEWAY][c]["goodput_rps"] / by_c[DIRECT][c]["goodput_rps"], 3)
        for c in by_c[DIRECT]
    }
    out: dict[str, Any] = {
        "saturation": {**saturation, "gateway_vs_direct": round(ratio, 3)},
        "gateway_vs_direct_per_concurrency": per_level,
    }
    if 1 in by_c[DIRECT]:
        # Within each round, so that the machine's drift lands on both.
        extra = [
            g["p50_ms"] - d["p50_ms"]
            for g, d in zip(rounds[GATEWAY][1], rounds[DIRECT][1], strict=True)
        ]
        out["low_load"] = {
            path: {k: by_c[path][1][k] for k in ("p50_ms", "p90_ms", "p99_ms")} for path in PATHS
        }
        out["low_load"]["gateway_overhead_p50_ms"] = round(statistics.median(extra), 3)
        out["low_load"]["overhead_per_round_ms"] = [round(e, 3) for e in extra]
    return out


# -- 2. idle WebSocket sessions on one gateway process -----------------------------------


async def snapshot(found: Stack, http: aiohttp.ClientSession) -> dict[str, Any]:
    """Memory of the gateway and nats-server, and nats-server's JetStream consumers."""
    monitor = f"http://127.0.0.1:{found.nats_monitor_port}"
    async with http.get(f"{monitor}/jsz") as answer:
        consumers = (await answer.json())["consumers"]
    return {
        "gateway_rss_mib": round(rss_bytes(found.pids["gateway"]) / MIB, 1),
        "nats_server_rss_mib": round(rss_bytes(found.pids["nats-server"]) / MIB, 1),
        "jetstream_consumers": consumers,
    }


async def consumer_limit(nats_url: str) -> int:
    """The events stream's consumer limit as the taskstore made it (-1: none stated).

    Not raised: the gateway follows all its sessions' results with one
    consumer, so the limit (1,000) no longer bounds the sessions.
    """
    bus = await nats.connect(nats_url)
    try:
        config = (await bus.jetstream().stream_info(subjects.STREAM_TASK_EVENTS)).config
    finally:
        await bus.close()
    return config.max_consumers if config.max_consumers is not None else -1


async def measure_sessions(args: argparse.Namespace, found: Stack) -> dict[str, Any]:
    limit = await consumer_limit(found.nats_url)
    count = max(1, math.ceil(max(args.sessions) / SESSIONS_PER_WORKER))
    url = f"ws://127.0.0.1:{found.http_port}/ws"
    workers = await Workers.start(count=count, url=url, keys_dir=found.keys_dir)
    steps: list[dict[str, Any]] = []
    stopped_because: str | None = None
    async with aiohttp.ClientSession() as http:
        try:
            idle = await _idle_cpu(args.settle_s, found)
            steps.append({"sessions": 0, "idle_cpu_share": idle, **await snapshot(found, http)})
            print(f"sessions: {steps[-1]}", flush=True)
            for target in args.sessions:
                wanted = target - steps[-1]["sessions"]
                opened = await workers.open(wanted)
                idle = await _idle_cpu(args.settle_s, found)
                held = await workers.status()
                steps.append(
                    {
                        "sessions": held["open"],
                        "asked": target,
                        "open_s": opened["seconds"],
                        "failed": opened["failed"],
                        "errors": opened["errors"],
                        "idle_cpu_share": idle,
                        **await snapshot(found, http),
                    }
                )
                print(f"sessions: {steps[-1]}", flush=True)
                if opened["failed"] > wanted // 2:
                    stopped_because = f"{opened['failed']} of {wanted} failed: {opened['errors']}"
                    break
            hold = await _hold(args.hold_s, found, workers, http)
        finally:
            await workers.close()
        await asyncio.sleep(args.settle_s)
        closed = await snapshot(found, http)
    return {
        "events_stream_max_consumers": limit,
        "workers": count,
        "steps": steps,
        "stopped_because": stopped_because,
        "hold": hold,
        "after_close": closed,
        **_per_session(steps),
    }


async def _hold(
    seconds: float, found: Stack, workers: Workers, http: aiohttp.ClientSession
) -> dict[str, Any]:
    """Hold the sessions idle for `seconds`: are they all still open, and what does idling cost?"""
    before = {name: cpu_s(found.pids[name]) for name in WATCHED}
    consumers: list[int] = []  # the gateway's feed is one consumer: does it stay one?
    started = time.perf_counter()
    while (left := seconds - (time.perf_counter() - started)) > 0:
        await asyncio.sleep(min(5.0, left))
        consumers.append((await snapshot(found, http))["jetstream_consumers"])
    held = await workers.status()
    return {
        "seconds": seconds,
        **held,
        "jetstream_consumers_min_max": [min(consumers), max(consumers)],
        # Share of one core while the sessions idle (heartbeats, timers).
        "idle_cpu_share": {
            name: round((cpu_s(found.pids[name]) - before[name]) / seconds, 3) for name in WATCHED
        },
        **await snapshot(found, http),
    }


async def _idle_cpu(seconds: float, found: Stack) -> dict[str, float]:
    """Share of one core the gateway and nats-server use over `seconds` while nothing is sent."""
    before = {name: cpu_s(found.pids[name]) for name in WATCHED}
    await asyncio.sleep(seconds)
    return {name: round((cpu_s(found.pids[name]) - before[name]) / seconds, 3) for name in WATCHED}


def _per_session(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The least-squares slope of gateway RSS over sessions, and where it reaches 10,000."""
    xs = np.array([s["sessions"] for s in steps], float)
    if len(xs) < 2 or xs.max() == 0:
        return {}
    gateway = np.polyfit(xs, [s["gateway_rss_mib"] for s in steps], 1)
    nats = np.polyfit(xs, [s["nats_server_rss_mib"] for s in steps], 1)
    return {
        "gateway_kib_per_session": round(gateway[0] * 1024, 2),
        "nats_server_kib_per_session": round(nats[0] * 1024, 2),
        "gateway_rss_mib_at_10000_fitted": round(float(np.polyval(gateway, SESSIONS_GOAL)), 1),
        "largest_reached": int(xs.max()),
    }


def log_events(path: Path) -> dict[str, int]:
    """The gateway's log (warnings and worse), counted by event: what went wrong, if anything."""
    events: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = {"event": line[:120]}
        if isinstance(record, dict):
            events[str(record.get("event", line[:120]))[:160]] += 1
    return dict(events.most_common(8))


def targets(results: dict[str, Any]) -> dict[str, Any]:
    embeddings, sessions = results["embeddings"], results["sessions"]
    ratio = embeddings["saturation"]["gateway_vs_direct"]
    out: dict[str, Any] = {
        "goodput_gateway_vs_direct": {
            "value": ratio,
            "target": f">= {GOODPUT_GOAL}",
            "met": ratio >= GOODPUT_GOAL,
        }
    }
    if "low_load" in embeddings:
        extra = embeddings["low_load"]["gateway_overhead_p50_ms"]
        out["gateway_overhead_p50_ms"] = {
            "value": extra,
            "target": f"<= {OVERHEAD_GOAL_MS}",
            "met": extra <= OVERHEAD_GOAL_MS,
        }
    if sessions.get("largest_reached"):
        reached = sessions["largest_reached"]
        rss = max(sessions["steps"][-1]["gateway_rss_mib"], sessions["hold"]["gateway_rss_mib"])
        fitted = sessions["gateway_rss_mib_at_10000_fitted"]
        out["sessions_10000_under_1gib"] = {
            "reached": reached,
            "held_after_hold": sessions["hold"]["open"],
            "gateway_rss_mib": rss,
            "fitted_rss_mib_at_10000": fitted,
            "target": f"{SESSIONS_GOAL} sessions, gateway RSS < {RSS_GOAL_BYTES // MIB} MiB",
            "met": reached >= SESSIONS_GOAL
            and sessions["hold"]["open"] >= SESSIONS_GOAL
            and rss < RSS_GOAL_BYTES / MIB,
            "fitted_met": fitted < RSS_GOAL_BYTES / MIB,
        }
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    embeddings, sessions = results["embeddings"], results["sessions"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5))
    for name, rows in embeddings["curves"].items():
        xs = [r["concurrency"] for r in rows]
        color = COLORS[name]
        left.plot(xs, [r["goodput_rps"] for r in rows], marker="o", color=color, label=name)
        middle.plot(xs, [r["p50_ms"] for r in rows], "o-", color=color, label=f"{name} p50")
        middle.plot(xs, [r["p99_ms"] for r in rows], "x--", color=color, label=f"{name} p99")
    best = embeddings["saturation"][DIRECT]["goodput_rps"]
    left.axhline(GOODPUT_GOAL * best, color="grey", ls=":", label="0.8 x direct's best")
    left.set(xscale="log", xlabel="concurrent callers", ylabel="successful requests/s")
    left.set_title(f"Goodput ({DEFAULT_MODEL}, 1 sentence a request)")
    middle.set(xscale="log", yscale="log", xlabel="concurrent callers", ylabel="ms")
    middle.set_title("Latency")
    steps = sessions["steps"]
    xs = [s["sessions"] for s in steps]
    right.plot(xs, [s["gateway_rss_mib"] for s in steps], marker="o", label="gateway RSS")
    right.plot(xs, [s["nats_server_rss_mib"] for s in steps], marker="o", label="nats-server RSS")
    right.axhline(RSS_GOAL_BYTES / MIB, color="red", ls=":", label="1 GiB")
    if "gateway_rss_mib_at_10000_fitted" in sessions:
        right.plot(
            [xs[0], SESSIONS_GOAL],
            [steps[0]["gateway_rss_mib"], sessions["gateway_rss_mib_at_10000_fitted"]],
            color="grey", ls="--", label="gateway, fitted",
        )  # fmt: skip
    right.set(xlabel="idle authenticated /ws sessions", ylabel="MiB", title="Idle sessions")
    cpu = right.twinx()
    cpu.plot(
        xs, [s["idle_cpu_share"]["gateway"] for s in steps], "s:", color="tab:green",
        label="gateway idle CPU",
    )  # fmt: skip
    cpu.set(ylabel="share of one core", ylim=(0, 1.05))
    cpu.legend(fontsize=7, loc="center right")
    for ax in (left, middle, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    fd_limit = raise_fd_limit()  # the services inherit it: the gateway holds a socket a session
    load_before = os.getloadavg()
    kept = _kept(args)
    with tempfile.TemporaryDirectory(prefix="edgegate-bench-gateway-") as tmp:
        async with stack(Path(tmp), args.version_dir.parent.parent) as found:
            parts: dict[str, Any] = {}
            if args.only != "sessions":
                parts["embeddings"] = await measure_embeddings(args, found)
            load_between = os.getloadavg()
            if args.only != "embeddings":
                parts["sessions"] = await measure_sessions(args, found)
                parts["sessions"]["gateway_log"] = log_events(Path(tmp) / "gateway.log")
    machine_now = {**machine(), "open_files_limit": fd_limit}
    if args.only:  # the other part and the run it came from stay as they were
        rerun = {
            "only": args.only,
            "quick": args.quick,
            "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": machine_now,
            "load_average": {"start": load_before, "end": os.getloadavg()},
        }
        return {**kept, **parts, "reruns": [*kept.get("reruns", []), rerun]}
    return {
        "model": DEFAULT_MODEL,
        "quick": args.quick,
        "seconds_per_level": args.seconds,
        "rounds": args.rounds,
        "machine": machine_now,
        "load_average": {
            "start": load_before,
            "after_embeddings": load_between,
            "end": os.getloadavg(),
        },
        "client": "this process (embeddings) and worker processes (sessions), same cores",
        **parts,
    }


def _kept(args: argparse.Namespace) -> dict[str, Any]:
    """With `--only`, the results already in `--out`: the part not run is kept from them."""
    if not args.only:
        return {}
    if not args.out.exists():
        raise SystemExit(f"--only {args.only} keeps the other part from {args.out}: none there")
    kept: dict[str, Any] = json.loads(args.out.read_text())
    return kept


def without_spinning(version_dir: Path, into: Path) -> Path:
    """A copy of the model's repository whose config.yaml turns ORT's spinning threads off."""
    model_dir = version_dir.parent
    copied = into / model_dir.name
    shutil.copytree(model_dir, copied)
    config = yaml.safe_load((copied / "config.yaml").read_text(encoding="utf-8"))
    config.setdefault("instances", {})["allow_spinning"] = False
    (copied / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return copied / version_dir.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small sweep, seconds per point")
    parser.add_argument("--seconds", type=float, help="measured time per level (default 5)")
    parser.add_argument("--rounds", type=int, help="medians over this many rounds (default 2)")
    parser.add_argument("--concurrency", type=int, nargs="+", help="callers per level")
    parser.add_argument("--sessions", type=int, nargs="+", help="WebSocket session steps")
    parser.add_argument("--hold-s", type=float, help="hold the most sessions this long (45)")
    parser.add_argument(
        "--only",
        choices=("embeddings", "sessions"),
        help="run one part; the other's figures are kept from --out",
    )
    parser.add_argument(
        "--settle-s", type=float, default=5.0, help="idle time before each reading (CPU over it)"
    )
    parser.add_argument(
        "--spinning",
        choices=("model", "off"),
        default="model",
        help="ONNX Runtime's threads: as the model's config.yaml says (spinning, its default), "
        "or off, as docs/inference.md advises where the cores are shared",
    )
    parser.add_argument("--repo", type=Path, default=ROOT / ".edgegate" / "models")
    parser.add_argument("--out", type=Path, default=RESULTS / "gateway.json")
    args = parser.parse_args()
    defaults = QUICK if args.quick else {
        "concurrency": CONCURRENCY, "seconds": 5.0, "rounds": 2, "sessions": SESSION_STEPS,
    }  # fmt: skip
    for key, value in {**defaults, "hold_s": 5.0 if args.quick else 45.0}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sessions = sorted(args.sessions)
    configure_logging(service="bench", level="warning")
    args.version_dir = ensure_default_model(args.repo.resolve())
    with tempfile.TemporaryDirectory(prefix="bench-gateway-repo-") as copy:
        if args.spinning == "off":
            args.version_dir = without_spinning(args.version_dir, Path(copy))
        results = asyncio.run(run(args))
    if "embeddings" in results:
        results["embeddings"]["spinning"] = args.spinning
    results["targets"] = targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(results["targets"], indent=2))


if __name__ == "__main__":
    main()
