"""Measuring a text model: embeddings, their agreement, and how fast they come.

Both models of a comparison see the same generated sentences through the
service's own text pipeline (`core.text`), so the figures are those a client
of the service would see, less the network. Times cover the ONNX Runtime
call only: tokenising costs the same for both models and would blur the
difference that quantisation makes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]

from edgegate_inference.core.spec import TextPipeline
from edgegate_inference.core.text import TextEncoder

# Plain English clauses ("the busy team checks the report near the station"):
# real-looking text, as a bag of stop words would understate how well INT8
# holds up on what people send. Every word is one token in BERT's vocabulary.
_ADJECTIVES = (
    "new old large small quick quiet bright dark local public early late simple strong busy "
    "cold warm green final main young happy heavy clean"
)
_NOUNS = (
    "system server user model river city market team report engine network student teacher "
    "doctor company window garden price storm train road computer phone book letter child "
    "bank policy game station village car ship song film plan"
)
_VERBS = (
    "sends reads finds builds moves checks opens closes follows changes watches carries helps "
    "needs loses keeps starts stops writes sells"
)
_PLACES = "in near behind after before under over with from at"
_JOINS = (", and", ", while", " because", ", but", " so")

SPEED_SENTENCE_CLAUSES = 3  # about 32 tokens


def sentences(count: int, *, clauses: int | tuple[int, int], seed: int = 0) -> list[str]:
    """`count` reproducible sentences of `clauses` clauses (or a number drawn from that range)."""
    rng = np.random.default_rng(seed)
    low, high = (clauses, clauses) if isinstance(clauses, int) else clauses
    return [_sentence(rng, int(n)) for n in rng.integers(low, high + 1, size=count)]


def _sentence(rng: np.random.Generator, clauses: int) -> str:
    adjectives, nouns, verbs, places = (
        words.split() for words in (_ADJECTIVES, _NOUNS, _VERBS, _PLACES)
    )
    text = ""
    for i in range(clauses):
        adjective, subject, verb = rng.choice(adjectives), rng.choice(nouns), rng.choice(verbs)
        thing, place, where = rng.choice(nouns), rng.choice(places), rng.choice(nouns)
        clause = f"the {adjective} {subject} {verb} the {thing} {place} the {where}"
        text += clause if i == 0 else f"{rng.choice(_JOINS)} {clause}"
    return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class Speed:
    sentences_per_s: float
    p50_ms: float


class TextModel:
    """One ONNX model on the CPU behind the service's text pipeline."""

    def __init__(self, onnx_path: Path, *, tokenizer_path: Path, pipeline: TextPipeline) -> None:
        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        names = [i.name for i in self.session.get_inputs()]
        self.encoder = TextEncoder(pipeline, tokenizer_path=tokenizer_path, model_inputs=names)
        self._output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, npt.NDArray[np.int64]]) -> dict[str, npt.NDArray[np.float32]]:
        return dict(zip(self._output_names, self.session.run(None, feeds), strict=True))

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> npt.NDArray[np.float32]:
        """The pipeline's output for `texts`, computed `batch_size` at a time."""
        parts = []
        for start in range(0, len(texts), batch_size):
            feeds = self.encoder.tokenize(texts[start : start + batch_size])
            parts.append(self.encoder.outputs(self.run(feeds), feeds)[self.encoder.pipeline.output])
        return np.concatenate(parts)


def speeds(
    models: Sequence[TextModel], texts: Sequence[str], *, runs: Iterable[int], warmup: int = 2
) -> list[Speed]:
    """Time each model on the batch `texts`, one call per item of `runs`.

    The models take turns call by call, so that load from elsewhere on the machine
    falls on all of them alike; the median call sets both figures for the same reason.
    """
    feeds = [m.encoder.tokenize(texts) for m in models]
    for _ in range(warmup):
        for model, feed in zip(models, feeds, strict=True):
            model.run(feed)
    seconds: list[list[float]] = [[] for _ in models]
    for _ in runs:
        for model, feed, times in zip(models, feeds, seconds, strict=True):
            start = time.perf_counter()
            model.run(feed)
            times.append(time.perf_counter() - start)
    medians = [statistics.median(times) for times in seconds]
    return [Speed(sentences_per_s=len(texts) / m, p50_ms=m * 1000) for m in medians]


def cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Row-wise cosine similarity (rows need not be normalised)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dots = (a64 * b64).sum(axis=-1)
    result: npt.NDArray[np.float64] = dots / (
        np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
    )
    return result
