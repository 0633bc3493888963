"""What the benchmarks share: closed-loop callers, percentiles, the default model, the trace.

Imported by the scripts beside it (`python bench/<name>.py` puts this folder
on the path).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags

from edgegate_common.local import ServiceProcess, free_port

DEFAULT_MODEL = "all-MiniLM-L6-v2"
Call = Callable[[], Awaitable[object]]


async def closed_loop(call: Call, *, n: int, callers: int) -> tuple[list[float], float]:
    """`callers` loops sharing `n` requests; each request's latency (ms), and requests/s.

    Closed loop: each caller sends its next request as soon as the last is answered.
    """
    remaining = n
    latencies: list[float] = []

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return latencies, n / (time.perf_counter() - started)


Rounds = dict[str, dict[int, list[dict[str, float]]]]  # name -> concurrency -> one per round


def machine() -> dict[str, object]:
    """Where a benchmark ran, for its JSON."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def point(latencies_ms: list[float], rps: float) -> dict[str, float]:
    """One measured point of one round."""
    return {
        "p50_ms": percentile(latencies_ms, 0.5),
        "p99_ms": percentile(latencies_ms, 0.99),
        "rps": rps,
    }


def medians(rounds: Rounds) -> dict[str, dict[str, dict[str, object]]]:
    """Per name and concurrency: the medians over rounds, with the rounds themselves."""
    return {
        name: {
            str(callers): {
                "p50_ms": round(statistics.median(r["p50_ms"] for r in rs), 3),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 3),
                "throughput_rps": round(statistics.median(r["rps"] for r in rs), 1),
                "rounds": rs,
            }
            for callers, rs in by_callers.items()
        }
        for name, by_callers in rounds.items()
    }


def ensure_default_model(repo: Path) -> Path:
    """The default model's version folder in `repo`, built by `edgegate model build-default`."""
    version_dir = repo / DEFAULT_MODEL / "1"
    if not (version_dir / "model.onnx").exists():
        edgegate = Path(sys.executable).parent / "edgegate"
        subprocess.run([str(edgegate), "model", "build-default", "--repo", str(repo)], check=True)
    return version_dir


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def unsampled_span() -> Span:
    """The span a service's request handler is in by default: valid ids, not sampled.

    No collector configured, or the ratio sampler said no: the trace id still
    travels in `traceparent`, and nobody builds spans for it.
    """
    ctx = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.DEFAULT),
    )
    return NonRecordingSpan(ctx)


def start_service(name: str, url: str, folder: Path, *args: str) -> ServiceProcess:
    """`python -m edgegate_<service>` on NATS at `url`, logging warnings to `folder/<name>.log`.

    `name` is the service, optionally with a role after a dash ("taskstore-api")."""
    proc = ServiceProcess(
        name.split("-")[0],
        nats_url=url,
        grpc_port=free_port(),
        metrics_port=0,
        log_file=folder / f"{name}.log",
        extra_args=(*args, "--log-level", "warning"),
    )
    proc.start()
    return proc
