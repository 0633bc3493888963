"""The inference service against the limit of the hardware, and against Triton, in one run.

On the default model (all-MiniLM-L6-v2, FP32, every sentence 32 tokens):

- raw ONNX Runtime: tokenise + session.run + pool in this process, one batch
  at a time, at each batch size; the best is the machine's limit;
- edgegate inference over gRPC with the dynamic batcher on, and with it off;
- (with --peer) Triton's own dynamic batcher through nvidia-pytriton, serving
  the same ONNX Runtime pipeline (bench/peers/).

The load is the same for every server: `concurrency` tritonclient grpc.aio
callers in this process, each sending one sentence per request back to back,
for `--seconds` after a warm-up. All servers start first and wait idle; each
round then measures raw and every server at every level, and the report takes
the median over rounds, so drift on a shared machine lands on all of them.
"Batching off" runs twice: with ONNX Runtime's threads spinning (its default and
edgegate's) and not; the target compares against the better one.
Writes bench/results/inference.json and bench/results/inference.png.

    .venv/bin/python bench/inference.py [--rounds 3] [--seconds 4] [--peer]
        [--concurrency 1 8 32 64] [--providers cpu|cuda|tensorrt] [--repo .edgegate/models]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as tca
import yaml
from loadgen import DEFAULT_MODEL, ensure_default_model, machine, percentile
from tokenizers import Tokenizer

from edgegate_common.local import LocalNatsServer, ServiceProcess, free_port
from edgegate_common.logging import configure_logging

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MODEL = DEFAULT_MODEL
SEQ_LEN = 32
RAW_BATCHES = (1, 2, 4, 8, 16, 32, 64)
BATCHING_ON = "edgegate, batching on"
BATCHING_OFF = "edgegate, batching off"
BATCHING_OFF_NO_SPIN = "edgegate, batching off, no spinning"
PEER = "pytriton"

ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
PROVIDERS = {"cpu": ["cpu"], "cuda": ["cuda", "cpu"], "tensorrt": ["tensorrt", "cuda", "cpu"]}


def sentences(tokenizer_path: Path, count: int) -> list[str]:
    """Distinct sentences of exactly SEQ_LEN tokens ([CLS] + 30 words + [SEP])."""
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    words = (
        "the quick brown fox jumps over lazy dog while model servers batch small requests "
        "into large calls so that every core stays busy and latency stays low for users"
    )
    rng = np.random.default_rng(0)
    out: list[str] = []
    while len(out) < count:
        text = " ".join(rng.choice(words.split(), size=SEQ_LEN - 2))
        if len(tokenizer.encode(text).ids) == SEQ_LEN:
            out.append(text)
    return out


# -- raw ONNX Runtime ----------------------------------------------------------


class RawPipeline:
    """Tokenise + run + pool in this process, one batch at a time: the hardware's limit."""

    def __init__(self, version_dir: Path, providers: list[str]) -> None:
        self._tokenizer = Tokenizer.from_file(str(version_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=256)
        self._tokenizer.enable_padding()
        self.sessions = {}
        for spin in (True, False):  # ORT's (and edgegate's) default, and threads that never spin
            options = ort.SessionOptions()
            options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spin)))
            self.sessions[spin] = ort.InferenceSession(
                str(version_dir / "model.onnx"), options, providers=providers
            )

    def run(self, spin: bool, batch: list[str]) -> np.ndarray:
        enc = self._tokenizer.encode_batch(batch)
        feeds = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        (states,) = self.sessions[spin].run(["last_hidden_state"], feeds)
        mask = feeds["attention_mask"][:, :, None].astype(np.float32)
        pooled = (states * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def measure(self, texts: list[str], *, size: int, seconds: float) -> dict:
        """The better of spinning and not spinning at this batch size."""
        best: dict = {}
        for spin in self.sessions:
            for i in range(2):  # warm-up
                self.run(spin, texts[i * size : (i + 1) * size])
            latencies: list[float] = []
            done, i, started = 0, 0, time.perf_counter()
            while time.perf_counter() - started < seconds or len(latencies) < 5:
                t0 = time.perf_counter()
                self.run(spin, [texts[(i + k) % len(texts)] for k in range(size)])
                latencies.append(time.perf_counter() - t0)
                done, i = done + size, i + size
            rate = done / (time.perf_counter() - started)
            if rate > best.get("sentences_per_s", 0.0):
                best = {
                    "sentences_per_s": rate,
                    "p50_ms": percentile(latencies, 0.5) * 1000,
                    "p99_ms": percentile(latencies, 0.99) * 1000,
                    "spinning": spin,
                }
        return best


# -- load over gRPC --------------------------------------------------------------


async def load(url: str, texts: list[str], *, concurrency: int, seconds: float) -> dict:
    client = tca.InferenceServerClient(url)
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0
    measuring = False

    async def caller(index: int) -> None:
        nonlocal errors
        i = index
        while time.perf_counter() < stop_at:
            tensor = tca.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[texts[i % len(texts)].encode()]], dtype=object))
            i += concurrency
            t0 = time.perf_counter()
            try:
                await client.infer(MODEL, [tensor])
            except Exception:
                errors += 1
                continue
            if measuring:
                latencies.append(time.perf_counter() - t0)

    try:
        stop_at = time.perf_counter() + min(2.0, seconds / 2)  # warm-up
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        measuring, started = True, time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return {
        "concurrency": concurrency,
        "sentences_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "requests": len(latencies),
        "errors": errors,
    }


def edgegate_server(
    repo: Path,
    work: Path,
    nats_url: str,
    *,
    base_config: dict,
    batching: bool,
    spin: bool,
    providers: str,
) -> ServiceProcess:
    """The default model's own config, with batching and spinning set for this variant."""
    config = json.loads(json.dumps(base_config))
    if not batching:
        config.pop("dynamic_batching", None)
    config.setdefault("instances", {})["allow_spinning"] = spin
    configured = {p["name"]: p for p in config.get("execution_providers", [])}
    config["execution_providers"] = [configured.get(n, {"name": n}) for n in PROVIDERS[providers]]
    model_dir = repo / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = ServiceProcess(
        "inference",
        nats_url=nats_url,
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_file=work / f"inference-{'on' if batching else 'off'}-{spin}.log",
        extra_args=(
            "--model-repository",
            str(repo),
            "--repository-poll-s",
            "0",
            "--log-level",
            "warning",
        ),
    )
    proc.start()
    asyncio.run(proc.wait_serving(timeout_s=120))
    return proc


def peer_server(version_dir: Path, work: Path) -> subprocess.Popen[str] | None:
    python = ROOT / ".venv-pytriton" / "bin" / "python"
    setup = ROOT / "bench" / "peers" / "setup_pytriton.py"
    if not python.exists():
        subprocess.run([sys.executable, str(setup)], check=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            str(python),
            str(ROOT / "bench/peers/pytriton_server.py"),
            "--version-dir",
            str(version_dir),
            "--grpc-port",
            str(port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--max-batch-size",
            "64",
        ],
        stdout=subprocess.PIPE,
        stderr=(work / "pytriton.log").open("w"),
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        print(f"pytriton did not start; see {work / 'pytriton.log'}", flush=True)
        return None
    proc.grpc_url = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    return proc


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, rows in results["servers"].items():
        xs = [r["concurrency"] for r in rows]
        left.plot(xs, [r["sentences_per_s"] for r in rows], marker="o", label=name)
        right.plot(xs, [r["p99_ms"] for r in rows], marker="o", label=name)
    limit = results["raw"]["limit_sentences_per_s"]
    left.axhline(
        limit,
        color="black",
        linestyle="--",
        label=f"raw ONNX Runtime, batch {results['raw']['best_batch']}",
    )
    left.axhline(0.9 * limit, color="grey", linestyle=":", label="90% of raw")
    left.set(
        xscale="log",
        xlabel="concurrent clients",
        ylabel="sentences/s",
        title=f"Throughput ({MODEL}, {SEQ_LEN} tokens)",
    )
    right.set(
        xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms", title="p99 latency"
    )
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def targets(results: dict) -> dict:
    raw = results["raw"]
    servers = results["servers"]
    at64 = {
        name: next((r for r in rows if r["concurrency"] == 64), None)
        for name, rows in servers.items()
    }
    on, peer = at64.get(BATCHING_ON), at64.get(PEER)
    # Batching off is compared at its best: with or without spinning threads.
    offs = [r for r in (at64.get(BATCHING_OFF), at64.get(BATCHING_OFF_NO_SPIN)) if r]
    off = max(offs, key=lambda r: r["sentences_per_s"]) if offs else None
    on1 = next((r for r in servers.get(BATCHING_ON, []) if r["concurrency"] == 1), None)
    out: dict[str, dict] = {}
    if on:
        ratio = on["sentences_per_s"] / raw["limit_sentences_per_s"]
        out["batched_64_vs_raw_limit"] = {"value": ratio, "target": ">= 0.90", "met": ratio >= 0.9}
    if on and off:
        gain = on["sentences_per_s"] / off["sentences_per_s"]
        out["batched_vs_unbatched_64"] = {"value": gain, "target": ">= 1.4", "met": gain >= 1.4}
    if on1:
        per_round = raw.get("batch1_extra_ms_per_round") or [on1["p50_ms"] - raw["batch1_p50_ms"]]
        extra = statistics.median(per_round)
        out["batch1_p50_over_raw_ms"] = {"value": extra, "target": "<= 2.0", "met": extra <= 2.0}
    if on and peer:
        vs = on["sentences_per_s"] / peer["sentences_per_s"]
        out["vs_pytriton_64"] = {
            "value": vs,
            "target": ">= 1.0 and lower p99",
            "p99_ms": {"edgegate": on["p99_ms"], "pytriton": peer["p99_ms"]},
            "met": vs >= 1.0 and on["p99_ms"] < peer["p99_ms"],
        }
    return out


def median_rows(rounds: list[dict]) -> dict:
    keys = ("sentences_per_s", "p50_ms", "p99_ms")
    out = {k: statistics.median(r[k] for r in rounds) for k in keys}
    out["errors"] = sum(r.get("errors", 0) for r in rounds)
    out["rounds"] = [{k: round(r[k], 2) for k in keys} for r in rounds]
    return out


def main() -> None:
    args = parse_args()
    configure_logging(service="bench", level="warning")
    version_dir = ensure_default_model(args.repo.resolve())
    texts = sentences(version_dir / "tokenizer.json", 512)
    raw = RawPipeline(version_dir, ORT_PROVIDERS[args.providers])
    raw_rounds, server_rounds = measure_rounds(version_dir, raw, texts, args)
    results = summarise(raw_rounds, server_rounds, args)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.providers == "cpu" else f"-{args.providers}"
    (args.out / f"inference{suffix}.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / f"inference{suffix}.png")
    print(json.dumps(results["targets"], indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per level")
    parser.add_argument("--rounds", type=int, default=3, help="medians over this many rounds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--peer", action="store_true", help="also measure nvidia-pytriton")
    parser.add_argument("--providers", choices=sorted(PROVIDERS), default="cpu")
    parser.add_argument("--repo", type=Path, default=ROOT / ".edgegate" / "models")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def measure_rounds(
    version_dir: Path, raw: RawPipeline, texts: list[str], args: argparse.Namespace
) -> tuple[dict[int, list[dict]], dict[str, dict[int, list[dict]]]]:
    """Start every server, then measure raw and each server at each level, `args.rounds` times.

    Returns the rows of every round: raw per batch size, servers per name and concurrency.
    """
    raw_rounds: dict[int, list[dict]] = {size: [] for size in RAW_BATCHES}
    server_rounds: dict[str, dict[int, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="edgegate-bench-") as tmp:
        work = Path(tmp)
        nats = LocalNatsServer(store_dir=work / "nats")
        nats.start()
        stops: list[Callable[[], object]] = [nats.stop]
        try:
            servers = start_servers(version_dir, work, nats.url, args, stops)
            server_rounds = {name: {c: [] for c in args.concurrency} for name in servers}
            for round_no in range(args.rounds):
                # Everything is measured in every round, so drift on a shared machine
                # lands on all of it; the report takes medians over rounds.
                for size in RAW_BATCHES:
                    raw_rounds[size].append(raw.measure(texts, size=size, seconds=args.seconds / 4))
                measure_servers(servers, texts, args, round_no=round_no, rows=server_rounds)
        finally:
            for stop in reversed(stops):
                stop()
    return raw_rounds, server_rounds


def measure_servers(
    servers: dict[str, str],
    texts: list[str],
    args: argparse.Namespace,
    *,
    round_no: int,
    rows: dict[str, dict[int, list[dict]]],
) -> None:
    """One round over the servers at every level; each round starts with the next server."""
    order = list(servers)[round_no % len(servers) :] + list(servers)[: round_no % len(servers)]
    for c in args.concurrency:
        for name in order:
            row = asyncio.run(load(servers[name], texts, concurrency=c, seconds=args.seconds))
            rows[name][c].append(row)
            print(
                f"round {round_no + 1} {name:>36} c={c:>2}: "
                f"{row['sentences_per_s']:7.1f}/s p50 {row['p50_ms']:7.2f} ms "
                f"p99 {row['p99_ms']:7.2f} ms",
                flush=True,
            )


def summarise(
    raw_rounds: dict[int, list[dict]],
    server_rounds: dict[str, dict[int, list[dict]]],
    args: argparse.Namespace,
) -> dict:
    """The medians over rounds, the machine, and how they compare with the targets."""
    per_batch = {size: median_rows(rows) for size, rows in raw_rounds.items()}
    best = max(per_batch, key=lambda size: per_batch[size]["sentences_per_s"])
    results: dict = {
        "model": MODEL,
        "sequence_length": SEQ_LEN,
        "seconds_per_level": args.seconds,
        "rounds": args.rounds,
        "machine": {**machine(), "onnxruntime": ort.__version__},
        "providers": args.providers,
        "raw": {
            "per_batch": per_batch,
            "best_batch": best,
            "limit_sentences_per_s": per_batch[best]["sentences_per_s"],
            "batch1_p50_ms": per_batch[1]["p50_ms"],
        },
        "servers": {
            name: [{"concurrency": c, **median_rows(rows)} for c, rows in levels.items()]
            for name, levels in server_rounds.items()
        },
    }
    # Batch-1 latency over raw, within each round (the same drift on both).
    on1 = server_rounds.get(BATCHING_ON, {}).get(1, [])
    results["raw"]["batch1_extra_ms_per_round"] = [
        row["p50_ms"] - raw_row["p50_ms"] for row, raw_row in zip(on1, raw_rounds[1], strict=False)
    ]
    results["targets"] = targets(results)
    return results


def start_servers(
    version_dir: Path,
    work: Path,
    nats_url: str,
    args: argparse.Namespace,
    stops: list[Callable[[], object]],
) -> dict[str, str]:
    """Every server under test, started once and left idle between measurements."""
    servers: dict[str, str] = {}
    base_config = yaml.safe_load((version_dir.parent / "config.yaml").read_text())
    variants = (
        (BATCHING_ON, True, True),
        (BATCHING_OFF, False, True),
        (BATCHING_OFF_NO_SPIN, False, False),
    )
    for name, batching, spin in variants:
        repo = work / f"repo-{batching}-{spin}"
        (repo / MODEL).mkdir(parents=True)
        (repo / MODEL / "1").symlink_to(version_dir)
        server = edgegate_server(
            repo,
            work,
            nats_url,
            base_config=base_config,
            batching=batching,
            spin=spin,
            providers=args.providers,
        )
        stops.append(server.stop)
        servers[name] = server.target
    if args.peer:
        peer = peer_server(version_dir, work)
        if peer is not None:
            stops.append(lambda: (peer.terminate(), peer.wait(timeout=30)))
            servers[PEER] = peer.grpc_url  # type: ignore[attr-defined]
    return servers


if __name__ == "__main__":
    main()
