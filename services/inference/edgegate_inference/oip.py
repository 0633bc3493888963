"""Open Inference Protocol messages <-> the service's `InferRequest` / `InferResponse`.

Used by the gRPC servicer and by the NATS adapter (which accepts the same
`ModelInferRequest` bytes), so both decode tensors the same way. Inputs come
either all as `raw_input_contents` (what tritonclient sends) or all as typed
`contents`; outputs always go back raw, as Triton does (`encode_outputs`, which
the NATS adapter's `Reply` uses too).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from edgegate_common.errors import InvalidArgument
from edgegate_inference.core import datatypes
from edgegate_inference.core.types import Array, InferRequest, InferResponse
from edgegate_protos.oip import grpc_service_pb2 as pb

# Typed `InferTensorContents` field per datatype (FP16 has none: raw only).
_TYPED_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def decode_request(request: pb.ModelInferRequest) -> tuple[InferRequest, dict[str, str]]:
    """The domain request and the datatype each input was sent as."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents holds {len(raw)} buffers for {len(request.inputs)} inputs; "
            "send one per input, in order"
        )
    inputs: dict[str, Array] = {}
    sent: dict[str, str] = {}
    for index, tensor in enumerate(request.inputs):
        if tensor.name in inputs:
            raise InvalidArgument(f"input {tensor.name!r} appears twice")
        if raw and tensor.HasField("contents"):
            # Triton refuses the mix too: which of the two would be the data?
            raise InvalidArgument(
                f"input {tensor.name!r} has typed contents while the request sends "
                "raw_input_contents; send every input one way"
            )
        inputs[tensor.name] = decode_tensor(
            name=tensor.name,
            datatype=tensor.datatype,
            shape=list(tensor.shape),
            raw=raw[index] if raw else None,
            contents=tensor.contents,
        )
        sent[tensor.name] = tensor.datatype
    params = request.parameters
    return (
        InferRequest(
            model=request.model_name,
            version=request.model_version,
            inputs=inputs,
            id=request.id,
            outputs=tuple(o.name for o in request.outputs),
            priority=_int_param(params, "priority"),
            timeout_us=_int_param(params, "timeout"),
        ),
        sent,
    )


def decode_tensor(
    *,
    name: str,
    datatype: str,
    shape: list[int],
    raw: bytes | None,
    contents: pb.InferTensorContents | None = None,
) -> Array:
    """One tensor from raw little-endian bytes or, without them, typed contents."""
    if datatype not in datatypes.DATATYPES:
        raise InvalidArgument(
            f"input {name!r}: unknown datatype {datatype!r}; "
            f"expected one of {sorted(datatypes.DATATYPES)}"
        )
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {name!r}: shape {shape} has a negative dimension")
    count = math.prod(shape)
    if raw is not None:
        if datatype == "BYTES":
            return _shaped(datatypes.decode_bytes(raw, count=count, name=name), shape, name)
        expected = count * datatypes.element_size(datatype)
        if len(raw) != expected:
            raise InvalidArgument(
                f"input {name!r}: {datatype} {shape} needs {expected} bytes, got {len(raw)}"
            )
        return _shaped(np.frombuffer(raw, dtype=datatypes.NUMPY[datatype]), shape, name)
    field = _TYPED_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(f"input {name!r}: {datatype} data must come in raw_input_contents")
    values: Sequence[object] = getattr(contents or pb.InferTensorContents(), field)
    if len(values) != count:
        raise InvalidArgument(
            f"input {name!r}: shape {shape} holds {count} elements, contents hold {len(values)}"
        )
    if datatype == "BYTES":
        out = np.empty(count, dtype=np.object_)
        out[:] = list(values)
        return _shaped(out, shape, name)
    try:
        flat = np.array(values, dtype=datatypes.NUMPY[datatype])
    except OverflowError:
        raise InvalidArgument(f"input {name!r}: a value does not fit {datatype}") from None
    return _shaped(flat, shape, name)


def _shaped(flat: Array, shape: list[int], name: str) -> Array:
    """`flat` (of the right element count) in the request's shape.

    numpy refuses shapes past its limits (more than 64 dims; dims whose product
    overflows even when another dim is 0): the client's error, not ours.
    """
    try:
        return flat.reshape(shape)
    except ValueError as exc:
        raise InvalidArgument(
            f"input {name!r}: shape {shape} is not a valid tensor shape: {exc}"
        ) from None


def _int_param(params: Mapping[str, pb.InferParameter], key: str) -> int:
    if key not in params:
        return 0
    param = params[key]
    choice = param.WhichOneof("parameter_choice")
    if choice in ("int64_param", "uint64_param"):
        value = int(getattr(param, choice))
    else:
        raise InvalidArgument(f"parameter {key!r} must be an integer, got {choice}")
    if value < 0:
        raise InvalidArgument(f"parameter {key!r} must not be negative, got {value}")
    return value


class RawTensor(NamedTuple):
    """One output as it goes on the wire: raw little-endian bytes (BYTES length-prefixed)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes


def encode_outputs(response: InferResponse) -> Iterator[RawTensor]:
    """The response's outputs, in order, as the OIP response and the bus `Reply` carry them.

    The datatype is the model's declared one; else the array's own (an array
    of str or bytes is BYTES); else "" (a numpy type OIP has no name for).
    """
    for name, array in response.outputs.items():
        datatype = response.datatypes.get(name) or datatypes.FROM_NUMPY.get(array.dtype, "")
        if not datatype:
            datatype = "BYTES" if array.dtype.kind in "OSU" else ""
        if datatype == "BYTES":
            data = datatypes.encode_bytes(array)
        else:
            data = np.ascontiguousarray(array).tobytes()
        yield RawTensor(name=name, datatype=datatype, shape=array.shape, data=data)


def encode_response(response: InferResponse) -> pb.ModelInferResponse:
    reply = pb.ModelInferResponse(
        model_name=response.model, model_version=response.version, id=response.id
    )
    for tensor in encode_outputs(response):
        reply.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        reply.raw_output_contents.append(tensor.data)
    return reply
