"""`inference.GRPCInferenceService`: proto <-> the repository and its model versions.

No try/except for domain errors here: they are `EdgegateError`s and the
shared interceptor turns them into status codes. Shared-memory, trace and log
settings RPCs stay UNIMPLEMENTED (the generated base class answers them).

This port is the cluster-internal data plane, as Triton's is: health,
metadata, statistics, the repository index and inference answer whoever
reaches it (the gateway, which authorises callers, reaches inference over
NATS; a NetworkPolicy keeps everyone else off the port). Repository control
is the exception, restricted as Triton's `--grpc-restricted-protocol` does:
`RepositoryModelLoad` and `RepositoryModelUnload` take a model down or swap
it, so they are refused unless the operator configured a key, and then need
that key in the `edgegate-repository-key` metadata (see `RepositoryControl`).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import SecretStr

from edgegate_common.errors import PermissionDenied, Unauthenticated
from edgegate_common.rpc import metadata
from edgegate_inference import __version__, oip
from edgegate_inference.core import triton_config
from edgegate_inference.core.stats import Duration, VersionStats
from edgegate_inference.model import ModelVersion
from edgegate_inference.repository import ModelRepository
from edgegate_protos.oip import grpc_service_pb2 as pb
from edgegate_protos.oip import grpc_service_pb2_grpc

SERVER_NAME = "edgegate-inference"
EXTENSIONS = ("model_repository", "model_configuration", "statistics", "schedule_policy")
PLATFORM = "onnxruntime_onnx"
REPOSITORY_KEY_HEADER = "edgegate-repository-key"
Context = Any  # grpc.aio.ServicerContext


class RepositoryControl:
    """Who may load and unload models: nobody without a key, else whoever presents it.

    Off (no key) is PERMISSION_DENIED: no credential can change that answer,
    so it must not look retryable, as Triton's UNAVAILABLE does. With a key, a
    call without it or with another is UNAUTHENTICATED. The comparison takes
    the same time however much of the key matches.
    """

    def __init__(self, key: SecretStr | None) -> None:
        self._key = key.get_secret_value().encode() if key is not None else None

    def check(self, context: Context) -> None:
        if self._key is None:
            raise PermissionDenied(
                "repository control is off on this server; the operator enables it with "
                "repository_control_key (or _file)"
            )
        presented = metadata(context, REPOSITORY_KEY_HEADER)
        if presented is None:
            raise Unauthenticated(f"repository control needs the {REPOSITORY_KEY_HEADER} metadata")
        if not hmac.compare_digest(presented.encode(), self._key):
            raise Unauthenticated(f"the {REPOSITORY_KEY_HEADER} metadata is not the right key")


class InferenceServicer(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        *,
        repository: ModelRepository,
        serving: Callable[[], bool],
        control: RepositoryControl,
    ) -> None:
        self._repository = repository
        self._serving = serving
        self._control = control

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self._serving())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> Any:
        return pb.ModelReadyResponse(ready=self._repository.ready(request.name, request.version))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> Any:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=__version__, extensions=EXTENSIONS
        )

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> Any:
        mv = self._repository.get(request.name, request.version)
        versions = [v.version for v in self._repository.versions_of(mv.name)]
        batch = [-1] if mv.spec.max_batch_size > 0 else []
        reply = pb.ModelMetadataResponse(name=mv.name, versions=versions, platform=PLATFORM)
        for t in mv.spec.inputs:
            reply.inputs.add(name=t.name, datatype=t.datatype, shape=[*batch, *t.dims])
        for t in mv.spec.outputs:
            reply.outputs.add(name=t.name, datatype=t.datatype, shape=[*batch, *t.dims])
        return reply

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> Any:
        mv = self._repository.get(request.name, request.version)
        config = triton_config.to_model_config(mv.spec)
        # What ONNX Runtime actually runs this version with (not what was asked for).
        config.parameters["edgegate.execution_providers"].string_value = ",".join(mv.providers)
        return pb.ModelConfigResponse(config=config)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> Any:
        return oip.encode_response(await self._infer(request))

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Triton's streaming form: requests run concurrently (so they batch), answers
        and errors come back in-band as each finishes, carrying the request's id."""
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        async def answer(request: pb.ModelInferRequest) -> None:
            try:
                response = oip.encode_response(await self._infer(request))
            except Exception as exc:
                message = getattr(exc, "message", None) or "internal error; see the service log"
                failed = pb.ModelInferResponse(
                    model_name=request.model_name,
                    model_version=request.model_version,
                    id=request.id,
                )
                await answers.put(
                    pb.ModelStreamInferResponse(error_message=message, infer_response=failed)
                )
            else:
                await answers.put(pb.ModelStreamInferResponse(infer_response=response))

        async def read() -> None:
            try:
                async for request in request_iterator:
                    task = asyncio.get_running_loop().create_task(answer(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
                await asyncio.gather(*running)
            finally:
                answers.put_nowait(None)  # the end, or a broken request stream

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (item := await answers.get()) is not None:
                yield item
            await reader  # a broken request stream raises here
        finally:
            for task in (reader, *running):
                task.cancel()

    async def _infer(self, request: pb.ModelInferRequest) -> Any:
        domain, sent = oip.decode_request(request)
        mv = self._repository.get(domain.model, domain.version)
        return await mv.infer(domain, sent=sent)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Context) -> Any:
        if request.name and request.version:
            chosen = [self._repository.get(request.name, request.version)]
        elif request.name:
            chosen = self._repository.versions_of(request.name)
        else:
            chosen = self._repository.served()
        return pb.ModelStatisticsResponse(model_stats=[_statistics(mv) for mv in chosen])

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Context) -> Any:
        reply = pb.RepositoryIndexResponse()
        for entry in self._repository.index():
            if request.ready and entry.state != "READY":
                continue
            reply.models.add(
                name=entry.name, version=entry.version, state=entry.state, reason=entry.reason
            )
        return reply

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> Any:
        self._control.check(context)
        await self._repository.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> Any:
        self._control.check(context)
        await self._repository.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _statistics(mv: ModelVersion) -> pb.ModelStatistics:
    s: VersionStats = mv.stats
    out = pb.ModelStatistics(
        name=mv.name,
        version=mv.version,
        last_inference=s.last_inference_ms,
        inference_count=s.inference_count,
        execution_count=s.execution_count,
    )
    stats = out.inference_stats
    for field, duration in (
        ("success", s.success),
        ("fail", s.fail),
        ("queue", s.queue),
        ("compute_input", s.compute_input),
        ("compute_infer", s.compute_infer),
        ("compute_output", s.compute_output),
    ):
        _set(getattr(stats, field), duration)
    for size in sorted(s.by_batch_size):
        per = s.by_batch_size[size]
        batch = out.batch_stats.add(batch_size=size)
        _set(batch.compute_input, per.compute_input)
        _set(batch.compute_infer, per.compute_infer)
        _set(batch.compute_output, per.compute_output)
    return out


def _set(target: pb.StatisticDuration, duration: Duration) -> None:
    target.count = duration.count
    target.ns = duration.ns
