"""Wires the gateway service: its gRPC servicer and NATS handlers on the shared runtime."""

from __future__ import annotations

from edgegate_common.service import ServiceRuntime
from edgegate_gateway import __version__
from edgegate_gateway.config import GatewaySettings
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc


def build(settings: GatewaySettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, version=__version__)
    # The generated base servicer answers UNIMPLEMENTED for every method; the
    # method bodies arrive with the gateway service's own issue.
    runtime.grpc.add(
        gateway_pb2_grpc.add_GatewayServicer_to_server,
        gateway_pb2_grpc.GatewayServicer(),  # type: ignore[abstract]
        service_name=gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name,
    )
    return runtime
