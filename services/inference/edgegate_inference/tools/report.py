"""What `edgegate model quantize` found: a table for people, JSON for scripts.

The JSON keeps base units and plain names (`fp32_bytes`, `p50_ms`) so that a
CI job can gate on `accuracy.cosine_min` without parsing the table.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from edgegate_inference.tools.measure import Speed


@dataclass(frozen=True)
class Settings:
    """How the weights were quantised (INT8, dynamic, constant-weight MatMuls only)."""

    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: for CPUs without VNNI, at some accuracy
    preprocess: bool = True  # ONNX Runtime's graph optimisation before quantising
    min_cosine: float = 0.98  # worst case on calibration sentences; 0: no target

    def describe(self) -> str:
        parts = ["per-channel" if self.per_channel else "per-tensor"]
        parts += ["7-bit range"] if self.reduce_range else []
        parts += ["pre-processed graph"] if self.preprocess else []
        return ", ".join(parts)


@dataclass(frozen=True)
class Accuracy:
    """Cosine similarity of the pipeline's output, INT8 against FP32, per sentence."""

    sentences: int
    cosine_mean: float
    cosine_min: float


@dataclass(frozen=True)
class SpeedPair:
    fp32: Speed
    int8: Speed


@dataclass(frozen=True)
class QuantizeReport:
    source: str
    output: str
    settings: Settings
    fp32_bytes: int
    int8_bytes: int
    kept_fp32: tuple[str, ...] = ()  # MatMuls left in FP32 to meet the accuracy target
    accuracy: Accuracy | None = None
    speed: Mapping[str, SpeedPair] = field(default_factory=dict)  # "batch_1", "batch_32"
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    onnxruntime: str = field(default_factory=lambda: metadata.version("onnxruntime"))

    @property
    def size_ratio(self) -> float:
        return self.int8_bytes / self.fp32_bytes

    def with_measurements(
        self, *, accuracy: Accuracy, speed: Mapping[str, SpeedPair]
    ) -> QuantizeReport:
        return dataclasses.replace(self, accuracy=accuracy, speed=dict(speed))

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["size_ratio"] = round(self.size_ratio, 4)
        return data

    def table(self) -> str:
        rows = [
            ("", "FP32", "INT8", "INT8/FP32"),
            ("size (MB)", _mb(self.fp32_bytes), _mb(self.int8_bytes), f"{self.size_ratio:.1%}"),
        ]
        for name, pair in self.speed.items():
            label = name.replace("_", " ")
            ratio = pair.int8.sentences_per_s / pair.fp32.sentences_per_s
            rows.append(
                (
                    f"{label}: sentences/s",
                    f"{pair.fp32.sentences_per_s:.1f}",
                    f"{pair.int8.sentences_per_s:.1f}",
                    f"x{ratio:.2f}",
                )
            )
            rows.append(
                (f"{label}: p50 ms", f"{pair.fp32.p50_ms:.2f}", f"{pair.int8.p50_ms:.2f}", "")
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(
                [row[0].ljust(widths[0])]
                + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            )
            for row in rows
        ]
        kept = f"; {len(self.kept_fp32)} MatMul(s) kept in FP32" if self.kept_fp32 else ""
        lines.append(f"weights: INT8, {self.settings.describe()}{kept}")
        if self.accuracy is not None:
            a = self.accuracy
            lines.append(
                f"cosine INT8 vs FP32 over {a.sentences} sentences: "
                f"mean {a.cosine_mean:.4f}, min {a.cosine_min:.4f}"
            )
        if self.speed:
            lines.append(
                f"speed: ONNX Runtime {self.onnxruntime} on {self.cpu_count} CPUs, "
                "model call only, sentences of 32 tokens"
            )
        return "\n".join(line.rstrip() for line in lines)


def _mb(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.1f}"
