"""INT8 weights with ONNX Runtime's dynamic quantisation, and where not to use them.

Dynamic quantisation stores constant weights as INT8 and quantises each
activation on the fly with one scale per tensor, so it needs no calibration
data. Two choices decide how close the result stays to FP32 on MiniLM:

- Weight scales per output channel, not per tensor: cosine to FP32 ~0.99
  instead of ~0.92 on average (`edgegate model quantize --per-tensor` shows it).
- The MatMul after each GELU (a feed-forward block's down-projection) reads
  activations with outliers that a single INT8 scale cannot hold. Those are
  the MatMuls `after_gelu` finds, in graph order, for the caller to keep in
  FP32 one by one until its accuracy target is met; the first layer's is
  the one that matters most.

Only MatMuls with a constant weight are quantised; attention's
activation-by-activation MatMuls stay FP32 (ONNX Runtime's default for
dynamic quantisation, stated here so that it stays so).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
from onnxruntime.quantization import (  # type: ignore[import-untyped]
    QuantType,
    quantize_dynamic,
)
from onnxruntime.quantization.shape_inference import (  # type: ignore[import-untyped]
    quant_pre_process,
)

_GELU_OPS = frozenset({"Gelu", "FastGelu", "BiasGelu", "Erf"})  # Erf: GELU spelt out
_GELU_SEARCH_DEPTH = 3  # x * 0.5 * (1 + erf(x / sqrt 2)): Erf is three nodes up


def preprocess(source: Path, dest: Path) -> None:
    """ONNX Runtime's recommended step before quantising: shape inference, constant
    folding, basic fusions. Symbolic shape inference gives up on the PyTorch
    exporter's graphs (and is only needed for static quantisation), so it is skipped."""
    quant_pre_process(source, dest, skip_symbolic_shape=True)


def quantize_weights(
    source: Path,
    dest: Path,
    *,
    per_channel: bool,
    reduce_range: bool,
    keep_fp32: Sequence[str] = (),
) -> None:
    quantize_dynamic(
        source,
        dest,
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(keep_fp32),
        extra_options={"MatMulConstBOnly": True},
    )


def after_gelu(model_path: Path) -> list[str]:
    """Names of the constant-weight MatMuls that read a GELU's output, in graph order."""
    model = onnx.load(str(model_path), load_external_data=False)
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}

    def fed_by_gelu(tensor: str, depth: int) -> bool:
        node = producer.get(tensor)
        if node is None:
            return False
        if node.op_type in _GELU_OPS:
            return True
        return depth > 0 and any(
            fed_by_gelu(name, depth - 1) for name in node.input if name not in constants
        )

    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and node.input[1] in constants
        and fed_by_gelu(node.input[0], _GELU_SEARCH_DEPTH)
    ]
