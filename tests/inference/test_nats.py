"""Inference over NATS: Envelope and OIP requests, queue groups, availability, metric snapshots."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.grpc as tc
from support.inference_support import CONTROL_HEADERS, build_test_repository, start_inference

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import Code, InvalidArgument, NoResponders
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import status_pb2
from edgegate_protos.inference.v1 import inference_pb2 as ipb
from edgegate_protos.oip import grpc_service_pb2 as pb

pytestmark = pytest.mark.timeout(120)


async def test_envelope_with_text_gets_an_embedding(inference_server, bus: Bus) -> None:  # type: ignore[no-untyped-def]
    envelope = env.Envelope(id="e-1", tenant="t", priority=env.PRIORITY_HIGH)
    envelope.parts.add(text="hello world")
    envelope.parts.add(text="second sentence")
    reply = await bus.request(
        subjects.inference_infer("toy_text", "1"), envelope, env.Reply, timeout_s=10
    )
    assert reply.envelope_id == "e-1"
    assert (reply.model, reply.version, reply.backend) == ("toy_text", "1", env.BACKEND_LOCAL)
    (part,) = reply.parts
    assert (part.tensor.name, part.tensor.datatype, list(part.tensor.shape)) == (
        "embedding",
        "FP32",
        [2, 8],
    )
    vectors = np.frombuffer(part.tensor.raw_data, dtype=np.float32).reshape(2, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


async def test_envelope_with_tensors(inference_server, bus: Bus) -> None:  # type: ignore[no-untyped-def]
    envelope = env.Envelope(id="e-2")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    envelope.parts.add(
        tensor=env.Tensor(name="X", datatype="FP32", shape=[2, 3], raw_data=x.tobytes())
    )
    reply = await bus.request(subjects.inference_infer("scale", "2"), envelope, env.Reply)
    y = np.frombuffer(reply.parts[0].tensor.raw_data, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(y, 2 * x)


async def test_oip_request_over_nats(inference_server, bus: Bus) -> None:  # type: ignore[no-untyped-def]
    request = pb.ModelInferRequest(model_name="simple", id="n-1")
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        request.raw_input_contents.append(a.tobytes())
    response = await bus.request(
        subjects.inference_infer("simple", "1"), request, pb.ModelInferResponse
    )
    assert response.id == "n-1"
    out = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
    np.testing.assert_array_equal(out, 2 * a.reshape(-1))


async def test_wrong_requests_over_nats(inference_server, bus: Bus) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument, match=r"does not take edgegate\.common\.v1\.StatusRequest"):
        await bus.request(
            subjects.inference_infer("simple", "1"), status_pb2.StatusRequest(), env.Reply
        )
    envelope = env.Envelope(id="e-3")
    envelope.parts.add(text="text for a tensor model")
    with pytest.raises(InvalidArgument, match="takes tensors, not text"):
        await bus.request(subjects.inference_infer("simple", "1"), envelope, env.Reply)
    mismatch = pb.ModelInferRequest(model_name="identity")
    with pytest.raises(InvalidArgument, match="serves simple/1"):
        await bus.request(subjects.inference_infer("simple", "1"), mismatch, pb.ModelInferResponse)


async def test_metric_snapshots_are_published(inference_server, bus: Bus) -> None:  # type: ignore[no-untyped-def]
    snapshots: asyncio.Queue[ipb.MetricsSnapshot] = asyncio.Queue()

    async def on_snapshot(msg) -> None:  # type: ignore[no-untyped-def]
        await snapshots.put(ipb.MetricsSnapshot.FromString(msg.data))

    subscription = await bus.subscribe(subjects.INFERENCE_METRICS_ALL, cb=on_snapshot)
    try:
        envelope = env.Envelope(id="m")
        envelope.parts.add(text="count me")
        for _ in range(3):
            await bus.request(subjects.inference_infer("toy_text", "1"), envelope, env.Reply)
        while True:
            snapshot = await asyncio.wait_for(snapshots.get(), timeout=5)
            if snapshot.model == "toy_text" and snapshot.requests >= 3:
                break
    finally:
        await subscription.unsubscribe()
    assert snapshot.version == "1"
    assert snapshot.execution_providers == ["cpu"]
    assert snapshot.successes == snapshot.requests
    assert sum(snapshot.latency_counts) == snapshot.requests
    assert len(snapshot.latency_counts) == len(snapshot.latency_bounds_s) + 1
    assert sum(snapshot.batch_sizes.values()) == snapshot.executions


async def test_replicas_announce_again_when_asked(inference_server, bus: Bus) -> None:  # type: ignore[no-untyped-def]
    """A process that starts after inference (the taskstore) asks, and learns what runs."""
    announced: asyncio.Queue[ipb.ModelAvailability] = asyncio.Queue()

    async def on_announcement(msg) -> None:  # type: ignore[no-untyped-def]
        await announced.put(ipb.ModelAvailability.FromString(msg.data))

    subscription = await bus.subscribe(subjects.INFERENCE_AVAILABILITY_ALL, cb=on_announcement)
    try:
        await bus.publish(subjects.INFERENCE_AVAILABILITY_QUERY, b"")
        seen: set[tuple[str, str]] = set()
        while ("toy_text", "1") not in seen or ("scale", "2") not in seen:
            got = await asyncio.wait_for(announced.get(), timeout=5)
            assert got.ready and got.instance
            seen.add((got.model, got.version))
    finally:
        await subscription.unsubscribe()


async def test_replicas_share_the_queue_group_and_announce(nats_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A bus of its own: the module's shared server must not take a share of the requests.
    bus = await Bus.connect(servers=[nats_server.url], name="test", connect_timeout_s=5)
    repo = build_test_repository(tmp_path / "models")
    announcements: asyncio.Queue[ipb.ModelAvailability] = asyncio.Queue()

    async def on_announce(msg) -> None:  # type: ignore[no-untyped-def]
        await announcements.put(ipb.ModelAvailability.FromString(msg.data))

    sub = await bus.subscribe(subjects.INFERENCE_AVAILABILITY_ALL, cb=on_announce)
    servers = await asyncio.gather(
        *(
            asyncio.to_thread(
                start_inference,
                repo=repo,
                nats_url=nats_server.url,
                log_dir=tmp_path / f"r{i}",
                extra=("--repository-poll-s", "0"),
            )
            for i in range(2)
        )
    )
    try:
        envelope = env.Envelope(id="q")
        envelope.parts.add(text="spread me")
        subject = subjects.inference_infer("toy_text", "1")
        await asyncio.gather(*(bus.request(subject, envelope, env.Reply) for _ in range(40)))
        served = [
            tc.InferenceServerClient(s.url).get_inference_statistics("toy_text").model_stats[0]
            for s in servers
        ]
        counts = [s.inference_stats.success.count for s in served]
        assert sum(counts) == 40
        assert min(counts) > 0, counts  # both replicas took a share
        # Unloading on one replica announces it; the other keeps serving the subject.
        tc.InferenceServerClient(servers[0].url).unload_model("toy_text", headers=CONTROL_HEADERS)
        while True:
            note = await asyncio.wait_for(announcements.get(), timeout=10)
            if note.model == "toy_text" and not note.ready:
                break
        for _ in range(5):
            await bus.request(subject, envelope, env.Reply)
        tc.InferenceServerClient(servers[1].url).unload_model("toy_text", headers=CONTROL_HEADERS)
        # The unload returns once the replica has unsubscribed: nobody listens any more,
        # which the caller learns at once (not as a timeout, not as a model error).
        with pytest.raises(NoResponders) as err:
            await bus.request(subject, envelope, env.Reply, timeout_s=2)
        assert err.value.code == Code.UNAVAILABLE
        assert str(err.value) == f"no service is listening on {subject}"
    finally:
        await sub.unsubscribe()
        for server in servers:
            server.process.stop()
        await bus.close()
