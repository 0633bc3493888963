"""Taskstore: durable submits per second next to raw JetStream, and task latency end to end.

Real processes on a real nats-server (file storage): the security service and
a taskstore replica. Part 1, submits: closed-loop submitters in this process
at 1, 16 and 64 concurrent send `Submit` over NATS (a new idempotency key
each, with the caller's token), and the call returns once the task record and
its queue message are stored and acknowledged by JetStream. Next to it, in
the same rounds and the same way, raw JetStream publish-with-ack of the same
envelope bytes (with a `Nats-Msg-Id`) to a file-backed stream. The replica
measured here runs no workers (`--workers 0`), so that only the submit path
is on the CPU; a resubmission of every key afterwards checks that nothing is
stored twice.

Part 2, end to end: the inference service with the default model
(all-MiniLM-L6-v2) and a taskstore replica with workers; each submitter
submits a sentence and waits for the task's result event on
`edgegate.taskstore.v1.events.<tenant>.<user>`: submit -> queue -> worker ->
inference -> record -> event, at 1 and 16 concurrent. Next to it, the same
sentence sent straight to the inference subject: what the task path adds.

Writes bench/results/taskstore.json and .png; exits 1 when the target (at 64
submitters: >= 2,000 submits/s and >= 50% of raw) is missed.

    .venv/bin/python bench/taskstore.py [--requests 3000] [--rounds 3] [--tasks 300]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import nats.aio.msg
from loadgen import (
    DEFAULT_MODEL,
    Rounds,
    closed_loop,
    ensure_default_model,
    machine,
    medians,
    percentile,
    point,
    start_service,
    unsampled_span,
)
from nats.js.api import StorageType, StreamConfig
from opentelemetry import trace

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.local import LocalNatsServer
from edgegate_common.logging import configure_logging
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.tokens import TokenIssuer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONCURRENCY = (1, 16, 64)
E2E_CONCURRENCY = (1, 16)
TARGET_CALLERS = 64
TARGET_RPS = 2000.0
TARGET_SHARE = 0.5
RAW = "raw JetStream publish-with-ack"
SUBMIT = "taskstore Submit over NATS"
COLORS = {RAW: "tab:blue", SUBMIT: "tab:orange"}
RAW_STREAM, RAW_SUBJECT = "BENCH_RAW", "bench.raw.tasks"
TENANT, USER = "acme", "bench"
SENTENCE = "How do I reset the password of my edge device after a firmware update?"


def envelope(key: str, model: str = DEFAULT_MODEL) -> env.Envelope:
    message = env.Envelope(idempotency_key=key, route=env.RouteHint(model=model))
    message.parts.add(text=SENTENCE)
    return message


async def run(args: argparse.Namespace) -> dict[str, object]:
    configure_logging(service="bench", level="warning")
    with tempfile.TemporaryDirectory() as tmp, LocalNatsServer(store_dir=Path(tmp) / "nats") as ns:
        folder = Path(tmp)
        procs = [start_service("security", ns.url, folder, "--keys-dir", str(folder / "keys"))]
        procs.append(start_service("taskstore-api", ns.url, folder, "--workers", "0"))
        try:
            await asyncio.gather(*(p.wait_serving(timeout_s=120) for p in procs))
            ring = KeyRing.open(folder / "keys", max_token_ttl_s=24 * 3600)
            issuer = TokenIssuer(ring, issuer="edgegate", audience="edgegate")
            token = issuer.issue(
                tenant=TENANT,
                subject=USER,
                scopes=[f"infer:{DEFAULT_MODEL}", "tasks:read", "tasks:write"],
                ttl_s=7200,
            ).token
            bus = await Bus.connect(servers=[ns.url], name="bench")
            try:
                with trace.use_span(unsampled_span(), end_on_exit=True):
                    submits, dedup = await measure_submits(args, bus, token)
                    await bus.js.purge_stream(subjects.STREAM_TASKS)  # nobody will run those
                    procs[1].stop()
                    repo = ensure_default_model(args.repo.resolve()).parent.parent
                    procs.append(
                        start_service("inference", ns.url, folder, "--model-repository", str(repo))
                    )
                    procs.append(start_service("taskstore-workers", ns.url, folder))
                    await asyncio.gather(*(p.wait_serving(timeout_s=180) for p in procs[2:]))
                    end_to_end = await measure_end_to_end(args, bus, token)
            finally:
                await bus.close()
        finally:
            for proc in procs:
                proc.stop()
    return summarise(args, submits, dedup, end_to_end)


async def measure_submits(
    args: argparse.Namespace, bus: Bus, token: str
) -> tuple[Rounds, dict[str, int]]:
    await bus.js.add_stream(
        StreamConfig(
            name=RAW_STREAM,
            subjects=[RAW_SUBJECT],
            storage=StorageType.FILE,
            duplicate_window=120.0,
        )
    )
    headers = {"Authorization": f"Bearer {token}"}
    raw_ids, submit_keys = itertools.count(), itertools.count()
    body = envelope("raw").SerializeToString()

    async def raw() -> object:
        return await bus.js.publish(
            RAW_SUBJECT, body, headers={"Nats-Msg-Id": f"raw-{next(raw_ids)}"}, timeout=10
        )

    async def submit() -> object:
        request = pb.SubmitRequest(envelope=envelope(f"submit-{next(submit_keys)}"))
        return await bus.request(
            subjects.TASKSTORE_SUBMIT, request, pb.Task, headers=headers, timeout_s=10
        )

    calls = {RAW: raw, SUBMIT: submit}
    for call in calls.values():  # warm up: connections, the token's principal, the streams
        await closed_loop(call, n=300, callers=16)
    rounds: Rounds = {name: {c: [] for c in CONCURRENCY} for name in calls}
    for _ in range(args.rounds):
        for callers in CONCURRENCY:
            for name, call in calls.items():
                latencies, rps = await closed_loop(call, n=args.requests, callers=callers)
                rounds[name][callers].append(point(latencies, rps))
    # De-duplication: submitting every key again stores nothing new.
    before = (await bus.js.stream_info(subjects.STREAM_TASKS)).state.messages
    sample = [f"submit-{i}" for i in range(0, next(submit_keys), 7)][:2000]
    for key in sample:
        await bus.request(
            subjects.TASKSTORE_SUBMIT,
            pb.SubmitRequest(envelope=envelope(key)),
            pb.Task,
            headers=headers,
        )
    after = (await bus.js.stream_info(subjects.STREAM_TASKS)).state.messages
    return rounds, {"resubmitted": len(sample), "stored_again": after - before}


async def measure_end_to_end(
    args: argparse.Namespace, bus: Bus, token: str
) -> dict[int, dict[str, float]]:
    headers = {"Authorization": f"Bearer {token}"}
    waiting: dict[str, asyncio.Future[pb.Task]] = {}

    async def on_event(msg: nats.aio.msg.Msg) -> None:
        task = pb.Task.FromString(msg.data)
        future = waiting.pop(task.envelope.idempotency_key, None)
        if future is not None and not future.done():
            future.set_result(task)

    await bus.subscribe(subjects.taskstore_events(TENANT, USER), cb=on_event)
    keys = itertools.count()
    failed = 0

    async def task_round_trip() -> object:
        nonlocal failed
        key = f"e2e-{next(keys)}"
        done = asyncio.get_running_loop().create_future()
        waiting[key] = done
        await bus.request(
            subjects.TASKSTORE_SUBMIT,
            pb.SubmitRequest(envelope=envelope(key)),
            pb.Task,
            headers=headers,
            timeout_s=30,
        )
        task = await asyncio.wait_for(done, timeout=60)
        failed += task.status != pb.TASK_STATUS_COMPLETED
        return task

    direct_envelope = envelope("direct")

    async def direct_inference() -> object:
        return await bus.request(
            subjects.inference_infer(DEFAULT_MODEL, "1"), direct_envelope, env.Reply, timeout_s=30
        )

    await closed_loop(task_round_trip, n=50, callers=4)  # warm up the model and the workers
    results: dict[int, dict[str, float]] = {}
    for callers in E2E_CONCURRENCY:
        latencies, rps = await closed_loop(task_round_trip, n=args.tasks, callers=callers)
        direct, direct_rps = await closed_loop(direct_inference, n=args.tasks, callers=callers)
        results[callers] = {
            "p50_ms": round(percentile(latencies, 0.5), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "tasks_per_s": round(rps, 1),
            "tasks": args.tasks,
            "direct_inference_p50_ms": round(percentile(direct, 0.5), 2),
            "direct_inference_p99_ms": round(percentile(direct, 0.99), 2),
            "direct_inference_per_s": round(direct_rps, 1),
        }
    results[0] = {"not_completed": failed}
    return results


def summarise(
    args: argparse.Namespace,
    rounds: Rounds,
    dedup: dict[str, int],
    end_to_end: dict[int, dict[str, float]],
) -> dict[str, object]:
    results: dict[str, Any] = medians(rounds)
    share = {
        str(c): round(
            results[SUBMIT][str(c)]["throughput_rps"] / results[RAW][str(c)]["throughput_rps"], 3
        )
        for c in CONCURRENCY
    }
    at_target = results[SUBMIT][str(TARGET_CALLERS)]["throughput_rps"]
    met = at_target >= TARGET_RPS and share[str(TARGET_CALLERS)] >= TARGET_SHARE
    not_completed = end_to_end.pop(0)["not_completed"]
    return {
        "benchmark": "taskstore durable submits vs raw JetStream; submit -> result event latency",
        "machine": machine(),
        "settings": {
            "requests_per_point": args.requests,
            "rounds": args.rounds,
            "concurrency": list(CONCURRENCY),
            "end_to_end_tasks": args.tasks,
            "storage": "file, 1 replica",
        },
        "submits": results,
        "submit_share_of_raw": share,
        "deduplication": dedup,
        "end_to_end_default_model": {str(c): r for c, r in end_to_end.items()},
        "end_to_end_not_completed": not_completed,
        "target": f"{SUBMIT} at {TARGET_CALLERS} submitters: >= {TARGET_RPS:,.0f}/s "
        f"and >= {TARGET_SHARE:.0%} of raw",
        "target_met": met,
    }


def plot(result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    submits: dict[str, dict[str, dict[str, float]]] = result["submits"]  # type: ignore[assignment]
    e2e: dict[str, dict[str, float]] = result["end_to_end_default_model"]  # type: ignore[assignment]
    fig, (rate, lat) = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.38
    for i, (name, by_callers) in enumerate(submits.items()):
        xs = [j + (i - 0.5) * width for j in range(len(CONCURRENCY))]
        rate.bar(
            xs,
            [by_callers[str(c)]["throughput_rps"] for c in CONCURRENCY],
            width,
            color=COLORS[name],
            label=name,
        )
    rate.axhline(TARGET_RPS, color="grey", linestyle=":", label=f"target {TARGET_RPS:,.0f}/s")
    rate.set_xticks(range(len(CONCURRENCY)), [f"{c} submitters" for c in CONCURRENCY])
    rate.set_ylabel("acknowledged submits/s")
    rate.set_title("Durable submits")
    rate.legend(fontsize=8)
    xs = [int(c) for c in e2e]
    lat.plot(xs, [e2e[str(c)]["p50_ms"] for c in xs], "o-", label="p50")
    lat.plot(xs, [e2e[str(c)]["p99_ms"] for c in xs], "s--", label="p99")
    lat.set_xticks(xs, [f"{c} submitters" for c in xs])
    lat.set_ylabel("ms, submit -> result event")
    lat.set_title("End to end, default model")
    lat.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per point and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=300, help="end-to-end tasks per level")
    parser.add_argument("--repo", type=Path, default=ROOT / ".edgegate" / "models")
    parser.add_argument("--out", type=Path, default=RESULTS / "taskstore.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    plot(result, args.out.with_suffix(".png"))
    for name, by_callers in result["submits"].items():  # type: ignore[attr-defined]
        for callers, r in by_callers.items():
            print(
                f"{name:<32} {callers:>3} submitters  {r['throughput_rps']:8,.0f}/s  "
                f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"
            )
    print(f"share of raw: {result['submit_share_of_raw']}")
    print(f"de-duplication: {result['deduplication']}")
    for callers, r in result["end_to_end_default_model"].items():  # type: ignore[attr-defined]
        print(
            f"end to end, {callers:>2} submitters: p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  "
            f"{r['tasks_per_s']} tasks/s; inference alone p50 {r['direct_inference_p50_ms']} ms "
            f"p99 {r['direct_inference_p99_ms']} ms {r['direct_inference_per_s']}/s"
        )
    print(f"target ({result['target']}): {'met' if result['target_met'] else 'MISSED'}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    raise SystemExit(0 if result["target_met"] else 1)


if __name__ == "__main__":
    sys.exit(main())
