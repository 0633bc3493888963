"""Bad requests get the right status and a message that says what was wrong; the server stays up."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as tpb_grpc

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def stub(inference_server):  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(
        inference_server.url,
        options=[("grpc.max_send_message_length", 128 * 1024 * 1024)],
    ) as channel:
        yield tpb_grpc.GRPCInferenceServiceStub(channel)


def _request(model: str = "simple_fp32", **overrides) -> tpb.ModelInferRequest:  # type: ignore[no-untyped-def]
    """A valid request for the FP32 `simple` model; overrides change one thing."""
    shape = overrides.get("shape", [1, 16])
    datatype = overrides.get("datatype", "FP32")
    names = overrides.get("names", ["INPUT0", "INPUT1"])
    raw = overrides.get("raw", np.ones(shape, dtype=np.float32).tobytes())
    request = tpb.ModelInferRequest(model_name=model, model_version=overrides.get("version", ""))
    for name in names:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    return request


def _fails(stub, request) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request)
    return err.value


@pytest.mark.parametrize(
    ("request_kwargs", "code", "words"),
    [
        ({"model": "no-such-model"}, grpc.StatusCode.NOT_FOUND, ["no-such-model"]),
        ({"version": "7"}, grpc.StatusCode.NOT_FOUND, ["version '7'"]),
        ({"names": ["INPUT0", "WRONG"]}, grpc.StatusCode.INVALID_ARGUMENT, ["'WRONG'", "INPUT1"]),
        ({"names": ["INPUT0"]}, grpc.StatusCode.INVALID_ARGUMENT, ["missing input 'INPUT1'"]),
        (
            {"datatype": "INT32", "raw": np.ones((1, 16), np.int32).tobytes()},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["INT32", "expected FP32"],
        ),
        (
            {"shape": [1, 15], "raw": np.ones((1, 15), np.float32).tobytes()},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["[1, 15]", "[-1, 16]"],
        ),
        ({"raw": b"\x00" * 10}, grpc.StatusCode.INVALID_ARGUMENT, ["'INPUT0'", "64 bytes", "10"]),
        (
            {"shape": [9, 16], "raw": np.ones((9, 16), np.float32).tobytes()},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["max_batch_size 8"],
        ),
        ({"datatype": "FP128"}, grpc.StatusCode.INVALID_ARGUMENT, ["FP128"]),
    ],
)
def test_bad_request_is_named(stub, request_kwargs, code, words) -> None:  # type: ignore[no-untyped-def]
    error = _fails(stub, _request(**request_kwargs))
    assert error.code() == code, error.details()
    for word in words:
        assert word in error.details(), error.details()


def test_oversized_request_is_refused_clearly(stub) -> None:  # type: ignore[no-untyped-def]
    huge = np.zeros((1, 16), dtype=np.float32).tobytes() + b"\x00" * (65 * 1024 * 1024)
    error = _fails(stub, _request(raw=huge))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details()


def test_fuzzed_requests_never_break_the_server(inference_server, stub) -> None:  # type: ignore[no-untyped-def]
    """Random mutations of valid requests: every answer is OK or a client error; no crash."""
    rng = np.random.default_rng(1234)
    datatypes = ["FP32", "INT32", "BYTES", "FP16", "BOOL", "", "fp32", "INT64"]
    models = ["simple_fp32", "identity", "toy_text", "scale", "", "../etc"]
    allowed = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    outcomes: dict[str, int] = {}
    for _ in range(300):
        request = tpb.ModelInferRequest(model_name=str(rng.choice(models)))
        for _ in range(int(rng.integers(0, 4))):
            shape = [int(d) for d in rng.integers(-2, 6, size=int(rng.integers(0, 4)))]
            request.inputs.add(
                name=str(rng.choice(["INPUT0", "INPUT1", "TEXT", "X", "IN_FP32", "junk"])),
                datatype=str(rng.choice(datatypes)),
                shape=shape,
            )
            if rng.random() < 0.8:
                request.raw_input_contents.append(rng.bytes(int(rng.integers(0, 200))))
        if rng.random() < 0.2:
            request.parameters["priority"].string_param = "high"
        try:
            stub.ModelInfer(request, timeout=10)
        except grpc.RpcError as err:
            code, details = err.code(), err.details()
            outcomes[code.name] = outcomes.get(code.name, 0) + 1
        else:
            continue
        assert code in allowed, (code, details, request)
        assert details
    assert outcomes.get("INVALID_ARGUMENT", 0) > 100
    # Still serving, and still right.
    client = tc.InferenceServerClient(inference_server.url)
    assert client.is_server_ready()
    a = np.full((1, 16), 5, dtype=np.float32)
    inputs = [tc.InferInput("INPUT0", [1, 16], "FP32"), tc.InferInput("INPUT1", [1, 16], "FP32")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    np.testing.assert_array_equal(
        client.infer("simple_fp32", inputs).as_numpy("OUTPUT0"), np.full((1, 16), 10, np.float32)
    )


def _text_request(*texts: bytes) -> tpb.ModelInferRequest:
    """`toy_text` with `texts` as its BYTES input, serialised as tritonclient does."""
    request = tpb.ModelInferRequest(model_name="toy_text")
    request.inputs.add(name="TEXT", datatype="BYTES", shape=[len(texts), 1])
    request.raw_input_contents.append(b"".join(len(t).to_bytes(4, "little") + t for t in texts))
    return request


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b"\xff\xfe binary", ["element 1", "not UTF-8", "offset 0"]),
        (b"caf\xc3", ["element 1", "not UTF-8"]),
        (b"\x00\x00\x00", ["element 1", "NUL"]),
        (b"", ["element 1", "empty"]),
    ],
)
def test_a_text_model_refuses_bytes_that_are_not_text(stub, text: bytes, words: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Triton answers INVALID_ARGUMENT; decoding with replacement characters would answer a
    question nobody asked."""
    error = _fails(stub, _text_request(b"fine", text))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    for word in words:
        assert word in error.details(), error.details()
    assert stub.ModelInfer(_text_request(b"fine", "café ☕".encode())).outputs


def test_typed_contents_beside_raw_contents_are_refused(stub) -> None:  # type: ignore[no-untyped-def]
    request = _request()
    request.inputs[1].contents.fp32_contents.extend([2.0] * 16)
    error = _fails(stub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'INPUT1'" in error.details() and "raw_input_contents" in error.details()


def test_bytes_that_are_no_request_message_are_invalid_argument(inference_server) -> None:  # type: ignore[no-untyped-def]
    """grpc alone answers UNKNOWN with the parser's exception."""
    with grpc.insecure_channel(inference_server.url) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as err:
            infer(b"\x0a\x05\xff\xfe\xfd\xfc\xfb", timeout=10)  # model_name: not UTF-8
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inference.ModelInferRequest" in err.value.details()
