"""Tensors on the wire: OIP request decoding, response encoding, and input checks.

Requests are built with edgegate's own protos; responses are read back with
tritonclient's helpers and protos, as a Triton client would read them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc  # type: ignore[import-untyped,unused-ignore]
from tritonclient.grpc import service_pb2 as tc_service  # type: ignore[import-untyped,unused-ignore]
from tritonclient.utils import (  # type: ignore[import-untyped,unused-ignore]
    deserialize_bytes_tensor,
    serialize_byte_tensor,
    triton_to_np_dtype,
)

from edgegate_common.errors import InvalidArgument
from edgegate_inference.core import datatypes
from edgegate_inference.core.spec import TensorSpec
from edgegate_inference.core.types import Array, InferResponse
from edgegate_inference.core.validation import check_inputs, check_outputs
from edgegate_inference.oip import decode_request, encode_response
from edgegate_protos.oip import grpc_service_pb2 as pb

NUMERIC = (
    "BOOL",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "FP16",
    "FP32",
    "FP64",
)


def sample(datatype: str, shape: tuple[int, ...], seed: int = 0) -> Array:
    rng = np.random.default_rng(seed)
    dtype = datatypes.NUMPY[datatype]
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype.name)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(size=shape).astype(dtype)


def raw_request(*tensors: tuple[str, str, list[int], bytes]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", model_version="1", id="r1")
    for name, datatype, shape, raw in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    return request


def typed_request(name: str, datatype: str, shape: list[int]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    return request


def decode_one(request: pb.ModelInferRequest) -> Array:
    decoded, _ = decode_request(request)
    (array,) = decoded.inputs.values()
    return array


# -- decoding raw_input_contents (what tritonclient sends) ----------------------


@pytest.mark.parametrize("datatype", NUMERIC)
def test_raw_contents_decode_for_every_fixed_size_datatype(datatype: str) -> None:
    array = sample(datatype, (2, 3))
    request = raw_request(("x", datatype, [2, 3], array.tobytes()))
    decoded, sent = decode_request(request)
    out = decoded.inputs["x"]
    assert out.dtype == datatypes.NUMPY[datatype]
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, array)
    assert sent == {"x": datatype}


def test_raw_bytes_are_length_prefixed_elements() -> None:
    items = [b"", b"a", "h\u00e9llo".encode(), b"\x00\xff\x00"]
    array = np.array(items, dtype=np.object_).reshape(2, 2)
    raw = serialize_byte_tensor(array).item()  # tritonclient's own serialisation
    out = decode_one(raw_request(("t", "BYTES", [2, 2], raw)))
    assert out.dtype == np.object_
    assert out.shape == (2, 2)
    assert out.tolist() == [[b"", b"a"], ["h\u00e9llo".encode(), b"\x00\xff\x00"]]
    # Our encoder writes the same bytes.
    assert datatypes.encode_bytes(array) == raw


def test_raw_request_carries_its_metadata_and_parameters() -> None:
    request = raw_request(("x", "INT32", [1], struct.pack("<i", 7)))
    request.outputs.add(name="y")
    request.parameters["priority"].int64_param = 2
    request.parameters["timeout"].uint64_param = 5000
    decoded, _ = decode_request(request)
    assert (decoded.model, decoded.version, decoded.id) == ("m", "1", "r1")
    assert decoded.outputs == ("y",)
    assert (decoded.priority, decoded.timeout_us) == (2, 5000)
    assert decoded.inputs["x"].tolist() == [7]


def test_no_parameters_mean_default_priority_and_timeout() -> None:
    decoded, _ = decode_request(raw_request(("x", "INT32", [1], bytes(4))))
    assert (decoded.priority, decoded.timeout_us) == (0, 0)
    assert decoded.outputs == ()


def test_an_empty_tensor_decodes() -> None:
    assert decode_one(raw_request(("x", "FP32", [0, 4], b""))).shape == (0, 4)
    assert decode_one(raw_request(("x", "BYTES", [2, 0], b""))).shape == (2, 0)


# -- decoding typed contents --------------------------------------------------

TYPED_CASES: list[tuple[str, str, list[object], Callable[[Array], object]]] = [
    ("INT32", "int_contents", [1, -2, 3, 2**31 - 1], lambda a: a.tolist()),
    ("INT8", "int_contents", [-128, 0, 5, 127], lambda a: a.tolist()),
    ("INT64", "int64_contents", [2**62, -(2**63), 0, 9], lambda a: a.tolist()),
    ("UINT8", "uint_contents", [0, 1, 254, 255], lambda a: a.tolist()),
    ("UINT64", "uint64_contents", [2**64 - 1, 0, 1, 2], lambda a: a.tolist()),
    ("FP32", "fp32_contents", [0.5, -1.25, 3.0, 1e-3], lambda a: a.tolist()),
    ("FP64", "fp64_contents", [0.1, -1e300, 3.0, 2.5], lambda a: a.tolist()),
    ("BOOL", "bool_contents", [True, False, False, True], lambda a: a.tolist()),
    ("BYTES", "bytes_contents", [b"ab", b"", b"\x00", b"z"], lambda a: a.tolist()),
]


@pytest.mark.parametrize(("datatype", "field", "values", "listed"), TYPED_CASES)
def test_typed_contents_decode(
    datatype: str, field: str, values: list[object], listed: Callable[[Array], object]
) -> None:
    request = typed_request("x", datatype, [2, 2])
    getattr(request.inputs[0].contents, field).extend(values)
    out = decode_one(request)
    assert out.dtype == datatypes.NUMPY[datatype]
    assert out.shape == (2, 2)
    expected = np.array(values, dtype=datatypes.NUMPY[datatype]).reshape(2, 2)
    assert listed(out) == listed(expected)


# -- what decoding refuses --------------------------------------------------------


def _with_param(key: str, setter: Callable[[pb.InferParameter], None]) -> pb.ModelInferRequest:
    request = raw_request(("x", "INT32", [1], bytes(4)))
    setter(request.parameters[key])
    return request


def _twice() -> pb.ModelInferRequest:
    return raw_request(("x", "INT32", [1], bytes(4)), ("x", "INT32", [1], bytes(4)))


def _extra_buffer() -> pb.ModelInferRequest:
    request = raw_request(("x", "INT32", [1], bytes(4)))
    request.raw_input_contents.append(bytes(4))
    return request


def _typed_count() -> pb.ModelInferRequest:
    request = typed_request("x", "INT32", [2, 2])
    request.inputs[0].contents.int_contents.extend([1, 2, 3])
    return request


def _fp16_typed() -> pb.ModelInferRequest:
    request = typed_request("half", "FP16", [1])
    request.inputs[0].contents.fp32_contents.append(1.0)
    return request


def _out_of_range() -> pb.ModelInferRequest:
    request = typed_request("x", "UINT8", [1])
    request.inputs[0].contents.uint_contents.append(300)
    return request


BAD_REQUESTS: dict[str, tuple[Callable[[], pb.ModelInferRequest], str]] = {
    "short raw": (
        lambda: raw_request(("x", "FP32", [2, 3], bytes(23))),
        r"input 'x': FP32 \[2, 3\] needs 24 bytes, got 23",
    ),
    "long raw": (
        lambda: raw_request(("x", "INT64", [2], bytes(17))),
        r"input 'x': INT64 \[2\] needs 16 bytes, got 17",
    ),
    "cut-off BYTES length": (
        lambda: raw_request(("t", "BYTES", [2], struct.pack("<I", 1) + b"a" + b"\x02\x00")),
        r"input 't': BYTES element 1 has a cut-off length",
    ),
    "BYTES element past the end": (
        lambda: raw_request(("t", "BYTES", [1], struct.pack("<I", 9) + b"abc")),
        r"input 't': BYTES element 0 claims 9 bytes but only 3 remain",
    ),
    "BYTES count": (
        lambda: raw_request(("t", "BYTES", [3], struct.pack("<I", 1) + b"a" + bytes(4))),
        r"input 't': shape holds 3 BYTES elements but the data holds 2",
    ),
    "negative dim": (
        lambda: raw_request(("x", "FP32", [-1, 2], b"")),
        r"input 'x': shape \[-1, 2\] has a negative dimension",
    ),
    "unknown datatype": (
        lambda: raw_request(("x", "FLOAT32", [1], bytes(4))),
        r"input 'x': unknown datatype 'FLOAT32'",
    ),
    "FP16 typed": (_fp16_typed, r"input 'half': FP16 data must come in raw_input_contents"),
    "raw buffer count": (_extra_buffer, r"raw_input_contents holds 2 buffers for 1 inputs"),
    "duplicated input": (_twice, r"input 'x' appears twice"),
    "typed count": (_typed_count, r"input 'x': shape \[2, 2\] holds 4 elements, contents hold 3"),
    "typed out of range": (_out_of_range, r"input 'x': a value does not fit UINT8"),
    "string priority": (
        lambda: _with_param("priority", lambda p: setattr(p, "string_param", "high")),
        r"parameter 'priority' must be an integer, got string_param",
    ),
    "float timeout": (
        lambda: _with_param("timeout", lambda p: setattr(p, "double_param", 1.5)),
        r"parameter 'timeout' must be an integer",
    ),
    "negative priority": (
        lambda: _with_param("priority", lambda p: setattr(p, "int64_param", -1)),
        r"parameter 'priority' must not be negative",
    ),
    "too many dims": (
        lambda: raw_request(("x", "FP32", [1] * 70, bytes(4))),
        r"input 'x': shape \[1, 1, .*\] is not a valid tensor shape",
    ),
    "empty but huge": (
        lambda: raw_request(("x", "FP32", [0, 2**62, 2**62], b"")),
        r"input 'x': shape \[0, 4611686018427387904, .*\] is not a valid tensor shape",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_malformed_request_is_invalid_and_says_why(case: str) -> None:
    build, message = BAD_REQUESTS[case]
    with pytest.raises(InvalidArgument, match=message):
        decode_request(build())


def test_arbitrary_requests_decode_or_are_invalid_never_crash() -> None:
    """A deterministic fuzz: whatever arrives, only InvalidArgument comes out."""
    rng = np.random.default_rng(20240613)
    names = ["a", "b", "a", ""]
    kinds = [*datatypes.DATATYPES, "FLOAT", "", "TYPE_FP32", "bytes"]
    dims = [0, 1, 1, 2, 3, -1, 2**31, 2**62, 2**63 - 1]
    fields = list(pb.InferTensorContents.DESCRIPTOR.fields_by_name)
    decoded = 0
    for _ in range(3000):
        request = pb.ModelInferRequest()
        raw_mode = rng.random() < 0.6
        for _ in range(int(rng.integers(0, 4))):
            datatype = str(rng.choice(kinds))
            rank = int(rng.choice([0, 1, 2, 3, 4, 65, 70]))
            long_shape = rank > 4
            shape = [1 if long_shape else int(rng.choice(dims)) for _ in range(rank)]
            tensor = request.inputs.add(name=str(rng.choice(names)), datatype=datatype)
            tensor.shape.extend(shape)
            count = int(np.prod([max(d, 0) for d in shape], dtype=object)) if shape else 1
            if raw_mode:
                size = datatypes.element_size(datatype) if datatype in datatypes.NUMPY else 1
                if rng.random() < 0.5 and count * size <= 64:
                    if datatype == "BYTES":
                        blob = b"".join(
                            struct.pack("<I", n) + bytes(n) for n in rng.integers(0, 5, count)
                        )
                    else:
                        blob = rng.bytes(count * size)
                else:
                    blob = rng.bytes(int(rng.integers(0, 40)))
                request.raw_input_contents.append(blob)
            else:
                field = str(rng.choice(fields))
                n = count if rng.random() < 0.5 and count <= 16 else int(rng.integers(0, 6))
                target = getattr(tensor.contents, field)
                if field == "bytes_contents":
                    target.extend(rng.bytes(int(k)) for k in rng.integers(0, 4, n))
                elif field == "bool_contents":
                    target.extend(bool(v) for v in rng.integers(0, 2, n))
                elif field in ("fp32_contents", "fp64_contents"):
                    target.extend(float(v) for v in rng.standard_normal(n) * 1e6)
                elif field.startswith("uint"):
                    target.extend(int(v) for v in rng.integers(0, 2**32, n))
                else:
                    target.extend(int(v) for v in rng.integers(-(2**31), 2**31, n))
        if raw_mode and rng.random() < 0.1:
            request.raw_input_contents.append(rng.bytes(4))
        if rng.random() < 0.3:
            param = request.parameters[str(rng.choice(["priority", "timeout"]))]
            choice = int(rng.integers(0, 4))
            if choice == 0:
                param.int64_param = int(rng.integers(-5, 5))
            elif choice == 1:
                param.uint64_param = int(rng.integers(0, 2**63))
            elif choice == 2:
                param.bool_param = True
            else:
                param.string_param = "1"
        try:
            result, sent = decode_request(request)
        except InvalidArgument:
            continue
        decoded += 1
        for tensor in request.inputs:
            array = result.inputs[tensor.name]
            assert array.shape == tuple(tensor.shape)
            assert array.dtype == datatypes.NUMPY[sent[tensor.name]]
    assert decoded > 100  # the loop also reaches the paths that succeed


# -- encoding responses, read back by tritonclient --------------------------------


def _as_triton(reply: pb.ModelInferResponse) -> triton_grpc.InferResult:
    return triton_grpc.InferResult(
        tc_service.ModelInferResponse.FromString(reply.SerializeToString())
    )


@pytest.mark.parametrize("datatype", NUMERIC)
def test_numeric_outputs_round_trip_to_tritonclient(datatype: str) -> None:
    array = sample(datatype, (3, 2), seed=1)
    reply = encode_response(
        InferResponse(
            model="m", version="2", outputs={"y": array}, id="r9", datatypes={"y": datatype}
        )
    )
    assert (reply.model_name, reply.model_version, reply.id) == ("m", "2", "r9")
    (output,) = reply.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("y", datatype, [3, 2])
    raw = np.frombuffer(reply.raw_output_contents[0], dtype=triton_to_np_dtype(datatype))
    np.testing.assert_array_equal(raw.reshape(3, 2), array)
    np.testing.assert_array_equal(_as_triton(reply).as_numpy("y"), array)


@pytest.mark.parametrize(
    "array",
    [
        np.array([[b"a", b""], [b"\x00\xff", "h\u00e9".encode()]], dtype=np.object_),
        np.array([["one", "two"], ["", "\u00fcml"]], dtype=np.object_),
        np.array([["one", "two"], ["", "x"]]),  # numpy str, dtype <U3
        np.array([[b"one"], [b""]]),  # numpy bytes, dtype S3
    ],
)
def test_bytes_outputs_round_trip_to_tritonclient(array: Array) -> None:
    reply = encode_response(InferResponse(model="m", version="1", outputs={"t": array}))
    (output,) = reply.outputs
    assert output.datatype == "BYTES"
    assert tuple(output.shape) == array.shape
    expected = [v.encode() if isinstance(v, str) else bytes(v) for v in array.reshape(-1).tolist()]
    assert deserialize_bytes_tensor(reply.raw_output_contents[0]).tolist() == expected
    got = _as_triton(reply).as_numpy("t")
    assert got.shape == array.shape
    assert got.reshape(-1).tolist() == expected


def test_the_output_datatype_follows_numpy_when_not_declared() -> None:
    reply = encode_response(
        InferResponse(model="m", version="1", outputs={"a": np.zeros(2, np.int16), "b": np.ones(1)})
    )
    assert [(o.name, o.datatype) for o in reply.outputs] == [("a", "INT16"), ("b", "FP64")]
    assert len(reply.raw_output_contents) == 2


def test_a_decoded_request_encodes_back_to_the_same_bytes() -> None:
    array = sample("FP32", (2, 4), seed=3)
    decoded = decode_one(raw_request(("x", "FP32", [2, 4], array.tobytes())))
    reply = encode_response(InferResponse(model="m", version="1", outputs={"x": decoded}))
    assert reply.raw_output_contents[0] == array.tobytes()


# -- the datatype table -----------------------------------------------------------


@pytest.mark.parametrize(
    ("onnx", "oip"),
    [("tensor(float)", "FP32"), ("tensor(string)", "BYTES"), ("tensor(bool)", "BOOL")],
)
def test_onnx_types_map_to_oip_datatypes(onnx: str, oip: str) -> None:
    assert datatypes.from_onnx(onnx) == oip


def test_an_onnx_type_without_an_oip_datatype_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="tensor\\(bfloat16\\)"):
        datatypes.from_onnx("tensor(bfloat16)")


@pytest.mark.parametrize("datatype", sorted(datatypes.DATATYPES))
def test_triton_config_type_names_round_trip(datatype: str) -> None:
    assert datatypes.from_config(datatypes.to_config(datatype)) == datatype
    assert datatypes.from_config(datatype) == datatype


def test_string_is_bytes_in_triton_configs() -> None:
    assert datatypes.to_config("BYTES") == "TYPE_STRING"
    assert datatypes.from_config("TYPE_STRING") == "BYTES"
    with pytest.raises(InvalidArgument, match="TYPE_BF16"):
        datatypes.from_config("TYPE_BF16")


def test_texts_become_a_bytes_batch_of_one_column() -> None:
    batch = datatypes.texts_array(["hi", "there"])
    assert batch.shape == (2, 1)
    assert batch.tolist() == [[b"hi"], [b"there"]]


# -- checking a request against the model's inputs --------------------------------

DECLARED = (
    TensorSpec(name="ids", datatype="INT64", dims=(-1,)),
    TensorSpec(name="mask", datatype="INT64", dims=(-1,)),
    TensorSpec(name="scale", datatype="FP32", dims=(1,)),
)


def tensors(batch: int = 2, length: int = 5) -> dict[str, Array]:
    return {
        "ids": np.zeros((batch, length), np.int64),
        "mask": np.ones((batch, length), np.int64),
        "scale": np.ones((batch, 1), np.float32),
    }


SENT = {"ids": "INT64", "mask": "INT64", "scale": "FP32"}


def check(
    inputs: dict[str, Array],
    *,
    sent: dict[str, str] | None = None,
    max_batch_size: int = 8,
    pads_variable_dims: bool = False,
) -> tuple[int, object]:
    return check_inputs(
        model="enc",
        declared=DECLARED,
        inputs=inputs,
        datatypes=SENT if sent is None else sent,
        max_batch_size=max_batch_size,
        pads_variable_dims=pads_variable_dims,
    )


def test_a_valid_request_gives_its_batch_size() -> None:
    batch, _ = check(tensors(batch=3))
    assert batch == 3


def test_an_unknown_input_is_named() -> None:
    with pytest.raises(InvalidArgument, match=r"model 'enc' has no input 'token_ids'"):
        check({**tensors(), "token_ids": np.zeros((2, 5), np.int64)})


def test_a_missing_input_is_named_with_what_it_takes() -> None:
    inputs = tensors()
    del inputs["mask"]
    with pytest.raises(InvalidArgument, match=r"missing input 'mask' \(INT64 \[-1, -1\]\)"):
        check(inputs)


def test_a_datatype_mismatch_names_both_types() -> None:
    inputs = {**tensors(), "scale": np.ones((2, 1), np.float64)}
    with pytest.raises(InvalidArgument, match=r"input 'scale' has datatype FP64, expected FP32"):
        check(inputs, sent={**SENT, "scale": "FP64"})


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 3), r"input 'scale' has shape \[2, 3\], expected \[-1, 1\]"),
        ((2, 1, 1), r"input 'scale' has shape \[2, 1, 1\], expected \[-1, 1\]"),
        ((), r"input 'scale' shape \[\] lacks the batch dimension; expected \[-1, 1\]"),
    ],
)
def test_a_shape_mismatch_names_the_tensor_and_both_shapes(
    shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check({**tensors(), "scale": np.ones(shape, np.float32)})


def test_inputs_must_agree_on_the_batch_size() -> None:
    inputs = {**tensors(batch=2), "mask": np.ones((3, 5), np.int64)}
    with pytest.raises(InvalidArgument, match=r"disagree on the batch size \(\[2, 3\]\)"):
        check(inputs)


def test_a_batch_over_max_batch_size_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="batch size 9 exceeds max_batch_size 8"):
        check(tensors(batch=9))


def test_without_batching_the_whole_shape_is_checked() -> None:
    declared = (TensorSpec(name="image", datatype="FP32", dims=(3, -1)),)
    batch, _ = check_inputs(
        model="m",
        declared=declared,
        inputs={"image": np.zeros((3, 7), np.float32)},
        datatypes={"image": "FP32"},
        max_batch_size=0,
    )
    assert batch == 1
    with pytest.raises(InvalidArgument, match=r"shape \[1, 3, 7\], expected \[3, -1\]"):
        check_inputs(
            model="m",
            declared=declared,
            inputs={"image": np.zeros((1, 3, 7), np.float32)},
            datatypes={"image": "FP32"},
            max_batch_size=0,
        )


def test_requests_share_a_shape_bucket_only_when_their_variable_dims_agree() -> None:
    _, key_2x5 = check(tensors(batch=2, length=5))
    _, key_4x5 = check(tensors(batch=4, length=5))
    _, key_2x7 = check(tensors(batch=2, length=7))
    assert key_2x5 == key_4x5  # the batch dimension does not matter
    assert key_2x5 != key_2x7
    assert hash(key_2x5) == hash(key_4x5)


def test_a_text_pipeline_puts_every_request_in_one_bucket() -> None:
    _, short = check(tensors(length=5), pads_variable_dims=True)
    _, long = check(tensors(length=9), pads_variable_dims=True)
    assert short == long


def test_an_unknown_requested_output_is_named() -> None:
    declared = (TensorSpec(name="embedding", datatype="FP32", dims=(4,)),)
    check_outputs(model="enc", declared=declared, requested=["embedding"])
    with pytest.raises(
        InvalidArgument, match=r"no output 'logits'; its outputs are \['embedding'\]"
    ):
        check_outputs(model="enc", declared=declared, requested=["logits"])
