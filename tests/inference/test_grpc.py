"""The OIP v2 gRPC service through stock tritonclient (grpc and grpc.aio), as users call it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.grpc.aio as tca
from support import model_factory as mf
from support.inference_support import (
    CONTROL_HEADERS,
    IDENTITY_TYPES,
    InferenceServer,
    start_inference,
)
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as tpb_grpc
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.timeout(120)


def _client(server) -> tc.InferenceServerClient:  # type: ignore[no-untyped-def]
    return tc.InferenceServerClient(server.url)


def _simple_inputs(a: np.ndarray, b: np.ndarray) -> list[tc.InferInput]:
    inputs = [
        tc.InferInput("INPUT0", list(a.shape), "INT32"),
        tc.InferInput("INPUT1", list(b.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def _status(exc: InferenceServerException) -> str:
    return str(exc.status())


def test_health_and_metadata(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert not client.is_model_ready("no-such-model")
    server = client.get_server_metadata()
    assert server.name == "edgegate-inference"
    assert "model_repository" in server.extensions
    meta = client.get_model_metadata("simple", as_json=True)
    assert meta["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("INPUT0", "INT32", ["-1", "16"]),
        ("INPUT1", "INT32", ["-1", "16"]),
    ]


def test_infer_raw_contents_matches_the_model(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    result = client.infer("simple", _simple_inputs(a, b), request_id="r-1")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response.id == "r-1"
    assert response.model_version == "1"


def test_requested_outputs_only(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    a = np.ones((1, 16), dtype=np.int32)
    result = client.infer(
        "simple", _simple_inputs(a, a), outputs=[tc.InferRequestedOutput("OUTPUT1")]
    )
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), np.zeros((1, 16), np.int32))


@pytest.mark.parametrize("datatype", IDENTITY_TYPES)
def test_every_datatype_round_trips(inference_server, datatype: str) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    rng = np.random.default_rng(7)
    if datatype == "BYTES":
        data = np.array([[b"a", b"", "日本".encode()], [b"x" * 300, b"\x00z", b"q"]], dtype=object)
    elif datatype == "BOOL":
        data = rng.integers(0, 2, size=(2, 3)).astype(bool)
    else:
        dtype = tc.triton_to_np_dtype(datatype)
        data = (rng.random((2, 3)) * 100).astype(dtype)
    # The identity model takes every input at once; feed zeros to the others.
    inputs = []
    for other in IDENTITY_TYPES:
        if other == datatype:
            value = data
        elif other == "BYTES":
            value = np.full((2, 3), b"-", dtype=object)
        else:
            value = np.zeros((2, 3), dtype=tc.triton_to_np_dtype(other))
        tensor = tc.InferInput(f"IN_{other}", [2, 3], other)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    result = client.infer("identity", inputs)
    out = result.as_numpy(f"OUT_{datatype}")
    np.testing.assert_array_equal(out, data)


def test_typed_contents_are_accepted(inference_server) -> None:  # type: ignore[no-untyped-def]
    """Clients that fill `contents` instead of raw bytes (other OIP clients do)."""
    with grpc.insecure_channel(inference_server.url) as channel:
        stub = tpb_grpc.GRPCInferenceServiceStub(channel)
        request = tpb.ModelInferRequest(model_name="simple")
        for name, values in (("INPUT0", range(16)), ("INPUT1", [2] * 16)):
            tensor = request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
            tensor.contents.int_contents.extend(values)
        response = stub.ModelInfer(request)
    out0 = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
    np.testing.assert_array_equal(out0, np.arange(16) + 2)


def test_text_model_takes_bytes_and_returns_unit_vectors(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    texts = np.array([[b"hello world"], ["你好 世界".encode()], [b"a much longer sentence " * 20]])
    text = tc.InferInput("TEXT", [3, 1], "BYTES")
    text.set_data_from_numpy(texts.astype(object))
    together = client.infer("toy_text", [text]).as_numpy("embedding")
    assert together.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)
    # Padding inside a batch does not change a text's vector.
    for row in range(3):
        alone = tc.InferInput("TEXT", [1, 1], "BYTES")
        alone.set_data_from_numpy(texts[row : row + 1].astype(object))
        vector = client.infer("toy_text", [alone]).as_numpy("embedding")
        np.testing.assert_allclose(vector[0], together[row], atol=1e-5)


def test_concurrent_requests_are_batched(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    before = client.get_inference_statistics("simple_fp32").model_stats[0]

    def one(i: int) -> np.ndarray:
        a = np.full((1, 16), i, dtype=np.float32)
        inputs = [
            tc.InferInput("INPUT0", [1, 16], "FP32"),
            tc.InferInput("INPUT1", [1, 16], "FP32"),
        ]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(a)
        return _client(inference_server).infer("simple_fp32", inputs).as_numpy("OUTPUT0")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(48)))
    for i, out in enumerate(results):  # every caller got its own answer back
        np.testing.assert_array_equal(out, np.full((1, 16), 2 * i, np.float32))
    after = client.get_inference_statistics("simple_fp32").model_stats[0]
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == 48
    assert executions < 48  # some calls carried several requests
    assert max(b.batch_size for b in after.batch_stats) > 1
    assert max(b.batch_size for b in after.batch_stats) <= 8  # max_batch_size
    stats = after.inference_stats
    assert stats.success.count >= 48 and stats.queue.count >= 48
    assert stats.compute_infer.ns > 0


def test_model_config_reports_batching_and_providers(inference_server) -> None:  # type: ignore[no-untyped-def]
    config = _client(inference_server).get_model_config("simple").config
    assert config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 64
    assert config.parameters["edgegate.execution_providers"].string_value == "cpu"
    assert [i.name for i in config.input] == ["INPUT0", "INPUT1"]


def test_model_without_config_is_read_from_onnx(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    config = client.get_model_config("bare").config
    assert config.max_batch_size == 0
    x = np.ones((2, 5), dtype=np.float32)
    tensor = tc.InferInput("X", [2, 5], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_allclose(client.infer("bare", [tensor]).as_numpy("Y"), 3 * x)


def test_repository_index_and_version_policy(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    index = {(m.name, m.version): m.state for m in client.get_model_repository_index().models}
    assert index[("scale", "2")] == "READY"
    assert index[("scale", "1")] == "UNAVAILABLE"  # latest 1 only, by default
    assert client.is_model_ready("scale", "2")
    assert not client.is_model_ready("scale", "1")


def test_unload_then_load(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    client.unload_model("bare", headers=CONTROL_HEADERS)
    assert not client.is_model_ready("bare")
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("bare")
    assert "NOT_FOUND" in _status(err.value)
    client.load_model("bare", headers=CONTROL_HEADERS)
    assert client.is_model_ready("bare")
    with pytest.raises(InferenceServerException) as err:
        client.load_model("not-in-repo", headers=CONTROL_HEADERS)
    assert "NOT_FOUND" in _status(err.value)


@pytest.mark.parametrize(
    "headers",
    [None, {"edgegate-repository-key": "wrong"}, {"authorization": "Bearer x"}],
    ids=["no-key", "wrong-key", "a-bearer-token-instead"],
)
def test_load_and_unload_need_the_repository_key(inference_server, headers) -> None:  # type: ignore[no-untyped-def]
    client = _client(inference_server)
    for call in (client.unload_model, client.load_model):
        with pytest.raises(InferenceServerException) as err:
            call("simple", headers=headers)
        assert "UNAUTHENTICATED" in _status(err.value)
        assert "edgegate-repository-key" in err.value.message()
    assert client.is_model_ready("simple")  # nothing was taken down


@pytest.fixture(scope="module")
def uncontrolled_server(shared_nats, tmp_path_factory) -> Iterator[InferenceServer]:  # type: ignore[no-untyped-def]
    """A server started as an operator does by default: no repository-control key."""
    root = tmp_path_factory.mktemp("uncontrolled")
    repo = root / "models"
    mf.write_model(repo, "bare", onnx_bytes=mf.scale(factor=3.0))
    server = start_inference(
        repo=repo,
        nats_url=shared_nats.url,
        log_dir=root,
        extra=("--repository-poll-s", "0", "--metrics-snapshot-s", "0"),
        repository_key=None,
    )
    yield server
    server.process.stop()


def test_repository_control_is_off_by_default(uncontrolled_server) -> None:  # type: ignore[no-untyped-def]
    client = _client(uncontrolled_server)
    for headers in (None, CONTROL_HEADERS):
        with pytest.raises(InferenceServerException) as err:
            client.unload_model("bare", headers=headers)
        # Not UNAVAILABLE as Triton says: nothing a client retries would change the answer.
        assert "PERMISSION_DENIED" in _status(err.value)
        assert "repository control is off" in err.value.message()
    assert client.is_model_ready("bare")
    index = client.get_model_repository_index().models  # read-only: open like metadata
    assert [(m.name, m.state) for m in index] == [("bare", "READY")]


async def test_grpc_aio_client(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = tca.InferenceServerClient(inference_server.url)
    try:
        assert await client.is_server_ready()

        async def one(i: int) -> np.ndarray:
            a = np.full((1, 16), i, dtype=np.int32)
            inputs = [
                tca.InferInput("INPUT0", [1, 16], "INT32"),
                tca.InferInput("INPUT1", [1, 16], "INT32"),
            ]
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(a)
            result = await client.infer("simple", inputs)
            return result.as_numpy("OUTPUT0")

        outs = await asyncio.gather(*(one(i) for i in range(20)))
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out, np.full((1, 16), 2 * i, np.int32))
    finally:
        await client.close()


async def test_stream_infer_answers_in_band(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = tca.InferenceServerClient(inference_server.url)

    async def requests():  # type: ignore[no-untyped-def]
        a = np.ones((1, 16), dtype=np.int32)
        good = [
            tca.InferInput("INPUT0", [1, 16], "INT32"),
            tca.InferInput("INPUT1", [1, 16], "INT32"),
        ]
        for tensor in good:
            tensor.set_data_from_numpy(a)
        yield {"model_name": "simple", "inputs": good, "request_id": "ok"}
        yield {"model_name": "no-such-model", "inputs": good, "request_id": "bad"}

    try:
        answers = [answer async for answer in client.stream_infer(requests())]
    finally:
        await client.close()
    # Answers come as requests finish (the failing one is quicker), errors in-band.
    assert len(answers) == 2
    results = [result for result, error in answers if error is None]
    errors = [error for result, error in answers if error is not None]
    assert [r.get_response().id for r in results] == ["ok"]
    assert len(errors) == 1 and "unknown model" in str(errors[0])


async def test_stream_requests_are_batched_together(inference_server) -> None:  # type: ignore[no-untyped-def]
    client = tca.InferenceServerClient(inference_server.url)
    before = (await client.get_inference_statistics("simple_fp32")).model_stats[0]

    async def requests():  # type: ignore[no-untyped-def]
        for i in range(24):
            a = np.full((1, 16), i, dtype=np.float32)
            pair = [
                tca.InferInput("INPUT0", [1, 16], "FP32"),
                tca.InferInput("INPUT1", [1, 16], "FP32"),
            ]
            for tensor in pair:
                tensor.set_data_from_numpy(a)
            yield {"model_name": "simple_fp32", "inputs": pair, "request_id": str(i)}

    try:
        answers = [answer async for answer in client.stream_infer(requests())]
        after = (await client.get_inference_statistics("simple_fp32")).model_stats[0]
    finally:
        await client.close()
    assert all(error is None for _, error in answers)
    by_id = {r.get_response().id: r.as_numpy("OUTPUT0") for r, _ in answers}
    for i in range(24):
        np.testing.assert_array_equal(by_id[str(i)], np.full((1, 16), 2 * i, np.float32))
    assert after.inference_count - before.inference_count == 24
    assert after.execution_count - before.execution_count < 24  # they shared model calls


def test_prometheus_metrics_report_models_and_providers(inference_server) -> None:  # type: ignore[no-untyped-def]
    import urllib.request

    client = _client(inference_server)
    a = np.ones((1, 16), dtype=np.int32)
    client.infer("simple", _simple_inputs(a, a))
    port = inference_server.process.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert (
        'edgegate_inference_model_info{execution_providers="cpu",model="simple",version="1"} 1.0'
        in text
    )
    assert 'edgegate_inference_requests_total{code="OK",model="simple",version="1"}' in text
    assert 'edgegate_inference_batch_size_bucket{le="+Inf",model="simple",version="1"}' in text
    assert "edgegate_inference_queue_seconds_count" in text
