"""Wires the security service: its gRPC servicer and NATS handlers on the shared runtime."""

from __future__ import annotations

from edgegate_common.service import ServiceRuntime
from edgegate_protos.security.v1 import security_pb2, security_pb2_grpc
from edgegate_security import __version__
from edgegate_security.config import SecuritySettings


def build(settings: SecuritySettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, version=__version__)
    # The generated base servicer answers UNIMPLEMENTED for every method; the
    # method bodies arrive with the security service's own issue.
    runtime.grpc.add(
        security_pb2_grpc.add_SecurityServicer_to_server,
        security_pb2_grpc.SecurityServicer(),  # type: ignore[abstract]
        service_name=security_pb2.DESCRIPTOR.services_by_name["Security"].full_name,
    )
    return runtime
