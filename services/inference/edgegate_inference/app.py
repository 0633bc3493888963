"""Wires the inference service: repository, OIP gRPC servicer, NATS adapter, metrics."""

from __future__ import annotations

from edgegate_common.bus import Bus
from edgegate_common.service import ServiceRuntime
from edgegate_inference import __version__
from edgegate_inference.adapters.bus import InferenceBus
from edgegate_inference.config import InferenceSettings
from edgegate_inference.metrics import RepositoryCollector
from edgegate_inference.repository import ModelRepository
from edgegate_inference.servicer import InferenceServicer, RepositoryControl
from edgegate_protos import INFERENCE_POOL
from edgegate_protos.oip import grpc_service_pb2, grpc_service_pb2_grpc


def build(settings: InferenceSettings) -> ServiceRuntime:
    # Our OIP descriptors live in a private pool (see edgegate_protos); reflection reads it.
    runtime = ServiceRuntime(settings, version=__version__, descriptor_pool=INFERENCE_POOL)
    repository = ModelRepository(
        settings.model_repository.resolve(),
        poll_s=settings.repository_poll_s,
        drain_timeout_s=settings.model_drain_timeout_s,
    )
    runtime.registry.register(RepositoryCollector(repository))
    runtime.grpc.add(
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
        InferenceServicer(  # type: ignore[abstract]
            repository=repository,
            serving=lambda: runtime.serving,
            control=RepositoryControl(settings.repository_key()),
        ),
        service_name=grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    )

    async def start(bus: Bus) -> None:
        # Models load before gRPC serves: a client that sees SERVING can infer.
        await repository.load_all()
        repository.start_polling()
        adapter = InferenceBus(
            bus=bus,
            repository=repository,
            instance=runtime.instance,
            interval_s=settings.metrics_snapshot_s,
        )
        await adapter.start()
        runtime.on_stop(adapter.stop)

    runtime.on_start(start)
    runtime.on_stop(repository.close)
    return runtime
