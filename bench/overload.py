"""Overload through the gateway: goodput and admitted latency at 1x, 2x and 4x capacity.

The whole path the issue saw: a real nats-server, the security, inference
(default model, its own config.yaml) and gateway services as processes, and
requests to the gateway's OpenAI-compatible `/v1/embeddings`, each with
`--sentences` sentences (32, as in the issue), from this process.

1. Capacity: closed-loop clients (each sends its next request when the last
   is answered, and waits out a 429's Retry-After) at 2, 4 and 8 clients;
   the best goodput is the capacity, "1x".
2. Overload: open-loop arrivals (Poisson) offering 1x, 2x and 4x that many
   sentences per second, `--seconds` each after a short warm-up, in
   `--rounds` rounds (the levels interleaved, so that the machine's drift
   lands on all of them; the report takes medians over rounds). Open loop,
   because that is what overload is: callers that do not slow down when the
   server does (many users, each sending once). A closed loop would offer
   less as answers slow down and never reach 4x; a refused request is not
   sent again, so what is offered stays what was planned.

Before and after, the model alone (tokenise + ONNX Runtime + pool, batches of
`--sentences`, in this process, the services idle): the machine's speed at
the time, since a shared machine's drifts by far more than the noise here.

For each level: goodput (sentences/s in successful answers), p50/p99 of the
admitted (200) requests, the share refused with 429 (and its Retry-After),
and the count of anything else (503 must be none). Writes
bench/results/overload.json and bench/results/overload.png.

    .venv/bin/python bench/overload.py [--rounds 2] [--seconds 15] [--sentences 32]
        [--queue-timeout-us N]   # the default model's config with another queue timeout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from loadgen import DEFAULT_MODEL, ensure_default_model, machine, percentile, start_service

from edgegate_common.local import LocalNatsServer, free_port
from edgegate_common.logging import configure_logging
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.tokens import TokenIssuer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CAPACITY_CLIENTS = (2, 4, 8)
LOADS = (1, 2, 4)
TEXT = (
    "the quick brown fox jumps over lazy dog while model servers batch small requests "
    "into large calls so that every core stays busy and latency stays low for users"
)


@dataclass(frozen=True, slots=True)
class Call:
    sent_s: float  # since the level started
    status: int
    latency_s: float
    retry_after: str | None


def sentences(count: int, *, seed: int) -> list[str]:
    """`count` sentences of 24 words (about 26 tokens each, no digits: no PII scan)."""
    rng, words = random.Random(seed), TEXT.split()
    return [" ".join(rng.choices(words, k=24)) for _ in range(count)]


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str, size: int) -> None:
        self._session, self._url, self._size = session, url, size
        self._headers = {"Authorization": f"Bearer {token}"}
        self._pool = sentences(4096, seed=1)
        self._next = 0

    async def call(self, started_s: float) -> Call:
        texts = [self._pool[(self._next + i) % len(self._pool)] for i in range(self._size)]
        self._next += self._size
        body = {"model": DEFAULT_MODEL, "input": texts}
        t0 = time.perf_counter()
        try:
            async with self._session.post(self._url, json=body, headers=self._headers) as answer:
                await answer.read()
                status, retry = answer.status, answer.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError):
            status, retry = 0, None  # no answer at all
        t1 = time.perf_counter()
        return Call(sent_s=t0 - started_s, status=status, latency_s=t1 - t0, retry_after=retry)


async def closed_loop(client: Client, *, clients: int, seconds: float) -> list[Call]:
    started = time.perf_counter()
    calls: list[Call] = []

    async def one() -> None:
        while time.perf_counter() - started < seconds:
            call = await client.call(started)
            calls.append(call)
            if call.status == 429:
                await asyncio.sleep(_seconds(call.retry_after) or 0.1)

    await asyncio.gather(*(one() for _ in range(clients)))
    return calls


async def open_loop(client: Client, *, requests_per_s: float, seconds: float) -> list[Call]:
    """Poisson arrivals at `requests_per_s` for `seconds`; every call, answered."""
    rng = random.Random(7)
    started = time.perf_counter()
    tasks: list[asyncio.Task[Call]] = []
    due = 0.0
    while True:
        due += rng.expovariate(requests_per_s)
        if due >= seconds:
            break
        await asyncio.sleep(max(0.0, started + due - time.perf_counter()))
        tasks.append(asyncio.ensure_future(client.call(started)))
    return list(await asyncio.gather(*tasks))


def _seconds(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def summarise(calls: list[Call], *, seconds: float, size: int) -> dict[str, object]:
    ok = [c.latency_s * 1000 for c in calls if c.status == 200]
    statuses = Counter(c.status for c in calls)
    hints = [h for c in calls if c.status == 429 and (h := _seconds(c.retry_after)) is not None]
    return {
        "requests": len(calls),
        "goodput_sentences_per_s": round(len(ok) * size / seconds, 1),
        "admitted_p50_ms": round(percentile(ok, 0.5), 1) if ok else None,
        "admitted_p99_ms": round(percentile(ok, 0.99), 1) if ok else None,
        "admitted_max_ms": round(max(ok), 1) if ok else None,
        "refused_429_share": round(statuses[429] / len(calls), 3) if calls else 0.0,
        "refused_429_p50_ms": round(
            percentile([c.latency_s * 1000 for c in calls if c.status == 429], 0.5), 1
        )
        if statuses[429]
        else None,
        "retry_after_s_median": statistics.median(hints) if hints else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "status_503": statuses[503],
    }


async def measure(args: argparse.Namespace, base_url: str, token: str) -> dict[str, object]:
    size, seconds = args.sentences, args.seconds
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = Client(session, f"{base_url}/embeddings", token, size)
        await closed_loop(client, clients=2, seconds=3)  # warm-up
        capacity_runs = {}
        for clients in CAPACITY_CLIENTS:
            calls = await closed_loop(client, clients=clients, seconds=args.capacity_seconds)
            capacity_runs[str(clients)] = summarise(calls, seconds=args.capacity_seconds, size=size)
            print(f"capacity, {clients} clients: {capacity_runs[str(clients)]}", flush=True)
        capacity = max(float(r["goodput_sentences_per_s"]) for r in capacity_runs.values())  # type: ignore[arg-type]
        rounds: dict[str, list[dict[str, Any]]] = {f"{load}x": [] for load in LOADS}
        for round_no in range(args.rounds):
            for load in LOADS:
                rate = load * capacity / size
                await open_loop(client, requests_per_s=rate, seconds=3)  # warm-up at this load
                calls = await open_loop(client, requests_per_s=rate, seconds=seconds)
                row = summarise(calls, seconds=seconds, size=size)
                rounds[f"{load}x"].append({"offered_sentences_per_s": round(rate * size, 1), **row})
                print(f"round {round_no + 1}, {load}x: {row}", flush=True)
                await asyncio.sleep(2)  # let the queue drain
    levels = {name: _medians(rows) for name, rows in rounds.items()}
    return {"capacity_sentences_per_s": capacity, "capacity_runs": capacity_runs, "levels": levels}


def _medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds; counts summed; the rounds themselves."""
    out: dict[str, Any] = {}
    for key, value in rows[0].items():
        values = [row[key] for row in rows if row[key] is not None]
        if key in ("requests", "status_503"):
            out[key] = sum(values)
        elif key == "statuses":
            out[key] = dict(sum((Counter(row[key]) for row in rows), Counter()))
        elif isinstance(value, int | float):
            out[key] = round(statistics.median(values), 3) if values else None
    out["rounds"] = rows
    return out


def targets(results: dict[str, Any]) -> dict[str, object]:
    one, four = results["levels"]["1x"], results["levels"]["4x"]
    goodput = four["goodput_sentences_per_s"] / one["goodput_sentences_per_s"]
    p99 = four["admitted_p99_ms"] / one["admitted_p99_ms"]
    no_503 = all(level["status_503"] == 0 for level in results["levels"].values())
    return {
        "goodput_4x_vs_1x": {
            "value": round(goodput, 3),
            "target": ">= 0.90",
            "met": goodput >= 0.9,
        },
        "admitted_p99_4x_vs_1x": {"value": round(p99, 3), "target": "<= 2.0", "met": p99 <= 2.0},
        "no_503": {"value": no_503, "target": "no 503 at any load", "met": no_503},
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["levels"]
    xs = [int(k.rstrip("x")) for k in levels]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.2))
    left.plot(xs, [v["offered_sentences_per_s"] for v in levels.values()], "o--", label="offered")
    left.plot(xs, [v["goodput_sentences_per_s"] for v in levels.values()], "o-", label="goodput")
    one = levels["1x"]["goodput_sentences_per_s"]
    left.axhline(0.9 * one, color="grey", linestyle=":", label="90% of goodput at 1x")
    left.set(xlabel="offered load (x capacity)", ylabel="sentences/s", title="Goodput")
    middle.plot(xs, [v["admitted_p50_ms"] for v in levels.values()], "o-", label="p50")
    middle.plot(xs, [v["admitted_p99_ms"] for v in levels.values()], "o-", label="p99")
    middle.axhline(
        2 * levels["1x"]["admitted_p99_ms"], color="grey", linestyle=":", label="2x p99 at 1x"
    )
    middle.set(xlabel="offered load (x capacity)", ylabel="ms", title="Admitted requests (200)")
    right.bar(xs, [v["refused_429_share"] for v in levels.values()], label="429 share")
    right.bar(xs, [v["status_503"] for v in levels.values()], color="red", label="503 (count)")
    right.set(xlabel="offered load (x capacity)", title="Refused at once")
    for ax in (left, middle, right):
        ax.set_xticks(xs)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{DEFAULT_MODEL} via /v1/embeddings, {results['sentences_per_request']} sentences "
        f"a request, capacity {results['capacity_sentences_per_s']:.0f} sentences/s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _with_queue_timeout(version_dir: Path, repo: Path, timeout_us: int) -> Path:
    """A repository serving the default model with its own config but this queue timeout."""
    config = yaml.safe_load((version_dir.parent / "config.yaml").read_text())
    batching = config.setdefault("dynamic_batching", {})
    batching.setdefault("queue_policy", {})["default_timeout_us"] = timeout_us
    (repo / DEFAULT_MODEL).mkdir(parents=True)
    (repo / DEFAULT_MODEL / "1").symlink_to(version_dir)
    (repo / DEFAULT_MODEL / "config.yaml").write_text(yaml.safe_dump(config))
    return repo


def raw_model(version_dir: Path, size: int) -> float:
    """Sentences/s of the model alone, batches of `size`, the better of spinning or not."""
    from inference import RawPipeline  # bench/inference.py: the same pipeline it measures

    raw = RawPipeline(version_dir, ["CPUExecutionProvider"])
    return float(raw.measure(sentences(256, seed=2), size=size, seconds=3)["sentences_per_s"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    version_dir = ensure_default_model(args.repo.resolve())
    repo = version_dir.parent.parent
    raw_before = raw_model(version_dir, args.sentences)
    print(f"the model alone: {raw_before:.1f} sentences/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="edgegate-overload-") as tmp:
        folder = Path(tmp)
        if args.queue_timeout_us is not None:
            repo = _with_queue_timeout(version_dir, folder / "models", args.queue_timeout_us)
        with LocalNatsServer(store_dir=folder / "nats") as nats:
            http_port = free_port()
            procs = [
                start_service("security", nats.url, folder, "--keys-dir", str(folder / "keys")),
                start_service(
                    "inference",
                    nats.url,
                    folder,
                    "--model-repository",
                    str(repo),
                    "--repository-poll-s",
                    "0",
                ),
            ]
            try:
                await asyncio.gather(*(p.wait_serving(timeout_s=180) for p in procs))
                procs.append(
                    start_service("gateway", nats.url, folder, "--http-port", str(http_port))
                )
                await procs[-1].wait_serving(timeout_s=120)
                ring = KeyRing.open(folder / "keys", max_token_ttl_s=24 * 3600)
                token = (
                    TokenIssuer(ring, issuer="edgegate", audience="edgegate")
                    .issue(
                        tenant="bench",
                        subject="overload",
                        scopes=[f"infer:{DEFAULT_MODEL}"],
                        ttl_s=3600,
                    )
                    .token
                )
                measured = await measure(args, f"http://127.0.0.1:{http_port}/v1", token)
            finally:
                for proc in reversed(procs):
                    proc.stop()
    raw_after = raw_model(version_dir, args.sentences)
    print(f"the model alone, after: {raw_after:.1f} sentences/s", flush=True)
    return {
        "model": DEFAULT_MODEL,
        "sentences_per_request": args.sentences,
        "seconds_per_level": args.seconds,
        "rounds": args.rounds,
        "queue_timeout_us": args.queue_timeout_us,
        "machine": machine(),
        "client": "this process, on the same cores as the services",
        "model_alone_sentences_per_s": {
            "before": round(raw_before, 1),
            "after": round(raw_after, 1),
        },
        **measured,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per load")
    parser.add_argument("--rounds", type=int, default=2, help="medians over this many rounds")
    parser.add_argument("--capacity-seconds", type=float, default=8.0)
    parser.add_argument("--sentences", type=int, default=32, help="sentences per request")
    parser.add_argument(
        "--queue-timeout-us", type=int, default=None, help="default: the model's config (2 s)"
    )
    parser.add_argument("--repo", type=Path, default=ROOT / ".edgegate" / "models")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    configure_logging(service="bench", level="warning")
    results = asyncio.run(run(args))
    results["targets"] = targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overload.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "overload.png")
    print(json.dumps(results["targets"], indent=2))


if __name__ == "__main__":
    main()
