"""Wires the inference service: its gRPC servicer and NATS handlers on the shared runtime."""

from __future__ import annotations

from edgegate_common.service import ServiceRuntime
from edgegate_inference import __version__
from edgegate_inference.config import InferenceSettings
from edgegate_protos import INFERENCE_POOL
from edgegate_protos.inference import grpc_service_pb2, grpc_service_pb2_grpc


def build(settings: InferenceSettings) -> ServiceRuntime:
    # Our OIP descriptors live in a private pool (see edgegate_protos); reflection reads it.
    runtime = ServiceRuntime(settings, version=__version__, descriptor_pool=INFERENCE_POOL)
    # The generated base servicer answers UNIMPLEMENTED for every method; the
    # method bodies arrive with the inference service's own issue.
    runtime.grpc.add(
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
        grpc_service_pb2_grpc.GRPCInferenceServiceServicer(),  # type: ignore[abstract]
        service_name=grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    )
    return runtime
