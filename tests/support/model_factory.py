"""Small ONNX models the tests build on the fly, and repository folders for them.

Each is a real ONNX graph that ONNX Runtime loads and runs; they are tiny so
that tests are fast, and their outputs are easy to predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # what every onnxruntime in use reads

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "INT8": TensorProto.INT8,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "UINT8": TensorProto.UINT8,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _model(nodes: list[onnx.NodeProto], inputs: list, outputs: list, inits=()) -> bytes:  # type: ignore[no-untyped-def]
    graph = helper.make_graph(nodes, "edgegate-test", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def add_sub(*, datatype: str = "FP32", width: int = 16) -> bytes:
    """Triton's `simple` model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""
    t = ONNX_TYPES[datatype]
    shape = ["batch", width]
    return _model(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        [helper.make_tensor_value_info(n, t, shape) for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, t, shape) for n in ("OUTPUT0", "OUTPUT1")],
    )


def identity(datatypes: Sequence[str]) -> bytes:
    """`IN_<TYPE>` -> `OUT_<TYPE>` unchanged, one pair per datatype, shape [batch, n]."""
    nodes, inputs, outputs = [], [], []
    for dt in datatypes:
        nodes.append(helper.make_node("Identity", [f"IN_{dt}"], [f"OUT_{dt}"]))
        inputs.append(helper.make_tensor_value_info(f"IN_{dt}", ONNX_TYPES[dt], ["batch", "n"]))
        outputs.append(helper.make_tensor_value_info(f"OUT_{dt}", ONNX_TYPES[dt], ["batch", "n"]))
    return _model(nodes, inputs, outputs)


def scale(*, factor: float = 2.0) -> bytes:
    """Y = X * factor, X FP32 [batch, length] with a variable length."""
    k = numpy_helper.from_array(np.array(factor, dtype=np.float32), "factor")
    return _model(
        [helper.make_node("Mul", ["X", "factor"], ["Y"])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", "length"])],
        [k],
    )


def toy_encoder(*, vocab: int, hidden: int = 8, seed: int = 0) -> bytes:
    """A BERT-shaped toy: token embeddings looked up by id -> last_hidden_state."""
    table = np.random.default_rng(seed).standard_normal((vocab, hidden)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"])]
    return _model(nodes, *_encoder_io(hidden), [numpy_helper.from_array(table, "table")])


def slow_encoder(*, vocab: int, embed: int = 64, hidden: int = 512, layers: int = 24) -> bytes:
    """A BERT-shaped model that takes its time: embeddings, then `layers` matrix products."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((vocab, embed), np.float32), "table")]
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["h0"])]
    for i in range(layers):
        rows = embed if i == 0 else hidden
        weight = rng.standard_normal((rows, hidden), np.float32) / np.sqrt(rows)
        inits.append(numpy_helper.from_array(weight.astype(np.float32), f"w{i}"))
        out = "last_hidden_state" if i == layers - 1 else f"h{i + 1}"
        nodes.append(helper.make_node("MatMul", [f"h{i}", f"w{i}"], [out]))
    return _model(nodes, *_encoder_io(hidden), inits)


def _encoder_io(hidden: int) -> tuple[list, list]:  # type: ignore[type-arg]
    """A text encoder's inputs (token ids, attention mask) and its token states."""
    int64 = TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("input_ids", int64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", int64, ["batch", "seq"]),
    ]
    states = TensorProto.FLOAT, ["batch", "seq", hidden]
    return inputs, [helper.make_tensor_value_info("last_hidden_state", *states)]


def write_model(
    repo: Path, name: str, *, versions: Sequence[int] = (1,), onnx_bytes: bytes, config: str = ""
) -> Path:
    """`<repo>/<name>/<v>/model.onnx` for each version, and `config.yaml` if given."""
    model_dir = repo / name
    for version in versions:
        (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
        (model_dir / str(version) / "model.onnx").write_bytes(onnx_bytes)
    if config:
        (model_dir / "config.yaml").write_text(config)
    return model_dir
