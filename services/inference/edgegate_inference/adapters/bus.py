"""The inference service on NATS: infer requests, availability, metric snapshots.

Every replica serving a model version joins the queue group on
`edgegate.inference.v1.infer.<model>.<version>`, so requests spread over the
replicas. A request is an `Envelope` (text parts for a text model, tensor
parts otherwise; the answer is a `Reply` with tensor parts) or an OIP
`ModelInferRequest` (the answer is a `ModelInferResponse`), told apart by
the `Edgegate-Body-Type` header.

Replicas announce on `...availability.<model>.<version>` when they start and
stop serving a version, and again when anyone asks on `...availability_query`
(a taskstore that starts later learns what runs). They publish a
`MetricsSnapshot` per version every `interval_s` on
`...metrics.<model>.<version>` for the operator's canary analysis.

A `Reply` says in its metadata how long the request waited in the queue and
how long its model call took (`subjects.REPLY_QUEUE_S`, `REPLY_COMPUTE_S`):
the gateway's breaker counts slow calls on service time, not on queueing.
An overloaded version answers RESOURCE_EXHAUSTED at once, with a retry hint.
"""

from __future__ import annotations

import asyncio
import contextlib

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from edgegate_common import subjects
from edgegate_common.bus import Bus, RequestContext
from edgegate_common.errors import InvalidArgument
from edgegate_common.logging import get_logger
from edgegate_common.metrics import LATENCY_BUCKETS_S
from edgegate_inference import oip
from edgegate_inference.core import datatypes
from edgegate_inference.core.types import Array, InferRequest, InferResponse
from edgegate_inference.model import ModelVersion
from edgegate_inference.repository import ModelRepository
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.inference.v1 import inference_pb2 as ipb
from edgegate_protos.oip import grpc_service_pb2 as pb

log = get_logger(__name__)


class InferenceBus:
    def __init__(
        self, *, bus: Bus, repository: ModelRepository, instance: str, interval_s: float
    ) -> None:
        self._bus = bus
        self._repository = repository
        self._instance = instance
        self._interval_s = interval_s
        self._subscriptions: dict[tuple[str, str], Subscription] = {}
        self._publisher: asyncio.Task[None] | None = None
        self._query: Subscription | None = None

    async def start(self) -> None:
        """Serve what is loaded now, follow the repository's changes, start snapshots."""
        self._repository.on_change(self._changed)
        by_model: dict[str, list[ModelVersion]] = {}
        for mv in self._repository.served():
            by_model.setdefault(mv.name, []).append(mv)
        for name, versions in by_model.items():
            await self._changed(name, versions, [])
        if self._interval_s > 0:
            self._publisher = asyncio.get_running_loop().create_task(self._publish_snapshots())

        async def announce_again(_: Msg) -> None:
            for name, version in list(self._subscriptions):
                await self._announce(name, version, ready=True)

        self._query = await self._bus.subscribe(
            subjects.INFERENCE_AVAILABILITY_QUERY, cb=announce_again
        )

    async def stop(self) -> None:
        if self._query is not None:
            await self._bus.unsubscribe(self._query, drain=False)
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher

    async def _changed(
        self, name: str, served: list[ModelVersion], retired: list[ModelVersion]
    ) -> None:
        now = {mv.version for mv in served}
        for mv in served:
            key = (name, mv.version)
            if key not in self._subscriptions:
                self._subscriptions[key] = await self._serve(name, mv.version)
                await self._announce(name, mv.version, ready=True)
        for mv in retired:
            key = (name, mv.version)
            if mv.version not in now and key in self._subscriptions:
                subscription = self._subscriptions.pop(key)
                await self._announce(name, mv.version, ready=False)
                await self._bus.unsubscribe(subscription)

    async def _serve(self, name: str, version: str) -> Subscription:
        async def envelope(request: env.Envelope, ctx: RequestContext) -> env.Reply:
            mv = self._repository.get(name, version)
            domain, sent = _from_envelope(request, mv)
            response = await mv.infer(domain, sent=sent)
            return _to_reply(request, response)

        async def oip_request(
            request: pb.ModelInferRequest, ctx: RequestContext
        ) -> pb.ModelInferResponse:
            domain, sent = oip.decode_request(request)
            if domain.model not in ("", name) or domain.version not in ("", version):
                raise InvalidArgument(
                    f"{ctx.subject} serves {name}/{version}, "
                    f"the request names {domain.model}/{domain.version}"
                )
            mv = self._repository.get(name, version)
            return oip.encode_response(await mv.infer(domain, sent=sent))

        return await self._bus.serve_many(
            subjects.inference_infer(name, version),
            {env.Envelope: envelope, pb.ModelInferRequest: oip_request},
            queue=subjects.queue_group("inference"),
        )

    async def _announce(self, name: str, version: str, *, ready: bool) -> None:
        message = ipb.ModelAvailability(
            model=name, version=version, instance=self._instance, ready=ready
        )
        if ready:
            message.max_batch_size = self._repository.get(name, version).spec.max_batch_size
        await self._bus.publish_best_effort(
            subjects.inference_availability(name, version), message, kind="availability"
        )

    async def _publish_snapshots(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            for mv in self._repository.served():
                snapshot = snapshot_of(mv, instance=self._instance)
                await self._bus.publish_best_effort(
                    subjects.inference_metrics(mv.name, mv.version),
                    snapshot,
                    kind="metrics_snapshot",
                )


def snapshot_of(mv: ModelVersion, *, instance: str) -> ipb.MetricsSnapshot:
    s = mv.stats
    at, loaded_at = Timestamp(), Timestamp()
    at.GetCurrentTime()
    loaded_at.FromNanoseconds(int(mv.loaded_at_s * 1e9))
    return ipb.MetricsSnapshot(
        model=mv.name,
        version=mv.version,
        instance=instance,
        at=at,
        loaded_at=loaded_at,
        ready=True,
        execution_providers=mv.providers,
        requests=s.success.count + s.fail.count,
        successes=s.success.count,
        errors=dict(s.errors),
        latency_bounds_s=LATENCY_BUCKETS_S,
        latency_counts=s.latency_buckets,
        latency_sum_s=(s.success.ns + s.fail.ns) / 1e9,
        batch_sizes=dict(s.batch_sizes),
        executions=s.execution_count,
        inferences=s.inference_count,
        queue_sum_s=s.queue.ns / 1e9,
        queued=mv.batcher.queued if mv.batcher is not None else 0,
    )


def _from_envelope(envelope: env.Envelope, mv: ModelVersion) -> tuple[InferRequest, dict[str, str]]:
    texts = [p.text for p in envelope.parts if p.WhichOneof("content") == "text"]
    tensors = [p.tensor for p in envelope.parts if p.WhichOneof("content") == "tensor"]
    others = len(envelope.parts) - len(texts) - len(tensors)
    if others:
        raise InvalidArgument(
            "inference takes text or tensor parts; JSON and binary parts are not supported"
        )
    inputs: dict[str, Array] = {}
    sent: dict[str, str] = {}
    if texts:
        if mv.spec.text is None:
            raise InvalidArgument(f"model {mv.name!r} takes tensors, not text")
        name = mv.spec.text.input
        inputs[name] = datatypes.texts_array(texts)
        sent[name] = "BYTES"
    for tensor in tensors:
        if tensor.name in inputs:
            raise InvalidArgument(f"input {tensor.name!r} appears twice")
        inputs[tensor.name] = oip.decode_tensor(
            name=tensor.name,
            datatype=tensor.datatype,
            shape=list(tensor.shape),
            raw=tensor.raw_data,
        )
        sent[tensor.name] = tensor.datatype
    # HIGH is level 1; LOW the model's lowest level; NORMAL its default (0).
    levels = mv.spec.dynamic_batching.levels if mv.spec.dynamic_batching else 1
    level = {env.PRIORITY_HIGH: 1, env.PRIORITY_LOW: levels}.get(envelope.priority, 0)
    return InferRequest(
        model=mv.name, version=mv.version, inputs=inputs, id=envelope.id, priority=level
    ), sent


def _to_reply(envelope: env.Envelope, response: InferResponse) -> env.Reply:
    reply = env.Reply(
        envelope_id=envelope.id,
        backend=env.BACKEND_LOCAL,
        model=response.model,
        version=response.version,
    )
    reply.created_at.GetCurrentTime()
    reply.metadata[subjects.REPLY_QUEUE_S] = f"{response.queue_s:.6f}"
    reply.metadata[subjects.REPLY_COMPUTE_S] = f"{response.compute_s:.6f}"
    for output in oip.encode_outputs(response):
        tensor = reply.parts.add().tensor
        tensor.name = output.name
        tensor.datatype = output.datatype
        tensor.shape.extend(output.shape)
        tensor.raw_data = output.data
    return reply
