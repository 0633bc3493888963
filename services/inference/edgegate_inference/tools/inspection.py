"""`edgegate model inspect`: what a model takes and gives, as the service will see it.

Datatypes are shown by their Open Inference Protocol names (FP32, INT64,
BYTES), the names clients send, rather than ONNX's `tensor(float)`. Only the
graph's header is read: external weights are never loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from edgegate_common.errors import InvalidArgument, NotFound
from edgegate_inference.core.datatypes import FROM_NUMPY
from edgegate_inference.core.spec import MODEL_FILE, ModelSpec, TensorSpec
from edgegate_inference.tools.files import is_model_dir, load_spec, locate, versions


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str
    shape: tuple[int | str, ...]  # a name for a named dynamic dimension, -1 for an unnamed one


@dataclass(frozen=True)
class OnnxSummary:
    path: Path
    size_bytes: int
    opsets: dict[str, int]  # domain ("" is the default ONNX domain) -> version
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    producer: str
    metadata: dict[str, str]


def summarize(path: Path) -> OnnxSummary:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's decode errors have no common public base
        raise InvalidArgument(f"{path}: not an ONNX model ({exc})") from None
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    return OnnxSummary(
        path=path,
        size_bytes=path.stat().st_size,
        opsets={op.domain: op.version for op in model.opset_import},
        inputs=tuple(_tensor(v) for v in graph.input if v.name not in initializers),
        outputs=tuple(_tensor(v) for v in graph.output),
        producer=" ".join(p for p in (model.producer_name, model.producer_version) if p),
        metadata={prop.key: prop.value for prop in model.metadata_props},
    )


def describe(path: Path) -> str:
    """The report for a model.onnx, a version folder or a whole model folder."""
    if not path.exists():
        raise NotFound(f"{path}: no such file or folder")
    if is_model_dir(path):
        return _describe_model_dir(path)
    return _describe_onnx(summarize(locate(path).onnx))


def _describe_model_dir(model_dir: Path) -> str:
    spec = load_spec(model_dir) or ModelSpec(name=model_dir.name)
    found = versions(model_dir)
    lines = [f"model {spec.name} ({model_dir})", *_spec_lines(spec)]
    served = spec.version_policy.select(found)
    lines.append(f"  versions: {_ints(found) or 'none'} (serves {_ints(served) or 'none'})")
    for version in found:
        onnx_path = model_dir / str(version) / MODEL_FILE
        lines.append("")
        if onnx_path.is_file():
            lines.append(f"version {version}: {_describe_onnx(summarize(onnx_path))}")
        else:
            lines.append(f"version {version}: no {MODEL_FILE}")
    return "\n".join(lines)


def _spec_lines(spec: ModelSpec) -> list[str]:
    lines = [f"  max_batch_size: {spec.max_batch_size}"]
    if spec.dynamic_batching is not None:
        batching = spec.dynamic_batching
        lines.append(
            f"  dynamic batching: max_queue_delay_us {batching.max_queue_delay_us}, "
            f"max_queue_size {batching.queue_policy.max_queue_size or 'unbounded'}"
        )
    lines.append(f"  instances: {spec.instances.count}")
    lines.append(f"  execution providers: {', '.join(p.name for p in spec.execution_providers)}")
    if spec.text is not None:
        text = spec.text
        lines.append(
            f"  text: {text.input} -> {text.output} ({text.tokenizer}, max_length "
            f"{text.max_length}, {text.pooling} pooling"
            f"{', normalized' if text.normalize else ''}"
            f"{f', from {text.token_output}' if text.token_output else ''})"
        )
    lines += _tensor_lines("inputs", [_from_spec(t) for t in spec.inputs])
    lines += _tensor_lines("outputs", [_from_spec(t) for t in spec.outputs])
    if spec.warmup:
        lines.append(f"  warmup: {', '.join(f'batch {w.batch_size}' for w in spec.warmup)}")
    return lines


def _describe_onnx(summary: OnnxSummary) -> str:
    opsets = ", ".join(
        f"opset {v}" if not d else f"{d} {v}" for d, v in sorted(summary.opsets.items())
    )
    lines = [f"{summary.path}", f"  size: {summary.size_bytes / 1e6:.1f} MB; {opsets}"]
    if summary.producer:
        lines.append(f"  producer: {summary.producer}")
    lines += _tensor_lines("inputs", list(summary.inputs))
    lines += _tensor_lines("outputs", list(summary.outputs))
    lines += [f"  {key}: {value}" for key, value in sorted(summary.metadata.items())]
    return "\n".join(lines)


def _tensor_lines(title: str, tensors: list[TensorInfo]) -> list[str]:
    if not tensors:
        return []
    name_width = max(len(t.name) for t in tensors)
    type_width = max(len(t.datatype) for t in tensors)
    rows = [
        f"    {t.name.ljust(name_width)}  {t.datatype.ljust(type_width)}  "
        f"[{', '.join(map(str, t.shape))}]"
        for t in tensors
    ]
    return [f"  {title}:", *rows]


def _tensor(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor = value.type.tensor_type
    shape = tuple(
        d.dim_param or (d.dim_value if d.HasField("dim_value") else -1) for d in tensor.shape.dim
    )
    return TensorInfo(name=value.name, datatype=_datatype(tensor.elem_type), shape=shape)


def _datatype(elem_type: int) -> str:
    try:
        return FROM_NUMPY[onnx.helper.tensor_dtype_to_np_dtype(elem_type)]
    except (KeyError, ValueError):  # bfloat16, float8...: no OIP name
        return str(onnx.TensorProto.DataType.Name(elem_type))


def _from_spec(tensor: TensorSpec) -> TensorInfo:
    return TensorInfo(name=tensor.name, datatype=tensor.datatype, shape=tensor.dims)


def _ints(values: list[int]) -> str:
    return ", ".join(map(str, values))
