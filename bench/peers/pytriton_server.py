"""The benchmark's peer: Triton's own dynamic batcher, through nvidia-pytriton.

Serves the same text pipeline as edgegate's inference service, over the same
Open Inference Protocol v2 (gRPC and HTTP), so that one load generator can call
either: input TEXT (BYTES, dims [1], batched), output embedding (FP32, [384]),
the L2-normalised mean of the model's token states under the attention mask.

What runs where: PyTriton starts the tritonserver binary from its wheel, whose
Python backend stub forwards each batch that Triton's dynamic batcher forms to
this process, where one ONNX Runtime session computes it. One model instance,
so batches run one after another, as in edgegate with one session.

Runs with the interpreter of the venv that setup_pytriton.py builds:

    .venv-pytriton/bin/python bench/peers/pytriton_server.py --version-dir DIR \\
        [--grpc-port 8001] [--max-batch-size 64] [--max-queue-delay-us 0]

DIR holds model.onnx and tokenizer.json. Prints `READY grpc=<port>` on stdout
once the model answers; logs go to stderr. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import sysconfig
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
from tokenizers import Tokenizer

log = logging.getLogger("pytriton_peer")

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

INPUT = "TEXT"
OUTPUT = "embedding"
EMBEDDING_DIM = 384
TOKEN_OUTPUT = "last_hidden_state"
# How often the main thread checks that tritonserver and the proxy still run.
WATCH_PERIOD_S = 1.0


class Embedder:
    """Texts in, unit-length sentence embeddings out: tokenise, run, pool."""

    def __init__(self, *, version_dir: Path, max_length: int, intra_op_threads: int) -> None:
        self._tokenizer = Tokenizer.from_file(str(version_dir / "tokenizer.json"))
        # The file may carry its own settings (all-MiniLM-L6-v2's pads every
        # text to 128 and truncates at 128): replace both, as edgegate does.
        self._tokenizer.enable_truncation(max_length=max_length)
        padding = self._tokenizer.padding or {}
        self._tokenizer.enable_padding(
            pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]")
        )  # to the longest text in the batch
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        self._session = ort.InferenceSession(
            str(version_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        self._token_output = TOKEN_OUTPUT if TOKEN_OUTPUT in outputs else outputs[0]

    def __call__(self, texts: Sequence[bytes | str]) -> FloatArray:
        decoded = [t if isinstance(t, str) else t.decode("utf-8", errors="replace") for t in texts]
        encodings = self._tokenizer.encode_batch(decoded)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {name: value for name, value in feeds.items() if name in self._input_names}
        (token_states,) = self._session.run([self._token_output], feeds)
        return mean_pool_normalised(token_states, mask)


def mean_pool_normalised(token_states: FloatArray, mask: IntArray) -> FloatArray:
    """[batch, tokens, hidden] -> [batch, hidden]: masked mean, then unit L2 norm."""
    weights = mask[:, :, None].astype(np.float32)
    pooled = (token_states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=-1, keepdims=True)
    unit: FloatArray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)
    return unit


def make_infer_fn(embedder: Embedder) -> Callable[..., dict[str, FloatArray]]:
    """PyTriton's callable: @batch hands it the dynamic batch as one [n, 1] array."""

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: npt.NDArray[np.object_]) -> dict[str, FloatArray]:
        texts = inputs[INPUT].reshape(-1)
        return {OUTPUT: embedder(list(texts))}

    return infer


def main() -> int:
    args = parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ports = {"grpc": args.grpc_port, "http": args.http_port, "metrics": args.metrics_port}
    if busy := busy_ports(host=args.host, ports=ports):
        # tritonserver would exit at once, but PyTriton waits 120 s before it says so.
        sys.exit(f"ports already in use on {args.host}: {busy}")
    use_interpreter_libs()
    # PyTriton prints every tritonserver log line with print(): send those to
    # stderr and keep stdout for the one line a launcher waits for.
    ready_out, sys.stdout = sys.stdout, sys.stderr
    stop = threading.Event()
    install_stop_handlers(stop)

    embedder = Embedder(
        version_dir=args.version_dir,
        max_length=args.max_length,
        intra_op_threads=args.intra_op_threads,
    )
    embedder(["warm-up"])  # the first ORT call allocates; keep it out of the figures

    triton_config, model_config = triton_configs(args)
    # restricted_endpoints=[]: leave the statistics API open (PyTriton guards it
    # with a generated token by default), so the benchmark can read batch sizes.
    security = TritonSecurityConfig(restricted_endpoints=[])
    with Triton(config=triton_config, security_config=security) as triton:
        triton.bind(
            model_name=args.model_name,
            infer_func=make_infer_fn(embedder),
            inputs=[Tensor(name=INPUT, dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(EMBEDDING_DIM,))],
            config=model_config,
            strict=True,
        )
        print(f"READY grpc={args.grpc_port}", file=ready_out, flush=True)
        while not stop.wait(WATCH_PERIOD_S):
            if not triton.is_alive():
                log.error("tritonserver or the model proxy exited")
                return 1
        log.info("stopping")
    return 0


def triton_configs(args: argparse.Namespace) -> tuple[TritonConfig, ModelConfig]:
    """The server's endpoints and the model's batching, from the command line."""
    triton_config = TritonConfig(
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        http_address=args.host,
        http_port=args.http_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        log_verbose=args.triton_log_verbose,
    )
    model_config = ModelConfig(
        max_batch_size=args.max_batch_size,
        batcher=DynamicBatcher(
            max_queue_delay_microseconds=args.max_queue_delay_us,
            preferred_batch_size=args.preferred_batch_size or None,
        ),
    )
    return triton_config, model_config


def use_interpreter_libs() -> None:
    """Let the Python backend stub find this interpreter's libpython.

    tritonserver starts triton_python_backend_stub, which links libpython3.x.so;
    an interpreter outside the system prefix (pyenv, a venv's base) keeps it in
    its own LIBDIR, which the loader does not search. The child processes
    inherit this environment.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir:
        return
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if libdir not in paths:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *paths])


def busy_ports(*, host: str, ports: dict[str, int]) -> dict[str, int]:
    """The ports of `ports` that something else already listens on."""
    busy = {}
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                busy[name] = port
    return busy


def install_stop_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--version-dir", type=Path, required=True, help="folder with model.onnx, tokenizer.json")
    add("--model-name", default="all-MiniLM-L6-v2")
    add("--host", default="127.0.0.1", help="address all three endpoints bind to")
    add("--grpc-port", type=int, default=8001)
    add("--http-port", type=int, default=8000)
    add("--metrics-port", type=int, default=8002)
    add("--max-batch-size", type=int, default=64)
    add("--max-queue-delay-us", type=int, default=0)
    add(
        "--preferred-batch-size",
        type=int,
        nargs="*",
        default=[],
        help="Triton's preferred_batch_size list (default: none, batches as large as queued)",
    )
    add("--intra-op-threads", type=int, default=0, help="ORT intra-op threads; 0 = ORT default")
    add("--max-length", type=int, default=256, help="tokens per text after truncation")
    add("--log-level", default="WARNING", help="this process's log level")
    add("--triton-log-verbose", type=int, default=0, help="tritonserver --log-verbose")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
