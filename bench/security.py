"""The gateway's hot path: Admit (authenticate + authorise + inspect) over NATS.

A real nats-server and the security service as its own process (`python -m
edgegate_security`, PII masking on, as deployed), driven by closed-loop
callers in this process at 1, 16 and 64 concurrent: each caller sends its
next request as soon as the last is answered. Next to it, in the same run and
the same way, raw NATS request/reply: a nats-py responder process that answers
every request with pre-serialised bytes of the same size, so the difference is
what the security service costs.

Two messages: a chat line without PII (most traffic; the figure the target is
for) and one carrying a mobile number and an e-mail address, which Presidio
analyses and masks. The token is the same for every request, as a client
sends it until it expires.

The callers run inside a trace that is not sampled, as the gateway's handlers
do by default (no collector, or the ratio sampler said no): the trace id
travels in `traceparent` and the service builds no spans for it.

Rounds alternate raw / plain / PII so that drift on a shared machine hits all.
Writes bench/results/security.json and bench/results/security.png; exits 1
when the target (16 callers, plain: p50 <= 2 ms and p99 <= 10 ms) is missed.

    .venv/bin/python bench/security.py [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import nats
from loadgen import Call, Rounds, closed_loop, machine, medians, point, unsampled_span
from opentelemetry import trace

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.local import LocalNatsServer, ServiceProcess, free_port
from edgegate_common.logging import configure_logging
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.security.v1 import security_pb2 as pb
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.tokens import TokenIssuer

RESULTS = Path(__file__).parent / "results"
CONCURRENCY = (1, 16, 64)
TARGET_CALLERS = 16
TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
RAW = "raw NATS request/reply"
PLAIN = "Admit, plain chat message"
PII = "Admit, message with PII"
COLORS = {RAW: "tab:blue", PLAIN: "tab:orange", PII: "tab:red"}
RAW_SUBJECT = "bench.raw.echo"
TEXTS = {
    PLAIN: "Summarise the attached meeting notes in three bullet points, please.",
    PII: "Call me on 13812345678 or mail li.lei@example.com about the invoice.",
}


def raw_responder(url: str, size: int) -> None:
    """The raw side's server process: answer every request with `size` bytes."""

    async def serve() -> None:
        nc = await nats.connect(url)
        body = b"\x00" * size

        async def echo(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(body)

        await nc.subscribe(RAW_SUBJECT, cb=echo)
        await nc.flush()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def admit_request(token: str, text: str) -> pb.AdmitRequest:
    envelope = env.Envelope(id="bench", route=env.RouteHint(model="all-MiniLM-L6-v2"))
    envelope.parts.add(text=text)
    return pb.AdmitRequest(token=token, envelope=envelope)


async def run(args: argparse.Namespace) -> tuple[dict[str, object], dict[str, list[float]]]:
    configure_logging(service="bench", level="warning")
    with tempfile.TemporaryDirectory() as tmp, LocalNatsServer(store_dir=Path(tmp) / "nats") as ns:
        keys = Path(tmp) / "keys"
        service = ServiceProcess(
            "security",
            nats_url=ns.url,
            grpc_port=free_port(),
            metrics_port=0,
            log_file=Path(tmp) / "security.log",
            extra_args=("--keys-dir", str(keys), "--log-level", "warning"),
        )
        service.start()
        try:
            await service.wait_serving(timeout_s=120)
            ring = KeyRing.open(keys, max_token_ttl_s=24 * 3600)
            token = (
                TokenIssuer(ring, issuer="edgegate", audience="edgegate")
                .issue(tenant="acme", subject="bench", scopes=["infer:*"], ttl_s=3600)
                .token
            )
            with trace.use_span(unsampled_span(), end_on_exit=True):
                return await measure_all(args, ns.url, token)
        finally:
            service.stop()


async def measure_all(
    args: argparse.Namespace, url: str, token: str
) -> tuple[dict[str, object], dict[str, list[float]]]:
    bus = await Bus.connect(servers=[url], name="bench-caller")
    requests = {name: admit_request(token, text) for name, text in TEXTS.items()}
    reply = await bus.request(subjects.SECURITY_ADMIT, requests[PLAIN], pb.AdmitResponse)
    responder = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--raw-responder",
        url,
        str(reply.ByteSize()),
        stdout=asyncio.subprocess.PIPE,
    )
    raw_nc = await nats.connect(url)
    try:
        assert responder.stdout is not None
        if (await responder.stdout.readline()).strip() != b"ready":
            raise RuntimeError("the raw responder did not start")
        raw_body = requests[PLAIN].SerializeToString()

        async def raw() -> object:
            return await raw_nc.request(RAW_SUBJECT, raw_body, timeout=10)

        def admit(request: pb.AdmitRequest) -> Call:
            async def call() -> object:
                return await bus.request(
                    subjects.SECURITY_ADMIT, request, pb.AdmitResponse, timeout_s=10
                )

            return call

        calls = {RAW: raw, PLAIN: admit(requests[PLAIN]), PII: admit(requests[PII])}
        for call in calls.values():  # warm up: connections, caches, the verified token
            await closed_loop(call, n=500, callers=16)
        rounds: Rounds = {name: {c: [] for c in CONCURRENCY} for name in calls}
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.rounds):
            for callers in CONCURRENCY:
                for name, call in calls.items():
                    lat, rps = await closed_loop(call, n=args.requests, callers=callers)
                    if callers == TARGET_CALLERS:
                        samples[name].extend(lat)
                    rounds[name][callers].append(point(lat, rps))
    finally:
        await raw_nc.close()
        await bus.close()
        responder.kill()
        await responder.wait()
    return summarise(args, rounds), samples


def summarise(args: argparse.Namespace, rounds: Rounds) -> dict[str, object]:
    results: dict[str, Any] = medians(rounds)
    at_target = results[PLAIN][str(TARGET_CALLERS)]
    met = at_target["p50_ms"] <= TARGET_P50_MS and at_target["p99_ms"] <= TARGET_P99_MS
    return {
        "benchmark": "security Admit over NATS vs raw NATS request/reply",
        "machine": machine(),
        "settings": {
            "requests_per_point": args.requests,
            "rounds": args.rounds,
            "concurrency": list(CONCURRENCY),
            "messages": TEXTS,
        },
        "results": results,
        "throughput_vs_raw": {
            name: {
                str(c): round(
                    results[name][str(c)]["throughput_rps"]
                    / results[RAW][str(c)]["throughput_rps"],
                    3,
                )
                for c in CONCURRENCY
            }
            for name in (PLAIN, PII)
        },
        "target": f"{PLAIN} at {TARGET_CALLERS} callers: p50 <= {TARGET_P50_MS} ms, "
        f"p99 <= {TARGET_P99_MS} ms",
        "target_met": met,
    }


def plot(result: dict[str, object], samples: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results: dict[str, dict[str, dict[str, float]]] = result["results"]  # type: ignore[assignment]
    fig, (cdf, lat, rate) = plt.subplots(1, 3, figsize=(17, 4.8))
    for name, values in samples.items():
        ordered = sorted(values)
        cdf.plot(
            ordered, [i / len(ordered) for i in range(len(ordered))], label=name, color=COLORS[name]
        )
    cdf.axvline(TARGET_P50_MS, color="grey", linestyle=":", label=f"p50 target {TARGET_P50_MS} ms")
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (ms, log)")
    cdf.set_ylabel("fraction of requests")
    cdf.set_title(f"Latency CDF, {TARGET_CALLERS} callers")
    cdf.legend(fontsize=8)
    for name, by_callers in results.items():
        xs = list(CONCURRENCY)
        lat.plot(
            xs,
            [by_callers[str(c)]["p50_ms"] for c in xs],
            "o-",
            color=COLORS[name],
            label=f"{name} p50",
        )
        lat.plot(
            xs,
            [by_callers[str(c)]["p99_ms"] for c in xs],
            "s--",
            color=COLORS[name],
            label=f"{name} p99",
        )
    lat.set_xscale("log", base=4)
    lat.set_yscale("log")
    lat.set_xlabel("concurrent callers")
    lat.set_ylabel("ms (log)")
    lat.set_title("p50 and p99 by concurrency")
    lat.legend(fontsize=7)
    width = 0.27
    for i, (name, by_callers) in enumerate(results.items()):
        xs = [j + (i - 1) * width for j in range(len(CONCURRENCY))]
        rate.bar(
            xs,
            [by_callers[str(c)]["throughput_rps"] for c in CONCURRENCY],
            width,
            color=COLORS[name],
            label=name,
        )
    rate.set_xticks(range(len(CONCURRENCY)), [f"{c} callers" for c in CONCURRENCY])
    rate.set_ylabel("requests/s")
    rate.set_title("Throughput")
    rate.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--raw-responder":
        raw_responder(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per point and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "security.json")
    args = parser.parse_args()
    result, samples = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    plot(result, samples, args.out.with_suffix(".png"))
    for name, by_callers in result["results"].items():  # type: ignore[attr-defined]
        for callers, r in by_callers.items():
            print(
                f"{name:<28} {callers:>3} callers  p50 {r['p50_ms']:7.3f} ms  "
                f"p99 {r['p99_ms']:7.3f} ms  {r['throughput_rps']:9,.0f} req/s"
            )
    print(f"target ({result['target']}): {'met' if result['target_met'] else 'MISSED'}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    raise SystemExit(0 if result["target_met"] else 1)


if __name__ == "__main__":
    main()
