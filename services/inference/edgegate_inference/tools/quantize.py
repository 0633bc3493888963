"""`edgegate model quantize`: INT8 weights, and what they cost and buy.

How the weights are quantised is `int8`'s business; this module runs the
command around it. Where the model is a text model (a tokenizer beside it),
the result is held to an accuracy target: while the worst cosine to FP32 over
a set of calibration sentences is below `min_cosine`, the most sensitive
MatMuls go back to FP32, one at a time. The report then measures on other
sentences, so that the figures it prints are not the ones the target was
tuned on.

The report is what a user of the service would notice: file size, speed on
this machine's CPU, and how far the embeddings moved.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgegate_common.errors import AlreadyExists, InvalidArgument
from edgegate_inference.core.spec import MODEL_FILE, TextPipeline
from edgegate_inference.tools import int8, measure
from edgegate_inference.tools.files import OnnxModel, locate
from edgegate_inference.tools.inspection import summarize
from edgegate_inference.tools.progress import Progress
from edgegate_inference.tools.report import Accuracy, QuantizeReport, Settings, SpeedPair

STAGES = 5
BATCH_SIZES = (1, 32)
TIMED_RUNS = {1: 64, 32: 6}  # per model: a few seconds in all on two cores
CALIBRATION_SENTENCES = 256
# The calibration sentences are a sample: the target they must meet is raised by this
# much, so that other sentences stay above `min_cosine` too (on MiniLM the worst of 1500
# sentences sat 0.004 below the worst of the first 200).
CALIBRATION_MARGIN = 0.005
CALIBRATION_SEED, EVALUATION_SEED, SPEED_SEED = 1, 2, 3
CLAUSES = (1, 6)  # 11 to 60 tokens


@dataclass(frozen=True)
class Target:
    onnx: Path
    version_dir: Path | None  # a servable folder: the tokenizer is copied into it


def quantize(
    source: Path,
    dest: Path,
    *,
    settings: Settings,
    sentences: int,
    force: bool,
    progress: Progress,
) -> QuantizeReport:
    """Quantise `source` into `dest` and measure both; see the module docstring."""
    model = locate(source)
    summarize(model.onnx)  # not ONNX: a clear error now, not ONNX Runtime's later
    target = _target(model, dest, force=force)
    fp32 = _text_model(model, model.onnx)
    # Work beside the target (same file system), so that renaming into place is atomic.
    beside = target.version_dir.parent if target.version_dir else target.onnx.parent
    beside.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=beside) as work:
        staged = Path(work) / "out"
        staged.mkdir()
        kept = _quantize_into(staged / target.onnx.name, model, fp32, settings, progress)
        if target.version_dir is not None and model.tokenizer is not None:
            shutil.copyfile(model.tokenizer, staged / model.tokenizer_name)
        _put_in_place(staged, target)
    report = QuantizeReport(
        source=str(model.onnx),
        output=str(target.onnx),
        settings=settings,
        fp32_bytes=model.onnx.stat().st_size,
        int8_bytes=target.onnx.stat().st_size,
        kept_fp32=tuple(kept),
    )
    int8_model = _text_model(model, target.onnx)
    if fp32 is None or int8_model is None:
        return report
    return _measure(fp32, int8_model, report, sentences=sentences, progress=progress)


def _quantize_into(
    dest: Path,
    model: OnnxModel,
    fp32: measure.TextModel | None,
    settings: Settings,
    progress: Progress,
) -> list[str]:
    """Write the INT8 model to `dest`; return the MatMuls kept in FP32 to meet the target."""
    graph = model.onnx
    if settings.preprocess:
        progress.stage("pre-processing the graph (shape inference, constant folding)")
        graph = dest.parent.parent / "preprocessed.onnx"
        int8.preprocess(model.onnx, graph)
    else:
        progress.stage("pre-processing skipped (--no-preprocess)")
    progress.stage(f"quantizing weights to INT8 ({settings.describe()})")
    _quantize_weights(graph, dest, settings=settings, keep_fp32=())
    if fp32 is None:
        progress.stage(f"no {model.tokenizer_name} beside the model: nothing measured")
        return []
    if settings.min_cosine <= 0:
        progress.stage("no accuracy target (--min-cosine 0): every MatMul quantised")
        return []
    progress.stage(f"checking accuracy on {CALIBRATION_SENTENCES} calibration sentences")
    return _meet_target(fp32, graph, dest, model=model, settings=settings, progress=progress)


def _target(model: OnnxModel, dest: Path, *, force: bool) -> Target:
    if model.version_dir is not None:  # folder in, folder out
        if dest.exists() and not dest.is_dir():
            raise InvalidArgument(f"{dest} is a file; a version folder goes to a folder")
        target = Target(onnx=dest / MODEL_FILE, version_dir=dest)
    elif dest.is_dir():
        target = Target(onnx=dest / model.onnx.name, version_dir=None)
    else:
        target = Target(onnx=dest, version_dir=None)
    if target.onnx.resolve() == model.onnx.resolve():
        raise InvalidArgument(f"{dest}: the output would overwrite the input")
    if target.onnx.exists() and not force:
        raise AlreadyExists(f"{target.onnx} exists; pass --force to replace it")
    return target


def _put_in_place(staged: Path, target: Target) -> None:
    """Rename what was built into place, so that a watching server never sees half of it:
    a new version folder appears whole; in an existing one each file is replaced whole."""
    if target.version_dir is not None and not target.version_dir.exists():
        staged.chmod(0o755)  # mkdtemp's folders are private; a model folder is for any reader
        staged.rename(target.version_dir)
        return
    target.onnx.parent.mkdir(parents=True, exist_ok=True)
    for item in sorted(staged.iterdir(), key=lambda p: p == staged / target.onnx.name):
        os.replace(item, target.onnx.parent / item.name)  # the model last


def _text_model(model: OnnxModel, onnx_path: Path) -> measure.TextModel | None:
    if model.tokenizer is None:
        return None
    pipeline = model.spec.text if model.spec and model.spec.text else TextPipeline()
    return measure.TextModel(onnx_path, tokenizer_path=model.tokenizer, pipeline=pipeline)


def _quantize_weights(
    graph: Path, dest: Path, *, settings: Settings, keep_fp32: Sequence[str]
) -> None:
    int8.quantize_weights(
        graph,
        dest,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        keep_fp32=keep_fp32,
    )


def _meet_target(
    fp32: measure.TextModel,
    graph: Path,
    partial: Path,
    *,
    model: OnnxModel,
    settings: Settings,
    progress: Progress,
) -> list[str]:
    """Keep MatMuls in FP32, most sensitive first, until the calibration set meets the target."""
    texts = measure.sentences(CALIBRATION_SENTENCES, clauses=CLAUSES, seed=CALIBRATION_SEED)
    reference = fp32.embed(texts)
    candidates = int8.after_gelu(graph)
    goal = settings.min_cosine + CALIBRATION_MARGIN
    kept: list[str] = []
    while True:
        worst = _worst_cosine(reference, _text_model(model, partial), texts)
        if worst >= goal:
            progress.note(f"worst cosine to FP32 {worst:.4f} >= {goal:.3f}")
            return kept
        if len(kept) == len(candidates):
            progress.note(f"no more MatMuls to keep in FP32; worst cosine stays {worst:.4f}")
            return kept
        kept.append(candidates[len(kept)])
        progress.note(
            f"worst cosine {worst:.4f} < {goal:.3f} on {len(texts)} calibration sentences: "
            f"keeping {kept[-1]} (after a GELU) in FP32"
        )
        _quantize_weights(graph, partial, settings=settings, keep_fp32=kept)


def _worst_cosine(
    reference: npt.NDArray[np.float32], model: measure.TextModel | None, texts: list[str]
) -> float:
    assert model is not None
    return float(measure.cosines(reference, model.embed(texts)).min())


def _measure(
    fp32: measure.TextModel,
    int8_model: measure.TextModel,
    report: QuantizeReport,
    *,
    sentences: int,
    progress: Progress,
) -> QuantizeReport:
    progress.stage(f"comparing embeddings over {sentences} sentences")
    texts = measure.sentences(sentences, clauses=CLAUSES, seed=EVALUATION_SEED)
    cos = measure.cosines(fp32.embed(texts), int8_model.embed(texts))
    accuracy = Accuracy(
        sentences=sentences, cosine_mean=float(cos.mean()), cosine_min=float(cos.min())
    )
    progress.stage(f"timing batches of {' and '.join(map(str, BATCH_SIZES))} on the CPU")
    speed = {}
    for batch in BATCH_SIZES:
        texts = measure.sentences(batch, clauses=measure.SPEED_SENTENCE_CLAUSES, seed=SPEED_SEED)
        total = TIMED_RUNS[batch]
        runs = progress.count(range(total), label=f"batch {batch}", total=total)
        fp32_speed, int8_speed = measure.speeds([fp32, int8_model], texts, runs=runs)
        speed[f"batch_{batch}"] = SpeedPair(fp32=fp32_speed, int8=int8_speed)
    return report.with_measurements(accuracy=accuracy, speed=speed)
