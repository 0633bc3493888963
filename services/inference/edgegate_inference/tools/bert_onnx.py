"""A BERT encoder's ONNX graph, written node by node from its weights: no PyTorch.

The graph is the one the service expects of a text encoder: `input_ids`,
`attention_mask` and `token_type_ids` (INT64, [batch, seq], both dynamic) in,
`last_hidden_state` (FP32, [batch, seq, hidden]) out; pooling stays outside.

It uses only standard ONNX operators, spelt the way ONNX Runtime's graph
optimiser recognises them, so that the runtime does the fusing:
LayerNormalization (after an Add: SkipLayerNormalization), GELU written as
`x * (erf(x / sqrt 2) + 1) * 0.5` (Gelu, then BiasGelu), MatMul + Add with
the weight transposed once here rather than at every call. Another runtime
(TensorRT, say) reads the same standard operators. The attention scale
1/sqrt(head_size) is folded into the query weights, so no graph node scales
a [batch, heads, seq, seq] tensor.

Weights keep their checkpoint names, with `.weight` matrices stored
transposed ([in, out], as MatMul takes them) and the query's scaled; node
names read `layer.3.output.dense`, which is what `edgegate model quantize`
prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgegate_inference.core.text import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS
from edgegate_inference.tools.bert import MASKED_SCORE, Bert

OUTPUT_NAME = "last_hidden_state"
INPUT_NAMES = (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)


def write(bert: Bert, onnx_path: Path, *, opset: int) -> None:
    """Write `bert` as a token-states graph to `onnx_path` (one self-contained file)."""
    onnx.save(build(bert, opset=opset), str(onnx_path))


def build(bert: Bert, *, opset: int) -> onnx.ModelProto:
    """The token-states graph of `bert` as an in-memory model."""
    g = _Graph(bert)
    x = g.embeddings()
    mask = g.mask_bias()
    for i in range(bert.config.num_layers):
        x = g.layer(i, x, mask)
    g.nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name="output"))
    graph = helper.make_graph(
        g.nodes,
        "bert_token_states",
        inputs=[
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
            for name in INPUT_NAMES
        ],
        outputs=[
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, ["batch", "seq", bert.config.hidden_size]
            )
        ],
        initializer=g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    # The oldest IR version that has the opset, not onnx's newest: older runtimes read it.
    ir_version = helper.find_min_ir_version_for(opsets)
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)


@dataclass
class _Graph:
    """Nodes and initializers as they are added; each helper returns its output's name."""

    bert: Bert
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _constants: dict[str, str] = field(default_factory=dict)

    def op(self, op_type: str, inputs: list[str], *, name: str, **attrs: Any) -> str:
        output = f"{name}/out"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output

    def tensor(self, name: str, value: npt.NDArray[np.generic]) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def constant(self, value: float | int | list[int]) -> str:
        """A shared initializer: a float is FP32, an int or a list INT64."""
        key = repr(value)
        if key not in self._constants:
            dtype = np.float32 if isinstance(value, float) else np.int64
            array = np.array(value, dtype=dtype)
            self._constants[key] = self.tensor(f"const.{len(self._constants)}", array)
        return self._constants[key]

    def weight(self, name: str) -> npt.NDArray[np.float32]:
        return self.bert.weights[name]

    def table(self, name: str) -> str:
        """An embedding table, as the checkpoint has it."""
        return self.tensor(name, self.weight(name))

    def embeddings(self) -> str:
        tables = "embeddings.{}_embeddings.weight"
        word = self.op("Gather", [self.table(tables.format("word")), INPUT_IDS], name="word")
        kind = self.op(
            "Gather", [self.table(tables.format("token_type")), TOKEN_TYPE_IDS], name="token_type"
        )
        position = self.op(
            "Gather", [self.table(tables.format("position")), self.positions()], name="position"
        )
        summed = self.op("Add", [word, kind], name="embeddings.add")
        summed = self.op("Add", [summed, position], name="embeddings.add_position")
        return self.layer_norm(summed, "embeddings.LayerNorm")

    def positions(self) -> str:
        """[batch, seq]: 0, 1, 2... in every row, computed elementwise from `input_ids` so
        that shape inference knows it is [batch, seq] (a Range or a Slice by the input's
        length leaves the length unknown, and ONNX Runtime then fuses no residual Add
        into SkipLayerNormalization)."""
        zero = self.op("Mul", [INPUT_IDS, self.constant(0)], name="positions.zero")
        one = self.op("Add", [zero, self.constant(1)], name="positions.one")
        count = self.op("CumSum", [one, self.constant(1)], name="positions.count")
        return self.op("Sub", [count, self.constant(1)], name="positions.index")

    def mask_bias(self) -> str:
        """[batch, 1, 1, seq]: 0 for a token, MASKED_SCORE for padding, added to the scores."""
        mask = self.op("Unsqueeze", [ATTENTION_MASK, self.constant([1, 2])], name="mask.expand")
        mask = self.op("Cast", [mask], name="mask.float", to=TensorProto.FLOAT)
        hidden = self.op("Sub", [self.constant(1.0), mask], name="mask.invert")
        return self.op("Mul", [hidden, self.constant(MASKED_SCORE)], name="mask.bias")

    def layer(self, index: int, x: str, mask: str) -> str:
        prefix = f"layer.{index}"
        attended = self.attention(prefix, x, mask)
        x = self.op("Add", [attended, x], name=f"{prefix}.attention.residual")
        x = self.layer_norm(x, f"{prefix}.attention.output.LayerNorm")
        inner = self.linear(x, f"{prefix}.intermediate.dense")
        inner = self.gelu(inner, f"{prefix}.intermediate.gelu")
        out = self.linear(inner, f"{prefix}.output.dense")
        x = self.op("Add", [out, x], name=f"{prefix}.output.residual")
        return self.layer_norm(x, f"{prefix}.output.LayerNorm")

    def attention(self, prefix: str, x: str, mask: str) -> str:
        config = self.bert.config
        heads = [0, 0, config.num_heads, config.head_size]  # 0: keep batch and seq
        scale = 1.0 / math.sqrt(config.head_size)
        split = {}
        for part, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
            name = f"{prefix}.attention.self.{part}"
            y = self.linear(x, name, scale=scale if part == "query" else 1.0)
            y = self.op("Reshape", [y, self.constant(heads)], name=f"{name}.heads")
            split[part] = self.op("Transpose", [y], name=f"{name}.transpose", perm=perm)
        name = f"{prefix}.attention.self"
        scores = self.op("MatMul", [split["query"], split["key"]], name=f"{name}.scores")
        scores = self.op("Add", [scores, mask], name=f"{name}.mask")
        probs = self.op("Softmax", [scores], name=f"{name}.softmax", axis=-1)
        context = self.op("MatMul", [probs, split["value"]], name=f"{name}.context")
        context = self.op("Transpose", [context], name=f"{name}.merge", perm=[0, 2, 1, 3])
        merged = self.constant([0, 0, config.hidden_size])
        context = self.op("Reshape", [context, merged], name=f"{name}.merge_heads")
        return self.linear(context, f"{prefix}.attention.output.dense")

    def linear(self, x: str, name: str, *, scale: float = 1.0) -> str:
        source = "encoder." + name
        weight = self.weight(f"{source}.weight").T * np.float32(scale)  # [in, out]
        bias = self.weight(f"{source}.bias") * np.float32(scale)
        y = self.op("MatMul", [x, self.tensor(f"{source}.weight", weight)], name=name)
        return self.op("Add", [y, self.tensor(f"{source}.bias", bias)], name=f"{name}.bias")

    def gelu(self, x: str, name: str) -> str:
        scaled = self.op("Div", [x, self.constant(math.sqrt(2.0))], name=f"{name}.div")
        erf = self.op("Erf", [scaled], name=f"{name}.erf")
        shifted = self.op("Add", [erf, self.constant(1.0)], name=f"{name}.add")
        product = self.op("Mul", [x, shifted], name=f"{name}.mul")
        return self.op("Mul", [product, self.constant(0.5)], name=f"{name}.half")

    def layer_norm(self, x: str, name: str) -> str:
        source = name if name.startswith("embeddings") else "encoder." + name
        scale = self.tensor(f"{source}.weight", self.weight(f"{source}.weight"))
        bias = self.tensor(f"{source}.bias", self.weight(f"{source}.bias"))
        eps = self.bert.config.layer_norm_eps
        return self.op("LayerNormalization", [x, scale, bias], name=name, axis=-1, epsilon=eps)
